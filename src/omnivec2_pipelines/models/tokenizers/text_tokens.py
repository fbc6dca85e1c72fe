"""Token-id embedding for text: one token per (sub)word id, learnable positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.layers import trunc_normal_param
from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer

#: Id of the padding token (must match the text modality's tokenizer).
PAD_ID = 0


@register_tokenizer("text_tokens")
class TextTokensTokenizer(Tokenizer):
    """Embeds int64 ids ``(B, L)``, ``L <= max_len``, 0 = padding; one token per id.

    Padding ids are invalid tokens, except position 0, which is always valid so an all-padding
    row still has one token. Masked reconstruction predicts the id of each hidden token
    (``patch_dim = vocab_size`` logits, cross-entropy).

    Args:
        vocab_size: Number of ids (ids are in ``[0, vocab_size)``).
        max_len: Longest id sequence accepted.
        width: Token width.
    """

    aligned = False  # a sequence: the same event or word can come at any place

    def __init__(self, vocab_size: int, max_len: int, width: int) -> None:
        super().__init__()
        if int(vocab_size) < 2 or int(max_len) < 1:
            raise ValueError(f"text_tokens needs vocab_size >= 2 and max_len >= 1, got "
                             f"vocab_size={vocab_size}, max_len={max_len}")
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)
        self.max_tokens = self.max_len
        self.patch_dim = self.vocab_size
        self.embed = nn.Embedding(self.vocab_size, width, padding_idx=PAD_ID)
        nn.init.trunc_normal_(self.embed.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.pos = trunc_normal_param(1, self.max_len, width)

    def _check(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or not 0 < x.shape[1] <= self.max_len:
            raise ValueError(f"expected token ids (B, L<= {self.max_len}), got {tuple(x.shape)}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"expected integer token ids, got dtype {x.dtype}")
        checked = x.numel() and not torch.compiler.is_exporting()  # data-dependent: not traced by torch.export
        if checked and self.training:  # an assert on the device: a training step does not wait for it on a GPU
            try:
                torch._assert_async(((x >= 0) & (x < self.vocab_size)).all(), "token ids out of range")
                checked = False
            except RuntimeError:  # raised at once on a CPU: report it like the eager check below
                pass
        if checked and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got "
                             f"[{int(x.min())}, {int(x.max())}]")
        return x.long()

    def position_grid(self) -> tuple[int, ...]:
        return (self.max_len,)

    def position_scale(self) -> float:
        """The table at the size of the token embeddings (std 0.02 at initialisation), which a table of
        std 0.7 would drown: each channel's std then equals the embeddings'."""
        return float(self.embed.weight.detach()[1:].std()) * 2 ** 0.5

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._check(x)
        tokens = self.embed(x) + self.pos[:, : x.shape[1]]  # (B, L) -> (B, L, D)
        valid = x != PAD_ID
        valid[:, 0] = True
        return tokens, valid

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        return self._check(x)  # (B, L) ids, the class targets of each token

    def reconstruction_loss(self, pred: Tensor, target: Tensor, weight: Tensor, norm_target: bool) -> Tensor:
        """Cross-entropy of the predicted id logits ``(B, L, vocab_size)`` on weighted positions.

        ``norm_target`` does not apply to class targets and is ignored.
        """
        if pred.shape != (*target.shape, self.vocab_size) or weight.shape != target.shape:
            raise ValueError(f"text_tokens loss expects pred (B, L, {self.vocab_size}), target and "
                             f"weight (B, L); got pred {tuple(pred.shape)}, target "
                             f"{tuple(target.shape)}, weight {tuple(weight.shape)}")
        ce = F.cross_entropy(pred.float().reshape(-1, self.vocab_size), target.reshape(-1).long(),
                             reduction="none").reshape(target.shape)  # (B, L)
        return (ce * weight).sum() / weight.sum().clamp_min(1.0)

"""Per-column tokens for tables (FT-Transformer style feature tokenizer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.layers import trunc_normal_param
from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


@register_tokenizer("tabular_columns")
class TabularColumnsTokenizer(Tokenizer):
    """One token per column of a float32 row ``(B, n_numeric + n_categorical)``.

    Numeric columns come first (standardised values): ``token_j = x_j * w_j + b_j``.
    Categorical columns follow, holding integer codes stored as floats (0 = unknown):
    ``token_j = E[offset_j + code_j]`` from one shared embedding table. Every token gets its
    column embedding. All tokens are valid.

    Masked reconstruction predicts, per column, the value in ``pred[..., 0]`` (numeric, MSE) or
    the code logits in ``pred[..., :cardinality_j]`` (categorical, cross-entropy);
    ``patch_dim = max(1, max cardinality)``.

    Args:
        n_numeric: Number of numeric columns.
        cardinalities: Number of codes of each categorical column (including the unknown code).
        width: Token width.
    """

    def __init__(self, n_numeric: int, cardinalities: list[int], width: int) -> None:
        super().__init__()
        cards = [int(c) for c in cardinalities]
        if int(n_numeric) < 0 or any(c < 1 for c in cards) or int(n_numeric) + len(cards) < 1:
            raise ValueError(f"tabular_columns needs n_numeric >= 0, cardinalities >= 1 and at "
                             f"least one column; got n_numeric={n_numeric}, cardinalities={cards}")
        self.n_numeric, self.cardinalities = int(n_numeric), cards
        self.n_columns = self.n_numeric + len(cards)
        self.max_tokens = self.n_columns
        self.patch_dim = max([1, *cards])
        self.linear_dim = self.n_numeric + sum(cards)
        self.num_weight = trunc_normal_param(self.n_numeric, width)
        self.num_bias = trunc_normal_param(self.n_numeric, width)
        self.cat_embed = nn.Embedding(max(1, sum(cards)), width)
        nn.init.trunc_normal_(self.cat_embed.weight, std=0.02)
        offsets = torch.tensor([0, *cards[:-1]], dtype=torch.long).cumsum(0) if cards else torch.zeros(0)
        self.register_buffer("offsets", offsets.long(), persistent=False)
        self.register_buffer("card", torch.tensor(cards, dtype=torch.long), persistent=False)
        # (n_cat, patch_dim) True where a logit belongs to the column's codes
        logit_ok = torch.arange(self.patch_dim)[None, :] < torch.tensor(cards, dtype=torch.long)[:, None]
        self.register_buffer("logit_ok", logit_ok.reshape(len(cards), self.patch_dim), persistent=False)
        self.column = trunc_normal_param(1, self.n_columns, width)

    def _codes(self, x: Tensor) -> Tensor:
        """Check the input and return the categorical codes (B, n_cat) as long."""
        if x.ndim != 2 or x.shape[1] != self.n_columns:
            raise ValueError(f"expected table rows (B, {self.n_columns}) = {self.n_numeric} numeric + "
                             f"{len(self.cardinalities)} categorical columns, got {tuple(x.shape)}")
        codes = x[:, self.n_numeric:]
        checked = codes.numel() and not torch.compiler.is_exporting()  # data-dependent: not traced by torch.export
        if codes.is_floating_point():
            if checked and not torch.equal(codes, codes.round()):
                raise ValueError("categorical columns must hold integer codes")
        codes = codes.long()
        if checked and ((codes < 0) | (codes >= self.card)).any():
            bad = int(((codes < 0) | (codes >= self.card)).any(0).nonzero()[0, 0])
            raise ValueError(f"categorical column {bad} (input column {self.n_numeric + bad}) has "
                             f"codes outside [0, {self.cardinalities[bad]})")
        return codes

    def dense(self, x: Tensor) -> bool:
        return True  # every token is real

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        codes = self._codes(x)
        num = x[:, : self.n_numeric].float()
        tok_num = num[..., None] * self.num_weight + self.num_bias  # (B, n_num) -> (B, n_num, D)
        tok_cat = self.cat_embed(codes + self.offsets)  # (B, n_cat) -> (B, n_cat, D)
        tokens = torch.cat([tok_num.to(tok_cat.dtype), tok_cat], dim=1) + self.column  # (B, N, D)
        valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
        return tokens, valid

    def linear_features(self, x: Tensor) -> Tensor:
        """The numeric values, then every categorical column one-hot (unknown code included):
        (B, n_numeric + sum(cardinalities))."""
        codes = self._codes(x)
        num = x[:, : self.n_numeric].float()
        if not self.cardinalities:
            return num
        hot = F.one_hot(codes + self.offsets, self.linear_dim - self.n_numeric).sum(1)  # (B, n_cat, K) -> (B, K)
        return torch.cat([num, hot.float()], dim=1)

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        self._codes(x)
        return x.float().unsqueeze(-1)  # (B, N, 1): the value or the code of each column

    def reconstruction_loss(self, pred: Tensor, target: Tensor, weight: Tensor, norm_target: bool) -> Tensor:
        """MSE on numeric columns (``pred[..., 0]``) + cross-entropy on categorical codes.

        Both are per-token terms averaged over the weighted tokens; ``norm_target`` is ignored
        (numeric columns are standardised by tokenization).
        """
        b = target.shape[0]
        if pred.shape != (b, self.n_columns, self.patch_dim) or target.shape != (b, self.n_columns, 1) \
                or weight.shape != (b, self.n_columns):
            raise ValueError(f"tabular_columns loss expects pred (B, {self.n_columns}, {self.patch_dim}), "
                             f"target (B, {self.n_columns}, 1), weight (B, {self.n_columns}); got "
                             f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(weight.shape)}")
        pred, target = pred.float(), target.float()
        k = self.n_numeric
        per_num = (pred[:, :k, 0] - target[:, :k, 0]).pow(2)  # (B, n_num)
        logits = pred[:, k:].masked_fill(~self.logit_ok, float("-inf"))  # (B, n_cat, P)
        codes = target[:, k:, 0].round().long()  # (B, n_cat)
        per_cat = -F.log_softmax(logits, dim=-1).gather(-1, codes.unsqueeze(-1)).squeeze(-1)
        per_token = torch.cat([per_num, per_cat], dim=1)  # (B, N)
        return (per_token * weight).sum() / weight.sum().clamp_min(1.0)

"""Task heads keyed by (modality, task), and the light masked-reconstruction decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from omnivec2_pipelines.models.config import HeadConfig
from omnivec2_pipelines.models.layers import Block, masked_mean, trunc_normal_param
from omnivec2_pipelines.models.masking import MaskInfo


class ClassificationHead(nn.Module):
    """LayerNorm → mean over real tokens → linear logits (trained with cross-entropy)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        return self.fc(masked_mean(self.norm(x), valid))  # (B, out_dim)


class RegressionHead(nn.Module):
    """Mean- and last-token pooling → MLP → ``out_dim`` values (trained with ℓ2)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, out_dim))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        x = self.norm(x)
        last = valid.long().cumsum(1).argmax(1)  # index of the last real token
        pooled = torch.cat([masked_mean(x, valid), x[torch.arange(x.shape[0]), last]], dim=-1)
        return self.mlp(pooled)  # (B, out_dim)


HEAD_KINDS: dict[str, type[nn.Module]] = {"classification": ClassificationHead, "regression": RegressionHead}


def build_head(cfg: HeadConfig, dim: int) -> nn.Module:
    """Instantiate the head for ``cfg.kind``."""
    if cfg.kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {cfg.kind!r} for {cfg.modality}.{cfg.task}; "
                         f"known: {sorted(HEAD_KINDS)}")
    if cfg.out_dim < 1:
        raise ValueError(f"head {cfg.modality}.{cfg.task}: out_dim must be >= 1, got {cfg.out_dim}")
    return HEAD_KINDS[cfg.kind](dim, cfg.out_dim)


class MaskedDecoder(nn.Module):
    """Light MAE decoder: re-inserts mask tokens at hidden positions and predicts their patches.

    Args:
        dim: Width of the incoming (visible) tokens and of the decoder.
        max_tokens: Full sequence length of the modality.
        patch_dim: Size of a reconstruction target.
        depth: Transformer blocks.
        heads: Attention heads.
    """

    def __init__(self, dim: int, max_tokens: int, patch_dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.mask_token = trunc_normal_param(1, 1, dim)
        self.pos = trunc_normal_param(1, max_tokens, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, patch_dim)

    def forward(self, visible: Tensor, mask: MaskInfo, valid: Tensor) -> Tensor:
        """(B, K, D) visible tokens → (B, N, patch_dim) predictions for every position."""
        b, k, d = visible.shape
        n = mask.ids_restore.shape[1]
        x = torch.cat([visible, self.mask_token.expand(b, n - k, d)], dim=1)  # (B, N, D) shuffled
        x = x.gather(1, mask.ids_restore.unsqueeze(-1).expand(-1, -1, d)) + self.pos[:, :n]  # unshuffled
        for blk in self.blocks:
            x = blk(x, valid)
        return self.out(self.norm(x))

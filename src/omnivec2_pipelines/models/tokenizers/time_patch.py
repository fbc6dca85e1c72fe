"""Per-channel time patches (PatchTST-style) for univariate and multivariate series."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.layers import trunc_normal_param
from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


@register_tokenizer("time_patch")
class TimePatchTokenizer(Tokenizer):
    """Cuts each channel of a ``C × L`` series into patches of ``p`` steps; one token per (channel, patch).

    Series shorter than ``length`` (e.g. a forecasting context) are zero-padded on the right to a
    multiple of ``p``; patches made only of padding are marked invalid.

    Args:
        in_channels: C.
        length: Longest series accepted.
        patch_size: ``[p]``.
        width: Token width.
    """

    aligned = False  # a sequence: the same event or word can come at any place

    def __init__(self, in_channels: int, length: int, patch_size: int | list[int], width: int) -> None:
        super().__init__()
        p = patch_size if isinstance(patch_size, int) else patch_size[0]
        self.in_channels, self.length, self.p = in_channels, length, int(p)
        if not 0 < self.p <= length:
            raise ValueError(f"time patch size {self.p} must be in [1, length={length}]")
        self.n_patches = math.ceil(length / self.p)
        self.max_tokens = in_channels * self.n_patches
        self.patch_dim = self.p
        self.linear_dim = in_channels * self.n_patches * self.p
        self.proj = nn.Linear(self.p, width)
        self.pos = trunc_normal_param(1, 1, self.n_patches, width)
        self.channel = trunc_normal_param(1, in_channels, 1, width)

    def _patches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 3 or x.shape[1] != self.in_channels or not 0 < x.shape[2] <= self.length:
            raise ValueError(f"expected input (B, {self.in_channels}, L<= {self.length}), got {tuple(x.shape)}")
        b, c, n = x.shape
        n_p = math.ceil(n / self.p)
        x = F.pad(x, (0, n_p * self.p - n))
        patches = x.reshape(b, c, n_p, self.p)  # (B, C, n_p, p)
        valid = torch.ones(b, c, n_p, dtype=torch.bool, device=x.device)
        return patches, valid

    def dense(self, x: Tensor) -> bool:
        return True  # every token is real

    def linear_features(self, x: Tensor) -> Tensor:
        """Every channel's values, zero-padded to ``length`` rounded up to whole patches: (B, C * n_patches * p)."""
        patches, _ = self._patches(x)  # (B, C, n_p, p)
        patches = F.pad(patches, (0, 0, 0, self.n_patches - patches.shape[2]))  # (B, C, n_patches, p)
        return patches.reshape(patches.shape[0], -1).float()

    def position_grid(self) -> tuple[int, ...]:
        return (self.n_patches,)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        patches, valid = self._patches(x)
        b, c, n_p, _ = patches.shape
        tokens = self.proj(patches) + self.pos[:, :, :n_p] + self.channel  # (B, C, n_p, D)
        return tokens.reshape(b, c * n_p, -1), valid.reshape(b, c * n_p)  # (B, C*n_p, D)

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        patches, _ = self._patches(x)
        b, c, n_p, p = patches.shape
        return patches.reshape(b, c * n_p, p)  # (B, C*n_p, p)

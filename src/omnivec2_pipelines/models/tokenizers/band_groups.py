"""Spectral band-group tokens for hyperspectral pixel neighbourhoods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.layers import trunc_normal_param
from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


@register_tokenizer("band_groups")
class BandGroupTokenizer(Tokenizer):
    """One token per group of ``g`` consecutive bands of an ``s × s`` pixel neighbourhood.

    Input ``(B, bands, s, s)``; group ``k`` holds bands ``k*g .. k*g+g-1`` of all ``s*s``
    pixels, flattened to ``g*s*s`` values (band-major) and linearly embedded, plus a learnable
    position embedding per group. When ``bands`` is not a multiple of ``g`` the last group is
    zero-padded (it still holds real bands, so it is valid). An input with fewer bands than
    ``bands`` (e.g. a sensor that lacks the last bands) is zero-padded too; groups that then
    hold no real band are padding tokens (``valid = False``).

    With ``spatial="center_stats"`` (the default) a token sees, per band of its group, the centre
    pixel, the neighbourhood mean and the neighbourhood standard deviation (``3*g`` values)
    instead of the raw ``g*s*s`` neighbourhood: spectral, rotation- and layout-invariant
    features that generalise across image regions (a spatially disjoint test split); use
    ``spatial="full"`` to embed every pixel.

    Args:
        bands: Number of spectral bands (largest accepted).
        patch: Neighbourhood side ``s``.
        group_size: Bands per token ``g``.
        width: Token width.
        spatial: ``"center_stats"`` or ``"full"``.
    """

    def __init__(self, bands: int, patch: int, group_size: int, width: int, spatial: str = "center_stats") -> None:
        super().__init__()
        if spatial not in ("center_stats", "full"):
            raise ValueError(f"band_groups spatial must be 'center_stats' or 'full', got {spatial!r}")
        self.spatial = spatial
        self.bands, self.patch, self.group_size = int(bands), int(patch), int(group_size)
        if self.bands <= 0 or self.patch <= 0 or not 0 < self.group_size <= self.bands:
            raise ValueError(f"band_groups needs bands > 0, patch > 0 and 0 < group_size <= bands; "
                             f"got bands={bands}, patch={patch}, group_size={group_size}")
        self.n_groups = math.ceil(self.bands / self.group_size)
        self.max_tokens = self.n_groups
        self.patch_dim = self.group_size * (3 if spatial == "center_stats" else self.patch * self.patch)
        self.proj = nn.Linear(self.patch_dim, width)
        self.pos = trunc_normal_param(1, self.n_groups, width)

    def _groups(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, b, s, s) → groups (B, n_groups, g*s*s) and valid (B, n_groups)."""
        s = self.patch
        if x.ndim != 4 or not 0 < x.shape[1] <= self.bands or tuple(x.shape[2:]) != (s, s):
            raise ValueError(f"expected input (B, bands<={self.bands}, {s}, {s}), got {tuple(x.shape)}")
        b, n_bands = x.shape[:2]
        x = F.pad(x, (0, 0, 0, 0, 0, self.n_groups * self.group_size - n_bands))  # pad bands
        if self.spatial == "center_stats":
            flat = x.flatten(2)  # (B, bands, s*s)
            stats = torch.stack([x[:, :, s // 2, s // 2], flat.mean(-1), flat.std(-1, unbiased=False)], -1)
            x = stats  # (B, bands, 3): centre, mean, std
        groups = x.reshape(b, self.n_groups, self.patch_dim)  # (B, n_groups, g*(3 or s*s)), band-major
        n_real = math.ceil(n_bands / self.group_size)
        valid = (torch.arange(self.n_groups, device=x.device) < n_real).repeat(b, 1)  # (B, n_groups)
        return groups, valid

    def dense(self, x: Tensor) -> bool:
        return x.ndim == 4 and math.ceil(x.shape[1] / self.group_size) == self.n_groups  # no padded group

    def position_grid(self) -> tuple[int, ...]:
        return (self.n_groups,)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        groups, valid = self._groups(x)
        tokens = self.proj(groups) + self.pos  # (B, n_groups, D)
        return tokens, valid

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        groups, _ = self._groups(x)
        return groups  # (B, n_groups, patch_dim)

"""3D tubelet embedding (ViViT / VideoMAE style) for video clips."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.layers import trunc_normal_param
from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


@register_tokenizer("tubelet")
class TubeletTokenizer(Tokenizer):
    """Non-overlapping ``t × ph × pw`` tubelets of a ``C × T × H × W`` clip, linearly embedded (Conv3d).

    Tokens are ordered time-major (``(ti, hi, wi)`` row-major) and get a learnable positional
    embedding each. Clips with fewer than ``n_frames`` frames are zero-padded at the end to
    ``n_frames``; tubelets made only of padding frames are marked invalid (a tubelet holding at
    least one real frame is valid).

    Args:
        in_channels: C.
        n_frames: Longest clip accepted (T); must be divisible by ``t``.
        input_size: ``[H, W]``; must be divisible by ``[ph, pw]``.
        tubelet: ``[t, ph, pw]`` (or ``[t, p]`` for square patches).
        width: Token width.
    """

    def __init__(self, in_channels: int, n_frames: int, input_size: list[int], tubelet: list[int],
                 width: int) -> None:
        super().__init__()
        tubelet = list(tubelet)
        if len(tubelet) == 2:
            tubelet = [tubelet[0], tubelet[1], tubelet[1]]
        if len(tubelet) != 3 or min(tubelet) <= 0:
            raise ValueError(f"tubelet must be [t, ph, pw] of positive ints, got {tubelet}")
        t, ph, pw = (int(v) for v in tubelet)
        h, w = (int(v) for v in input_size)
        if n_frames % t or h % ph or w % pw:
            raise ValueError(f"clip size {n_frames}x{h}x{w} (T x H x W) is not divisible by "
                             f"tubelet {t}x{ph}x{pw}")
        self.in_channels, self.n_frames, self.input_size = int(in_channels), int(n_frames), (h, w)
        self.tubelet = (t, ph, pw)
        self.grid = (n_frames // t, h // ph, w // pw)
        self.max_tokens = math.prod(self.grid)
        self.patch_dim = self.in_channels * t * ph * pw
        self.proj = nn.Conv3d(self.in_channels, width, kernel_size=self.tubelet, stride=self.tubelet)
        self.pos = trunc_normal_param(1, self.max_tokens, width)

    def _pad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Check (B, C, T', H, W) with T' <= n_frames; zero-pad time to n_frames; (B, N) valid."""
        c, (h, w) = self.in_channels, self.input_size
        if x.ndim != 5 or x.shape[1] != c or tuple(x.shape[3:]) != (h, w) \
                or not 0 < x.shape[2] <= self.n_frames:
            raise ValueError(f"expected input (B, {c}, T<={self.n_frames}, {h}, {w}), "
                             f"got {tuple(x.shape)}")
        b, n_t = x.shape[0], x.shape[2]
        x = F.pad(x, (0, 0, 0, 0, 0, self.n_frames - n_t))
        gt, gh, gw = self.grid
        real_t = math.ceil(n_t / self.tubelet[0])  # tubelets holding at least one real frame
        valid_t = torch.arange(gt, device=x.device) < real_t  # (gt,)
        valid = valid_t[:, None].expand(gt, gh * gw).reshape(1, -1).expand(b, -1)  # (B, N)
        return x, valid

    def dense(self, x: Tensor) -> bool:
        return x.ndim == 5 and math.ceil(x.shape[2] / self.tubelet[0]) == self.grid[0]  # no padded tubelet

    def position_grid(self) -> tuple[int, ...]:
        return self.grid

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, valid = self._pad(x)
        tokens = self.proj(x).flatten(2).transpose(1, 2) + self.pos  # (B, D, gt, gh, gw) → (B, N, D)
        return tokens, valid.contiguous()

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        x, _ = self._pad(x)
        b, c = x.shape[:2]
        (gt, gh, gw), (t, ph, pw) = self.grid, self.tubelet
        x = x.reshape(b, c, gt, t, gh, ph, gw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, gt, gh, gw, C, t, ph, pw)
        return x.reshape(b, gt * gh * gw, c * t * ph * pw)  # (B, N, C*t*ph*pw)

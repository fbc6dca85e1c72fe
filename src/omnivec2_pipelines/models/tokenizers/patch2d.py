"""2D patch embedding (ViT) for images, spectrograms and other 2D grids."""

from __future__ import annotations

from torch import Tensor, nn

from omnivec2_pipelines.models.layers import trunc_normal_param
from omnivec2_pipelines.models.tokenizers.base import Tokenizer
from omnivec2_pipelines.models.tokenizers import register_tokenizer


@register_tokenizer("patch2d")
class Patch2DTokenizer(Tokenizer):
    """Non-overlapping ``ph × pw`` patches of a ``C × H × W`` input, linearly embedded.

    Args:
        in_channels: C.
        input_size: ``[H, W]``; must be divisible by the patch size.
        patch_size: ``[ph, pw]`` (or one int for square patches).
        width: Token width.
        aligned: Whether a grid cell holds the same content in every sample (:attr:`Tokenizer.aligned`):
            true for images of registered or centred acquisitions; false where an axis is time (a
            spectrogram: the same sound can come at any time).
    """

    def __init__(self, in_channels: int, input_size: list[int], patch_size: int | list[int], width: int,
                 aligned: bool = True) -> None:
        super().__init__()
        if not isinstance(aligned, bool):
            raise TypeError(f"patch2d tokenizer: aligned must be true or false, got {aligned!r}")
        self.aligned = aligned
        patch_size = [patch_size] if isinstance(patch_size, int) else list(patch_size)
        ph, pw = (patch_size * 2)[:2] if len(patch_size) == 1 else patch_size
        h, w = input_size
        if h % ph or w % pw:
            raise ValueError(f"input size {h}x{w} is not divisible by patch size {ph}x{pw}")
        self.in_channels, self.input_size, self.patch = in_channels, (h, w), (ph, pw)
        self.grid = (h // ph, w // pw)
        self.max_tokens = self.grid[0] * self.grid[1]
        self.patch_dim = in_channels * ph * pw
        self.proj = nn.Conv2d(in_channels, width, kernel_size=(ph, pw), stride=(ph, pw))
        self.pos = trunc_normal_param(1, self.max_tokens, width)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.input_size):
            raise ValueError(f"expected input (B, {self.in_channels}, {self.input_size[0]}, "
                             f"{self.input_size[1]}), got {tuple(x.shape)}")

    def dense(self, x: Tensor) -> bool:
        return True  # every token is real

    def position_grid(self) -> tuple[int, ...]:
        return self.grid

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        tokens = self.proj(x).flatten(2).transpose(1, 2) + self.pos  # (B, D, gh, gw) → (B, N, D)
        valid = tokens.new_ones(tokens.shape[:2], dtype=bool)
        return tokens, valid

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        self._check(x)
        b, c, _, _ = x.shape
        (gh, gw), (ph, pw) = self.grid, self.patch
        x = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, ph, pw)
        return x.reshape(b, gh * gw, c * ph * pw)  # (B, N, C*ph*pw)

    def unpatchify(self, per_token: Tensor, channels: int) -> Tensor:
        """Inverse of :meth:`patchify` for ``channels`` output channels: (B, N, C*ph*pw) → (B, C, H, W)."""
        b = per_token.shape[0]
        (gh, gw), (ph, pw) = self.grid, self.patch
        x = per_token.reshape(b, gh, gw, channels, ph, pw).permute(0, 3, 1, 4, 2, 5)  # (B, C, gh, ph, gw, pw)
        return x.reshape(b, channels, gh * ph, gw * pw)

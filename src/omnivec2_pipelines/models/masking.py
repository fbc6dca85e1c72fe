"""Random token masking as a pure function (MAE-style shuffle/keep/restore)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MaskInfo:
    """Which tokens a stream kept.

    Attributes:
        ids_keep: (B, K) indices of the kept tokens in the full sequence.
        ids_restore: (B, N) permutation that puts ``[kept, masked]`` back in sequence order.
        masked: (B, N) bool, True where the token was hidden from the encoder.
    """

    ids_keep: Tensor
    ids_restore: Tensor
    masked: Tensor


def random_masking(valid: Tensor, ratio: float, generator: torch.Generator | None = None) -> MaskInfo:
    """Hide ``ratio`` of the tokens of every sample at random.

    Padding tokens (``valid == False``) are always hidden first, so the kept set holds real
    tokens whenever a sample has enough of them.

    Args:
        valid: (B, N) bool, True = real token.
        ratio: Share of tokens to hide, in (0, 1).
        generator: Optional RNG for reproducible masks.

    Returns:
        The :class:`MaskInfo`; at least one token per sample is kept.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    b, n = valid.shape
    n_keep = max(1, int(round(n * (1.0 - ratio))))
    noise = torch.rand(b, n, generator=generator, device="cpu").to(valid.device)
    noise = noise + (~valid).to(noise.dtype) * 2.0  # padding sorts last → hidden
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    masked = torch.ones(b, n, dtype=torch.bool, device=valid.device)
    masked[:, :n_keep] = False
    masked = masked.gather(1, ids_restore)
    return MaskInfo(ids_shuffle[:, :n_keep], ids_restore, masked)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """Select tokens: (B, N, D), (B, K) → (B, K, D)."""
    return x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

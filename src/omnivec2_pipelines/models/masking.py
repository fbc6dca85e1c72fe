"""Random token masking as a pure function (MAE-style shuffle/keep/restore)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


def kept_count(n: int, ratio: float) -> int:
    """Real tokens kept of ``n`` at ``ratio`` (host arithmetic, the same float32 rounding as the device's)."""
    hide = int(np.rint(np.float32(n) * np.float32(ratio)))
    return n - min(max(hide, 1), max(n - 1, 0))


def random_masking(valid: Tensor, ratio: float, generator: torch.Generator | None = None,
                   shard: tuple[int, int] = (0, 1), dense: bool = False) -> MaskInfo:
    """Hide ``ratio`` of the real tokens of every sample at random.

    The hidden count is per sample (``round(ratio * n_real)``, at least one and never all real
    tokens), so short, padded samples (e.g. texts) are masked as much as long ones. The kept set
    has one size K for the whole batch: shorter samples fill it with padding tokens, which stay
    marked invalid.

    Args:
        valid: (B, N) bool, True = real token.
        ratio: Share of real tokens to hide, in (0, 1).
        generator: Optional RNG for reproducible masks.
        shard: ``(rank, world)`` when ``valid`` is one rank's slice of a global batch of
            ``world x B`` samples: the noise is drawn for the global batch and sliced, so each
            sample gets the mask it would get in a single process.
        dense: Every token is real (``valid`` all True): the kept count is then known on the host
            (:func:`kept_count`) and nothing is read back from the device.

    The noise is drawn on the generator's device (``valid``'s without one), so the step does not
    wait for a host-to-device copy.

    Returns:
        The :class:`MaskInfo`.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    b, n = valid.shape
    n_real = valid.sum(1)
    n_hide = (n_real.float() * ratio).round().long().clamp(min=1).minimum((n_real - 1).clamp(min=0))
    n_keep_real = n_real - n_hide  # (B,)
    rank, world = shard
    where = generator.device if generator is not None else valid.device
    noise = torch.rand(b * world, n, generator=generator, device=where)[rank * b:(rank + 1) * b]  # (B, N)
    noise = noise.to(valid.device)
    rank = noise.masked_fill(~valid, 2.0).argsort(1).argsort(1)  # rank among real tokens first
    keep_real = valid & (rank < n_keep_real[:, None])
    # sort order: kept real tokens, then padding, then hidden real tokens
    key = torch.where(keep_real, noise, torch.where(valid, 3.0 + noise, 2.0 + noise))
    ids_shuffle = key.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    k = kept_count(n, ratio) if dense else max(1, int(n_keep_real.max()))
    masked = torch.ones(b, n, dtype=torch.bool, device=valid.device)
    masked[:, :k] = False
    masked = masked.gather(1, ids_restore)
    return MaskInfo(ids_shuffle[:, :k], ids_restore, masked)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """Select tokens: (B, N, D), (B, K) → (B, K, D)."""
    return x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

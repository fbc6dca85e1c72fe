"""Several streams' token batches as one batch, so one encoder call serves them all.

The two streams of a training step have their own batch and token counts, ``(B_a, N_a)`` and ``(B_b, N_b)``.
:func:`pack` stacks them along the batch axis, padding the shorter sequences to the longest; padded key
positions are masked, so every real token sees exactly the keys it would see alone and
:func:`unpack` returns the same values as separate calls (within float tolerance). When no token is
padding (equal lengths, dense streams) there is no mask at all and the fastest attention kernel applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: Most padding :func:`should_pack` accepts, as a share of the real tokens (beyond it: one call per stream).
MAX_PADDING = 0.25


@dataclass
class Packed:
    """Token batches stacked along the batch axis.

    Attributes:
        x: (sum B_i, N, D) tokens, ``N = max N_i``, padded positions zero.
        valid: (sum B_i, N) bool, True = real token; None when every token is real.
        sizes: ``(B_i, N_i)`` of every packed batch, in order.
    """

    x: Tensor
    valid: Tensor | None
    sizes: list[tuple[int, int]]


def should_pack(sizes: list[tuple[int, int]], max_padding: float = MAX_PADDING) -> bool:
    """Whether stacking batches of ``(B_i, N_i)`` pads at most ``max_padding`` of their real token count."""
    if len(sizes) < 2:
        return False
    n = max(n for _, n in sizes)
    real = sum(b * k for b, k in sizes)
    return sum(b for b, _ in sizes) * n <= (1.0 + max_padding) * real


def pack(xs: list[Tensor], valids: list[Tensor | None]) -> Packed:
    """Stack ``xs`` (B_i, N_i, D) with their validity (B_i, N_i) or None (all real) into one :class:`Packed`."""
    sizes = [(x.shape[0], x.shape[1]) for x in xs]
    n = max(k for _, k in sizes)
    x = torch.cat([F.pad(t, (0, 0, 0, n - t.shape[1])) for t in xs])  # (sum B_i, N, D)
    if all(v is None for v in valids) and all(k == n for _, k in sizes):
        return Packed(x, None, sizes)
    full = [torch.ones(b, k, dtype=torch.bool, device=x.device) if v is None else v
            for v, (b, k) in zip(valids, sizes)]
    valid = torch.cat([F.pad(v, (0, n - v.shape[1]), value=False) for v in full])  # (sum B_i, N)
    return Packed(x, valid, sizes)


def unpack(x: Tensor, sizes: list[tuple[int, int]]) -> list[Tensor]:
    """Split a packed (sum B_i, N, ...) batch back into the (B_i, N_i, ...) batches it was made of."""
    parts = torch.split(x, [b for b, _ in sizes])
    return [p[:, :k] for p, (_, k) in zip(parts, sizes)]

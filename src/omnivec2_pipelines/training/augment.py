"""Training-batch augmentation in torch, declared per modality (``multitask.augment``).

Each operation takes a batch, a strength and a CPU ``torch.Generator`` (the trainer's, so runs
are reproducible and every data-parallel rank draws the same) and returns a batch of the same
shape and dtype. Strengths are relative where a size is involved (``shift: 0.1`` moves by up to
10% of the height and width), so one setting serves any resolution. Augmentation only ever
touches training batches of classification and segmentation tasks: it would move a dense or
forecasting target away from its input, and evaluation never calls it.

| op | input | what it does |
|---|---|---|
| ``shift`` | ``(..., H, W)`` | translate by up to ``s*H``, ``s*W`` pixels, zero-filled |
| ``flip`` | ``(..., H, W)`` | flip left-right and up-down, each with probability ``s`` |
| ``time_mask`` / ``freq_mask`` | ``(..., F, T)`` | zero one band of up to ``s*T`` frames / ``s*F`` bins (SpecAugment) |
| ``scale`` | any | multiply each sample by ``1 + s*N(0, 1)`` |
| ``jitter`` | float | add ``s*N(0, 1)`` noise |
| ``rotate_z`` | ``(B, P, 3+)`` points | rotate the xyz coordinates about z by up to ``s*pi`` |
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor

from omnivec2_pipelines.training.params import AUGMENT_OPS



def _uniform(n: int, gen: torch.Generator) -> Tensor:
    """``n`` uniform draws on the generator's device (the batch's, in training: nothing is copied)."""
    return torch.rand(n, generator=gen, device=gen.device)


def shift(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Translate every sample by a random offset of up to ``s`` of its height and width, zero-filled."""
    h, w = x.shape[-2:]
    dy, dx = max(int(round(s * h)), 0), max(int(round(s * w)), 0)
    if not dy and not dx:
        return x
    padded = torch.nn.functional.pad(x, (dx, dx, dy, dy))  # (..., H + 2dy, W + 2dx)
    oy = (_uniform(len(x), gen) * (2 * dy + 1)).long().clamp(max=2 * dy).to(x.device)
    ox = (_uniform(len(x), gen) * (2 * dx + 1)).long().clamp(max=2 * dx).to(x.device)
    flat = padded.reshape(len(x), -1, *padded.shape[-2:])  # (B, M, H + 2dy, W + 2dx)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    flat = flat.gather(2, rows.expand(-1, flat.shape[1], -1, flat.shape[3]))  # (B, M, H, W + 2dx)
    flat = flat.gather(3, cols.expand(-1, flat.shape[1], h, -1))  # (B, M, H, W)
    return flat.reshape(x.shape)


def flip(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Flip each sample left-right and up-down, each with probability ``s``."""
    lr, ud = (_uniform(len(x), gen) < s).to(x.device), (_uniform(len(x), gen) < s).to(x.device)
    shape = (len(x),) + (1,) * (x.ndim - 1)
    x = torch.where(lr.view(shape), x.flip(-1), x)
    return torch.where(ud.view(shape), x.flip(-2), x)


def _band_mask(x: Tensor, s: float, gen: torch.Generator, dim: int) -> Tensor:
    size = x.shape[dim]
    width = (_uniform(len(x), gen) * (s * size + 1)).long()
    start = (_uniform(len(x), gen) * (size - width + 1).float()).long()
    pos = torch.arange(size, device=width.device).view(1, size)  # (1, size)
    keep = ~((pos >= start[:, None]) & (pos < (start + width)[:, None]))  # (B, size)
    shape = [len(x)] + [1] * (x.ndim - 1)
    shape[dim] = size
    return x * keep.view(shape).to(x.device, x.dtype)


def time_mask(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Zero one random band of up to ``s`` of the frames (last axis) per sample."""
    return _band_mask(x, s, gen, x.ndim - 1)


def freq_mask(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Zero one random band of up to ``s`` of the frequency bins (second-last axis) per sample."""
    return _band_mask(x, s, gen, x.ndim - 2)


def scale(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Multiply each sample by ``1 + s * N(0, 1)``."""
    shape = (len(x),) + (1,) * (x.ndim - 1)
    return x * (1 + s * torch.randn(len(x), generator=gen, device=gen.device)).view(shape).to(x.device, x.dtype)


def jitter(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Add Gaussian noise of standard deviation ``s``."""
    return x + s * torch.randn(x.shape, generator=gen, device=gen.device).to(x.device, x.dtype)


def rotate_z(x: Tensor, s: float, gen: torch.Generator) -> Tensor:
    """Rotate the xyz coordinates (first three features of ``(B, P, C)`` points) about z by up to ``s*pi``."""
    angle = (2 * _uniform(len(x), gen) - 1) * s * math.pi
    c, si = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(x), 3, 3, device=angle.device)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -si, si, c, 1.0
    xyz = torch.bmm(x[..., :3], rot.transpose(1, 2).to(x.device, x.dtype))  # (B, P, 3)
    return torch.cat([xyz, x[..., 3:]], dim=-1)


OPS: dict[str, Callable[[Tensor, float, torch.Generator], Tensor]] = {
    "shift": shift, "flip": flip, "time_mask": time_mask, "freq_mask": freq_mask, "scale": scale,
    "jitter": jitter, "rotate_z": rotate_z}
assert set(OPS) == set(AUGMENT_OPS), "training.params.AUGMENT_OPS must name every op"


def for_task(spec: Mapping[str, float], kind: str) -> dict[str, float]:
    """The ops of ``spec`` that keep the targets of a task of ``kind`` valid (its ``augment_ops``)."""
    from omnivec2_pipelines.tasks import get_task_kind

    return get_task_kind(kind).augmentations(spec)


def apply(x: Tensor, spec: Mapping[str, float], gen: torch.Generator) -> Tensor:
    """Apply every op of ``spec`` (in the order declared) to a float batch; integer inputs pass unchanged."""
    if not spec or not x.is_floating_point():
        return x
    for op, s in spec.items():
        if s > 0:
            x = OPS[op](x, s, gen)
    return x

"""Exponential moving average of the trained weights (Polyak averaging, timm's ``ModelEma``).

The optimiser keeps stepping the live weights at the schedule's learning rate; an average of them over
roughly the last ``1 / (1 - decay)`` steps is kept beside them and is what validation scores, what the
model selection keeps and what the stage saves. On small data sets trained with one shared, fairly high
learning rate this averages out the step-to-step noise of the shared schedule without slowing the
live weights (README, "Validation, model selection and the training recipe").

Everything stays on the device of the parameters: one fused ``lerp`` over all trainable tensors per
step, no host read.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used after ``step`` completed updates: ``min(decay, (1 + step) / (10 + step))``.

    The warm-up (as timm's ``ModelEmaV3``) lets the average follow the weights closely in the first
    steps, when they move most, instead of dragging the initial weights along for ``1 / (1 - decay)``
    steps.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """The moving average of a model's trainable floating-point parameters.

    Frozen parameters and buffers are not averaged (they do not change in training).

    Args:
        model: The network being trained (its trainable parameters at construction are averaged).
        decay: Weight of the old average per step, in ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"trainer.ema_decay={decay!r} must be in [0, 1) (0: off)")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]
        params = dict(model.named_parameters())
        self._params = [params[n] for n in self.names]
        self.shadow = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average towards the live weights after ``step`` completed updates (0-based)."""
        weight = 1.0 - ema_decay_at(self.decay, step)
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self._params], weight)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the live ones are put back after it."""
        with torch.no_grad():
            live = [p.detach().clone() for p in self._params]
            torch._foreach_copy_([p.data for p in self._params], self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self._params], live)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Replace the model's trainable weights by the average (the end of a stage)."""
        torch._foreach_copy_([p.data for p in self._params], self.shadow)

    def state_dict(self) -> dict[str, Tensor]:
        """``{parameter name: averaged tensor}`` (the resume state keeps them as ``ema/<name>``)."""
        return dict(zip(self.names, self.shadow))

    @torch.no_grad()
    def load_state_dict(self, tensors: dict[str, Tensor], what: str) -> None:
        """Restore the average saved by :meth:`state_dict` (same trainable parameters, by name)."""
        if set(tensors) != set(self.names):
            missing, unexpected = sorted(set(self.names) - set(tensors)), sorted(set(tensors) - set(self.names))
            raise ValueError(f"{what}: the saved weight average does not fit the model's trainable parameters: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, t in zip(self.names, self.shadow):
            t.copy_(tensors[name].to(t.device, t.dtype))

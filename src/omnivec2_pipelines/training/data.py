"""In-memory batch sources over the tokenized arrays of one modality."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


class BatchSource:
    """Endless mini-batches of (x, y) rows, reshuffled every epoch.

    Args:
        x: Inputs, first axis = samples.
        y: Targets aligned with ``x`` (or None for self-supervised use).
        seed: Seed of the shuffling RNG.
        name: Used in error messages (e.g. ``"image.x"``).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None = None, seed: int = 0, name: str = "") -> None:
        if len(x) == 0:
            raise ValueError(f"batch source {name or '?'} is empty")
        if y is not None and len(y) != len(x):
            raise ValueError(f"batch source {name}: {len(x)} inputs but {len(y)} targets")
        self.name = name
        self.x = torch.from_numpy(np.require(x, requirements=["C", "W"]))
        self.y = None if y is None else torch.from_numpy(np.require(y, requirements=["C", "W"]))
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))
        self._pos = 0

    def __len__(self) -> int:
        return len(self.x)

    def _indices(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self._pos >= len(self._order):
                self._order, self._pos = self._rng.permutation(len(self.x)), 0
            take = self._order[self._pos:self._pos + n]
            self._pos += len(take)
            n -= len(take)
            out.append(take)
        return np.concatenate(out)

    def draw(self, n: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor | None]:
        """Next ``n`` rows (wrapping into a new epoch when needed), moved to ``device``."""
        idx = torch.from_numpy(self._indices(n))
        x = self.x[idx].to(device, non_blocking=True)
        y = None if self.y is None else self.y[idx].to(device, non_blocking=True)
        return x, y

    def state_dict(self) -> dict[str, Any]:
        """Shuffling position and RNG state (JSON-able), to resume exactly where training stopped."""
        return {"order": self._order.tolist(), "pos": self._pos, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["order"]) != len(self.x):
            raise ValueError(f"batch source {self.name}: resume state has {len(state['order'])} rows, "
                             f"data has {len(self.x)}")
        self._order = np.asarray(state["order"], dtype=np.int64)
        self._pos = int(state["pos"])
        self._rng.bit_generator.state = state["rng"]

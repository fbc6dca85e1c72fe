"""Batch sources over the tokenized arrays of one modality: in memory or streamed from shards."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from omnivec2_pipelines.shards import is_lazy


def _rows(a: Any, idx: np.ndarray) -> Tensor:
    """Rows ``idx`` of an in-memory tensor or a lazily read array, as a CPU tensor."""
    if isinstance(a, Tensor):
        return a[torch.from_numpy(idx)]
    return torch.from_numpy(a.take(idx))


class BatchSource:
    """Endless mini-batches of (x, y) rows, reshuffled every epoch.

    Inputs are numpy arrays (held in memory) or :class:`~omnivec2_pipelines.shards.ShardedArray` s
    (only the rows of each batch are read; the next batch is read in a background thread while
    the current one trains). Every rank of a data-parallel job draws the same global batches (same
    seed) and takes its own contiguous slice of each, so N ranks together see exactly the rows one
    process would.

    Args:
        x: Inputs, first axis = samples.
        y: Targets aligned with ``x`` (or None for self-supervised use).
        seed: Seed of the shuffling RNG.
        name: Used in error messages (e.g. ``"image.x"``).

    Attributes:
        wait_s: Seconds the caller spent blocked in :meth:`draw` waiting for rows (loader stall).
    """

    def __init__(self, x: Any, y: Any | None = None, seed: int = 0, name: str = "") -> None:
        if len(x) == 0:
            raise ValueError(f"batch source {name or '?'} is empty")
        if y is not None and len(y) != len(x):
            raise ValueError(f"batch source {name}: {len(x)} inputs but {len(y)} targets")
        self.name = name
        self.lazy = is_lazy(x) or is_lazy(y)
        self.x = x if is_lazy(x) else torch.from_numpy(np.require(x, requirements=["C", "W"]))
        self.y = None if y is None else y if is_lazy(y) else torch.from_numpy(np.require(y, requirements=["C", "W"]))
        self._n = len(x)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(self._n)
        self._pos = 0
        self.wait_s = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[np.ndarray, bool, Future] | None = None

    def __len__(self) -> int:
        return self._n

    def __getstate__(self) -> dict[str, Any]:  # worker processes start without a prefetch in flight
        return {**self.__dict__, "_pool": None, "_pending": None}

    def _indices(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self._pos >= len(self._order):
                self._order, self._pos = self._rng.permutation(self._n), 0
            take = self._order[self._pos:self._pos + n]
            self._pos += len(take)
            n -= len(take)
            out.append(take)
        return np.concatenate(out)

    def _peek(self, n: int) -> np.ndarray:
        """The next ``n`` global indices without advancing the sampler."""
        order, pos, state = self._order, self._pos, self._rng.bit_generator.state
        try:
            return self._indices(n)
        finally:
            self._order, self._pos = order, pos
            self._rng.bit_generator.state = state

    @staticmethod
    def _slice(idx: np.ndarray, shard: tuple[int, int], name: str) -> np.ndarray:
        rank, world = shard
        if len(idx) % world:
            raise ValueError(f"batch source {name}: a global batch of {len(idx)} rows cannot be split evenly over "
                             f"{world} ranks; make the batch size a multiple of the world size")
        per = len(idx) // world
        return idx[rank * per:(rank + 1) * per]

    def _read(self, idx: np.ndarray, pin: bool = False) -> tuple[Tensor, Tensor | None]:
        """Rows ``idx`` as CPU tensors, page-locked when ``pin`` (in the prefetch thread, off the step's path)."""
        x, y = _rows(self.x, idx), None if self.y is None else _rows(self.y, idx)
        if pin:
            x, y = x.pin_memory(), None if y is None else y.pin_memory()
        return x, y

    def draw(self, n: int, device: torch.device | str = "cpu", shard: tuple[int, int] = (0, 1),
             pin: bool = False) -> tuple[Tensor, Tensor | None]:
        """This rank's slice of the next global batch of ``n`` rows (wrapping into a new epoch when
        needed), moved to ``device`` (page-locked first and copied without blocking when ``pin``).

        Streamed sources read and page-lock the next batch in a background thread while the caller
        trains on this one.
        """
        start = time.perf_counter()
        idx = self._slice(self._indices(n), shard, self.name)
        pending, self._pending = self._pending, None
        if pending is not None and np.array_equal(pending[0], idx) and pending[1] == pin:
            x, y = pending[2].result()
        else:
            x, y = self._read(idx, pin)
        if self.lazy:  # read the next batch of this size while the caller trains on this one
            nxt = self._slice(self._peek(n), shard, self.name)
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix=f"prefetch-{self.name}")
            self._pending = (nxt, pin, self._pool.submit(self._read, nxt, pin))
        self.wait_s += time.perf_counter() - start
        x = x.to(device, non_blocking=pin)
        return x, None if y is None else y.to(device, non_blocking=pin)

    def state_dict(self) -> dict[str, Any]:
        """Shuffling position and RNG state (JSON-able), to resume exactly where training stopped."""
        return {"order": self._order.tolist(), "pos": self._pos, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["order"]) != self._n:
            raise ValueError(f"batch source {self.name}: resume state has {len(state['order'])} rows, "
                             f"data has {self._n}")
        self._order = np.asarray(state["order"], dtype=np.int64)
        self._pos = int(state["pos"])
        self._rng.bit_generator.state = state["rng"]
        self._pending = None

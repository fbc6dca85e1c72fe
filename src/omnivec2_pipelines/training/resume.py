"""Resumable training: the full state of a stage, written atomically every N steps.

A stage killed at any point (even with SIGKILL) continues from its last resume point when it is
run again, and ends with the same weights as an uninterrupted run. The state belongs to one
configuration: a *fingerprint* of the stage's parameters, initial weights and input arrays is
stored with it, and a run whose fingerprint differs starts fresh (and says so).

Nothing here unpickles arbitrary objects: weights are safetensors, optimizer state is read with
``torch.load(weights_only=True)``, everything else is JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from omnivec2_pipelines.utils import atomic_path

log = logging.getLogger(__name__)

_WEIGHTS, _OPTIM, _STATE, _BEST = "model.safetensors", "optimizer.pt", "state.json", "best.safetensors"


@dataclass
class ResumeConfig:
    """Where and how often a stage saves its resume state.

    Attributes:
        directory: Folder of this stage's resume state (removed when the stage completes).
        every: Save every N optimiser steps (0 disables saving and resuming).
        fingerprint: Identity of the configuration the state belongs to (see :func:`fingerprint`).
    """

    directory: Path
    every: int
    fingerprint: str


def _update(h: "hashlib._Hash", obj: Any) -> None:
    h.update(json.dumps(obj, sort_keys=True, default=str).encode())


def fingerprint(params: Any, tensors: Iterable[tuple[str, np.ndarray | torch.Tensor]]) -> str:
    """SHA-256 over JSON-able ``params`` and the names, shapes, dtypes and bytes of ``tensors``."""
    h = hashlib.sha256()
    _update(h, params)
    for name, t in tensors:
        if hasattr(t, "digest"):  # a sharded array: its content hash was computed when it was written
            _update(h, [name, list(t.shape), str(t.dtype), t.digest])
            continue
        a = t.detach().cpu().contiguous() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
        _update(h, [name, list(a.shape), str(a.dtype)])
        h.update(a.reshape(-1).view(torch.uint8).numpy().tobytes() if isinstance(a, torch.Tensor) else a.tobytes())
    return h.hexdigest()


def _rng_state(gen: np.random.Generator) -> dict[str, Any]:
    return gen.bit_generator.state


def save_resume_state(cfg: ResumeConfig, step: int, model: torch.nn.Module, opt: torch.optim.Optimizer,
                      sched: Any, generator: torch.Generator, rng: np.random.Generator,
                      objective_state: dict[str, Any], rows: list[dict[str, Any]],
                      selection: dict[str, Any] | None = None,
                      best_weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write the state after ``step`` completed steps, atomically (the old state stays until then).

    ``selection`` (JSON) and ``best_weights`` are the model selection's counters and best weights.
    """
    state = {"fingerprint": cfg.fingerprint, "step": step, "scheduler": sched.state_dict(),
             "rng": _rng_state(rng), "objective": objective_state, "rows": rows, "selection": selection}
    with atomic_path(cfg.directory) as tmp:
        tmp.mkdir()
        if best_weights is not None:
            save_file({k: v.contiguous() for k, v in best_weights.items()}, str(tmp / _BEST))
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / _WEIGHTS))
        torch.save({"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
                    "generator": generator.get_state()}, tmp / _OPTIM)
        (tmp / _STATE).write_text(json.dumps(state))


def load_resume_state(cfg: ResumeConfig, stage: str, model: torch.nn.Module, opt: torch.optim.Optimizer,
                      sched: Any, generator: torch.Generator, rng: np.random.Generator
                      ) -> tuple[int, dict[str, Any], list[dict[str, Any]], dict[str, Any] | None,
                                 dict[str, torch.Tensor] | None] | None:
    """Restore a matching state in place.

    Returns:
        ``(step, objective_state, rows, selection, best_weights)``, or None to start fresh.
    """
    d = cfg.directory
    if cfg.every <= 0 or not (d / _STATE).is_file():
        return None
    try:
        state = json.loads((d / _STATE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: resume state %s is unreadable (%s); starting fresh", stage, d, e)
        return None
    if state.get("fingerprint") != cfg.fingerprint:
        log.info("%s: parameters or inputs changed since the resume state in %s was written; starting fresh",
                 stage, d)
        shutil.rmtree(d, ignore_errors=True)
        return None
    model.load_state_dict(load_file(str(d / _WEIGHTS)))
    tensors = torch.load(d / _OPTIM, weights_only=True)
    opt.load_state_dict(tensors["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["torch_rng"])
    generator.set_state(tensors["generator"])
    rng.bit_generator.state = state["rng"]
    log.info("%s: resumed from step %d (state in %s)", stage, state["step"], d)
    best = load_file(str(d / _BEST)) if (d / _BEST).is_file() else None
    return int(state["step"]), state["objective"], state["rows"], state.get("selection"), best


def clear_resume_state(cfg: ResumeConfig) -> None:
    """Remove the state once the stage has finished."""
    shutil.rmtree(cfg.directory, ignore_errors=True)

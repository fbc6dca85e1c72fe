"""The training state of a stage: everything needed to continue it exactly, in safetensors + JSON.

A :class:`TrainingState` holds the weights after the last completed step, the optimizer's moments,
every RNG, the data sources' shuffling positions, the loss history and the model selection. It
serves two purposes:

* **crash-resume** (automatic): written atomically every ``trainer.checkpoint_every`` steps to
  ``trainer.resume_dir/<stage>``. A stage killed at any point (even with SIGKILL) continues from its
  last resume point when it is run again, and ends with the same weights as an uninterrupted run. The
  state belongs to one configuration: a *fingerprint* of the stage's parameters, initial weights and
  input arrays is stored with it, and so is the device type it was trained on (``cpu``, ``cuda``: the
  other's kernels and RNGs would not continue the run exactly); a run whose fingerprint or device type
  differs starts fresh (and says so). The folder is removed when the stage completes.
* **continuing a finished stage** (``trainer.resume_from``): the state after the last step is kept
  beside the stage's checkpoint (``<checkpoint>/training_state/``, see
  :mod:`~omnivec2_pipelines.training.checkpoint`).

Nothing here unpickles anything: tensors (weights, optimizer moments, torch RNG states) are one
safetensors file, everything else is JSON. Tensors are copied to the CPU when captured and read back
onto the CPU whatever device wrote them; restoring moves them to the device of the model's parameters
(``load_state_dict`` of the model and of the optimizer). The optimizer state is keyed by parameter
*name*, so it restores into a model whose parameters are listed in another order (a checkpoint rebuilt
from its config).
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

#: Layout version of a state folder (1: optimizer.pt + model.safetensors, before this layout).
FORMAT = 2
_TENSORS, _DOC = "state.safetensors", "state.json"
_MODEL, _BEST, _EMA, _OPTIM, _CUDA_RNG = "model/", "best/", "ema/", "optim/", "rng/cuda/"


class StateLayoutError(ValueError):
    """A training state written in another layout (by another version of this code)."""


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


@dataclass
class TrainingState:
    """A stage's full training state after ``doc["step"]`` completed steps.

    Attributes:
        tensors: ``model/<name>`` (weights of the last step), ``best/<name>`` (the model selection's
            best weights, when there are some), ``ema/<name>`` (the weight average of the trainable
            parameters, with ``trainer.ema_decay``), ``optim/<parameter>/<key>`` (optimizer state),
            ``rng/torch``, ``rng/generator`` and, when CUDA was in use, ``rng/cuda/<device index>``.
        doc: JSON: ``format``, ``step``, ``fingerprint`` (crash-resume), ``device`` (type of the device
            the model was on: ``cpu``, ``cuda``; absent in older states), ``rng`` (numpy), ``objective``
            (data positions), ``rows`` (loss history), ``selection``, ``optimizer`` (parameter groups by
            name, non-tensor state) and ``info`` (``stage``, ``steps``, ...).
    """

    tensors: dict[str, torch.Tensor]
    doc: dict[str, Any]

    @property
    def step(self) -> int:
        """Completed optimiser steps."""
        return int(self.doc["step"])

    def weights(self) -> dict[str, torch.Tensor]:
        """The model's state dict after the last completed step."""
        return _with_prefix(self.tensors, _MODEL)

    def best_weights(self) -> dict[str, torch.Tensor] | None:
        """The model selection's best weights, or None."""
        return _with_prefix(self.tensors, _BEST) or None

    def ema_weights(self) -> dict[str, torch.Tensor] | None:
        """The weight average of the trainable parameters (``trainer.ema_decay``), or None."""
        return _with_prefix(self.tensors, _EMA) or None


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


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


def _copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy that later in-place updates of the model or optimizer leave alone."""
    return t.detach().to("cpu", copy=True).contiguous()


def _cuda_in_use() -> bool:
    """True when this process has initialised CUDA (so its RNGs may have been drawn from)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _model_device(model: torch.nn.Module) -> str:
    """The device type of the model's parameters (``cpu`` for a model without any)."""
    return next((p.device.type for p in model.parameters()), "cpu")


def _cuda_rng(tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The saved CUDA RNG states (``rng/cuda/<index>``) in device order; empty when none were saved."""
    found = _with_prefix(tensors, _CUDA_RNG)
    return [found[k] for k in sorted(found, key=int)]


def optimizer_names(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters in the order its state dict numbers them."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    return [by_id[id(p)] for g in opt.param_groups for p in g["params"]]


def capture_state(step: int, model: torch.nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator,
                  rng: np.random.Generator, objective_state: dict[str, Any], rows: list[dict[str, Any]],
                  selection: dict[str, Any] | None = None, best_weights: dict[str, torch.Tensor] | None = None,
                  info: dict[str, Any] | None = None,
                  ema_weights: dict[str, torch.Tensor] | None = None) -> TrainingState:
    """Copy everything a run needs to continue after ``step`` completed steps (tensors to CPU).

    The RNG states of every CUDA device are kept too when this process has initialised CUDA.

    Args:
        step: Completed optimiser steps.
        model: The network being trained.
        opt: Its optimizer.
        generator: The torch generator of masking and batch sampling.
        rng: The numpy generator of the objective's draws.
        objective_state: The objective's data positions (``Objective.state_dict``).
        rows: The loss history so far.
        selection: The model selection's counters (JSON).
        best_weights: The model selection's best weights.
        info: JSON-able facts about the run (``stage``, ``steps``, ...).
        ema_weights: The weight average of the trainable parameters, when the run keeps one.
    """
    names = optimizer_names(model, opt)
    tensors = {f"{_MODEL}{k}": _copy(v) for k, v in model.state_dict().items()}
    tensors.update({f"{_BEST}{k}": _copy(v) for k, v in (best_weights or {}).items()})
    tensors.update({f"{_EMA}{k}": _copy(v) for k, v in (ema_weights or {}).items()})
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for i, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{names[i]}/{key}"] = _copy(value)
            else:
                scalars.setdefault(names[i], {})[key] = value
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/generator"] = generator.get_state()
    if _cuda_in_use():
        tensors.update({f"{_CUDA_RNG}{i}": _copy(t) for i, t in enumerate(torch.cuda.get_rng_state_all())})
    doc = {"format": FORMAT, "fingerprint": "", "device": _model_device(model), "step": int(step),
           "rng": rng.bit_generator.state,
           "objective": objective_state, "rows": [dict(r) for r in rows], "selection": selection,
           "optimizer": {"groups": [[names[i] for i in g["params"]] for g in sd["param_groups"]],
                         "scalars": scalars}, "info": dict(info or {})}
    return TrainingState(tensors, doc)


def restore_state(state: TrainingState, model: torch.nn.Module, opt: torch.optim.Optimizer,
                  generator: torch.Generator, rng: np.random.Generator, what: str, torch_rng: bool = True) -> None:
    """Load weights, optimizer state and RNGs of ``state`` in place.

    The optimizer keeps its own hyperparameters (learning rates, weight decay: the run's); only its
    state (moments, step counts) is restored, matched to the parameters by name.

    Args:
        state: What to restore.
        model: The network (same parameters as when the state was captured).
        opt: Its freshly built optimizer.
        generator: The torch generator of masking and batch sampling.
        rng: The numpy generator of the objective's draws.
        what: Names the state in errors (its folder or parameter).
        torch_rng: Restore the global torch RNGs too, CPU and (when saved and CUDA is available) CUDA
            (not on the other ranks of a data-parallel run, whose dropout differs from rank 0's). CUDA
            states of devices this machine lacks are left out.

    Raises:
        ValueError: when the model's or the optimizer's parameters differ from the saved ones.
    """
    missing, unexpected = model.load_state_dict(state.weights(), strict=False)
    if missing or unexpected:
        raise ValueError(f"{what}: the saved weights do not fit the model: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    names = optimizer_names(model, opt)
    saved = state.doc["optimizer"]
    current = opt.state_dict()
    groups = [{names[i] for i in g["params"]} for g in current["param_groups"]]
    if [set(g) for g in saved["groups"]] != groups:
        raise ValueError(f"{what}: the saved optimizer state has {len(saved['groups'])} parameter group(s) of "
                         f"{[len(g) for g in saved['groups']]} parameters; this run's optimizer has "
                         f"{[len(g) for g in groups]} (different trainable parameters)")
    index = {n: i for i, n in enumerate(names)}
    entries: dict[int, dict[str, Any]] = {}
    for key, t in _with_prefix(state.tensors, _OPTIM).items():
        name, _, field = key.rpartition("/")
        entries.setdefault(index[name], {})[field] = t
    for name, values in saved["scalars"].items():
        entries.setdefault(index[name], {}).update(values)
    opt.load_state_dict({"state": entries, "param_groups": current["param_groups"]})
    if torch_rng:
        torch.set_rng_state(state.tensors["rng/torch"])
        cuda = _cuda_rng(state.tensors)
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
    generator.set_state(state.tensors["rng/generator"])
    rng.bit_generator.state = state.doc["rng"]


def write_state(state: TrainingState, directory: str | Path) -> None:
    """Write ``state.safetensors`` + ``state.json`` to ``directory``, atomically (it is replaced as a whole)."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in state.tensors.items()}, str(tmp / _TENSORS))
        (tmp / _DOC).write_text(json.dumps(state.doc))


def read_state_doc(directory: str | Path) -> dict[str, Any]:
    """The JSON part of the state in ``directory`` (cheap: no tensors are read).

    Raises:
        FileNotFoundError: without a state.
        ValueError: when it is unreadable (:class:`StateLayoutError`: of another layout).
    """
    d = Path(directory)
    if not (d / _DOC).is_file():
        raise FileNotFoundError(f"{d} holds no training state ({_DOC} + {_TENSORS})")
    try:
        doc = json.loads((d / _DOC).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"training state {d / _DOC} is unreadable: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format", 1) if isinstance(doc, dict) else "?"
        raise StateLayoutError(f"training state {d} has layout {found}, this version reads layout {FORMAT}")
    return doc


def read_state(directory: str | Path) -> TrainingState:
    """The state saved in ``directory``, its tensors on the CPU (see :func:`read_state_doc` for the errors)."""
    d = Path(directory)
    doc = read_state_doc(d)
    try:
        tensors = load_file(str(d / _TENSORS), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"training state {d / _TENSORS} is unreadable: {e}") from e
    return TrainingState(tensors, doc)


def save_resume_state(cfg: ResumeConfig, state: TrainingState) -> None:
    """Write the crash-resume state, atomically (the old state stays until then)."""
    write_state(TrainingState(state.tensors, {**state.doc, "fingerprint": cfg.fingerprint}), cfg.directory)


def load_resume_state(cfg: ResumeConfig, stage: str,
                      device: torch.device | str | None = None) -> TrainingState | None:
    """The crash-resume state of this configuration, or None to start fresh.

    A state of another configuration (fingerprint), device type or layout is removed; an unreadable one
    is left alone (and a warning says so).

    Args:
        cfg: Where the state is and the fingerprint it must have.
        stage: Names the stage in messages.
        device: The run's resolved device (``trainer.device``); a state written on another device
            type is not resumed. None skips the check, as does a state that does not record its device.
    """
    d = cfg.directory
    if cfg.every <= 0 or not (d / _DOC).is_file():
        return None
    try:
        state = read_state(d)
    except StateLayoutError as e:
        log.info("%s: %s; starting fresh", stage, e)
        shutil.rmtree(d, ignore_errors=True)
        return None
    except ValueError as e:
        log.warning("%s: %s; starting fresh", stage, e)
        return None
    if state.doc.get("fingerprint") != cfg.fingerprint:
        log.info("%s: parameters or inputs changed since the resume state in %s was written; starting fresh",
                 stage, d)
        shutil.rmtree(d, ignore_errors=True)
        return None
    saved, current = state.doc.get("device"), None if device is None else torch.device(device).type
    if current is not None and saved is not None and saved != current:
        log.info("%s: the resume state in %s was written on %s, this run is on %s (trainer.device); starting "
                 "fresh", stage, d, saved, current)
        shutil.rmtree(d, ignore_errors=True)
        return None
    log.info("%s: resumed from step %d (state in %s)", stage, state.step, d)
    return state


def clear_resume_state(cfg: ResumeConfig) -> None:
    """Remove the state once the stage has finished."""
    shutil.rmtree(cfg.directory, ignore_errors=True)

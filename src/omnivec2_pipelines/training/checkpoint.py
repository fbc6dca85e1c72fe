"""Checkpoints: safetensors weights + a JSON config that rebuilds the model with no other input.

A checkpoint directory holds ``model.safetensors`` and ``config.json`` (``format_version``, the model
config, ``meta``), and, when a training stage wrote it, ``training_state/``: the stage's state after
its last step (see :mod:`~omnivec2_pipelines.training.resume`), which ``trainer.resume_from`` continues.

Starting a run from a checkpoint that a parameter names (``<stage>.init``, ``resume_from``, a
fine-tuning's ``init``): :func:`load_init` reads it with errors naming the parameter, and
:func:`check_model_compatible` compares its architecture with the run's ``model`` parameters.

The training stages' checkpoints are versioned (Kedro's dataset versioning): ``data/06_models/<stage>/``
holds one ``<version>/<stage>/`` checkpoint per run. Every function here that takes a checkpoint
directory also takes such a folder of versions and reads its newest (:func:`resolve_checkpoint_dir`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from safetensors.torch import load_file, save_file

from omnivec2_pipelines.models import ModelConfig, OmniVec2
from omnivec2_pipelines.training.resume import TrainingState, fingerprint, read_state, read_state_doc, write_state
from omnivec2_pipelines.utils import atomic_path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
#: Subfolder of a stage's final training state (present when a training stage wrote the checkpoint).
TRAINING_STATE = "training_state"
FORMAT_VERSION = 1
#: Model settings that leave the weights' shapes alone: a run may set them apart from its starting checkpoint.
REGULARISATION = ("dropout", "drop_path")
#: Model settings that shape the weights: a run starting from a checkpoint must match them.
ARCHITECTURE = tuple(f.name for f in fields(ModelConfig) if f.name not in ("tokenizers", "heads", *REGULARISATION))
PACKAGE = "omnivec2-pipelines"


def save_checkpoint(model: OmniVec2, path: str | Path, meta: dict[str, Any] | None = None,
                    training_state: TrainingState | None = None) -> None:
    """Write ``path/model.safetensors`` and ``path/config.json`` atomically.

    Args:
        model: The network to save.
        path: Checkpoint directory (replaced as a whole).
        meta: JSON-able extras (stage, class names, normalisation, ...), stored in config.json.
        training_state: The stage's state after its last step, written to ``path/training_state/``.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    doc = {"format_version": FORMAT_VERSION, "model": model.cfg.to_dict(), "meta": meta or {}}
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True))
        if training_state is not None:
            write_state(training_state, tmp / TRAINING_STATE)


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """For a folder of versions (``<path>/<version>/<name of path>/config.json``, as Kedro's dataset
    versioning saves them) the newest version's directory, as Kedro loads it; else ``path`` unchanged
    (a checkpoint directory, or one saved before versioning; reading it reports what is missing).

    Version names are timestamps, so the newest sorts last (as in Kedro's own choice of the latest).
    """
    path = Path(path)
    if not path.is_dir():
        return path
    found = sorted(d.name for d in path.iterdir() if (d / path.name / CONFIG).is_file())
    return path / found[-1] / path.name if found else path


def read_config(path: str | Path, what: str | None = None) -> dict[str, Any]:
    """The checkpoint's config.json (``format_version``, ``model``, ``meta``), checked; no weights are read.

    Args:
        path: Checkpoint directory.
        what: The parameter that named it (``multitask.init``), to start every error with; None: none.

    Raises:
        FileNotFoundError: when the directory or one of its two files is missing.
        ValueError: when config.json is not valid JSON or of another format version.
    """
    path = resolve_checkpoint_dir(path)
    prefix = f"{what}: " if what else ""
    if not path.exists():
        raise FileNotFoundError(f"{prefix}{path} does not exist; expected a checkpoint directory "
                                f"({CONFIG} + {WEIGHTS})")
    for f in (path / CONFIG, path / WEIGHTS):
        if not f.is_file():
            raise FileNotFoundError(f"{prefix}checkpoint {path}: missing {f.name} (expected {CONFIG} + {WEIGHTS})")
    try:
        doc = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{prefix}checkpoint config {path / CONFIG} is not valid JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format_version") != FORMAT_VERSION:
        found = doc.get("format_version") if isinstance(doc, dict) else None
        raise ValueError(f"{prefix}checkpoint {path / CONFIG}: format_version {found!r}, expected {FORMAT_VERSION}")
    return doc


def load_checkpoint(path: str | Path) -> tuple[OmniVec2, dict[str, Any]]:
    """Rebuild the model saved at ``path``; returns ``(model, meta)``.

    Never unpickles anything: weights come from safetensors, structure from JSON. A folder of versions
    reads its newest (:func:`resolve_checkpoint_dir`).
    """
    path = resolve_checkpoint_dir(path)
    doc = read_config(path)
    model = OmniVec2(ModelConfig.from_dict(doc["model"]))
    w_file = path / WEIGHTS
    try:
        state = load_file(str(w_file))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"checkpoint weights {w_file} are unreadable: {e}") from e
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {w_file} does not match its config: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model, doc.get("meta", {})


class Checkpoint:
    """A model with its JSON-able metadata, as passed between stages through the catalog.

    Args:
        model: The network.
        meta: Stage name, per-modality data metadata (class names, normalisation), ...
        training_state: The stage's state after its last step, saved with the checkpoint so that
            ``trainer.resume_from`` can continue it (not read back by :meth:`load`: see
            :func:`load_training_state`).
    """

    def __init__(self, model: OmniVec2, meta: dict[str, Any] | None = None,
                 training_state: TrainingState | None = None) -> None:
        self.model = model
        self.meta = meta or {}
        self.training_state = training_state

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.model, path, self.meta, self.training_state)

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        model, meta = load_checkpoint(path)
        return cls(model, meta)


def load_init(path: str | Path, what: str) -> Checkpoint:
    """The checkpoint a parameter names as a run's starting point.

    Args:
        path: Checkpoint directory (``model.safetensors`` + ``config.json``).
        what: The parameter's dotted name (``multitask.init``, ``finetune.init``), named by every error.

    Raises:
        FileNotFoundError: ``<what>: <path> does not exist ...`` (or a file of it is missing).
        ValueError: ``<what>: ...`` when it is unreadable or its weights do not match its config.
    """
    read_config(path, what)
    try:
        return Checkpoint.load(path)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: {e}") from e


def _config(cfg: Mapping[str, Any] | ModelConfig, what: str, whose: str) -> ModelConfig:
    if isinstance(cfg, ModelConfig):
        return cfg
    try:
        return ModelConfig.from_dict(dict(cfg))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: {whose} model config is invalid: {e}") from e


def check_model_compatible(model_cfg: Mapping[str, Any] | ModelConfig, model_params: Mapping[str, Any],
                           what: str) -> None:
    """Refuse a starting checkpoint whose architecture is not the run's ``model`` parameters.

    Every key of :data:`ARCHITECTURE` (widths, depths, heads, MLP ratio) must be equal; a key the
    parameters leave out takes :class:`~omnivec2_pipelines.models.ModelConfig`'s default. The
    regularisation keys (:data:`REGULARISATION`) may differ, and tokenizers and heads are the data's.

    Args:
        model_cfg: The checkpoint's model config (its config.json ``model``, or the model's ``cfg``).
        model_params: The run's ``params:model``.
        what: The parameter that named the checkpoint, e.g. ``multitask.init=data/06_models/x``.

    Raises:
        ValueError: ``<what>: the checkpoint has model.width=64 but the run's model.width=128; ...``,
            naming every mismatched key.
    """
    saved = _config(model_cfg, what, "the checkpoint's")
    run = _config({k: v for k, v in dict(model_params or {}).items() if k not in ("tokenizers", "heads")},
                  what, "the run's")
    diffs = [f"model.{k}={getattr(saved, k)!r} but the run's model.{k}={getattr(run, k)!r}"
             for k in ARCHITECTURE if getattr(saved, k) != getattr(run, k)]
    if diffs:
        raise ValueError(f"{what}: the checkpoint has {'; '.join(diffs)}. Set these model parameters to the "
                         f"checkpoint's (its {CONFIG}), or start from a checkpoint of the run's architecture")


def training_state_doc(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON part of the training state saved beside the checkpoint at ``path`` (cheap).

    Raises:
        FileNotFoundError: ``<what>: checkpoint <path> has no training state ...``.
        ValueError: when it is unreadable or of another layout.
    """
    path = resolve_checkpoint_dir(path)
    d = path / TRAINING_STATE
    try:
        return read_state_doc(d)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{what}: checkpoint {path} has no training state ({TRAINING_STATE}/), so it "
                                f"cannot be continued; it was not written by a training stage of this version. "
                                f"To start a new run from its weights, use <stage>.init instead") from e
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e


def load_training_state(path: str | Path, what: str) -> TrainingState:
    """The training state saved beside the checkpoint at ``path`` (errors as :func:`training_state_doc`)."""
    path = resolve_checkpoint_dir(path)
    training_state_doc(path, what)
    try:
        return read_state(path / TRAINING_STATE)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e


def weights_digest(model: OmniVec2) -> str:
    """SHA-256 of a model's config and weights: the identity of a checkpoint, recorded by what starts from it."""
    return fingerprint(model.cfg.to_dict(), sorted(model.state_dict().items()))


@functools.lru_cache(maxsize=1)
def project_provenance() -> dict[str, str | None]:
    """The installed package's version and the git revision of its checkout (None where unknown; never raises)."""
    try:
        version: str | None = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"package": PACKAGE, "version": version, "git_revision": _git_revision(Path(__file__).resolve().parent)}


def _git_revision(folder: Path) -> str | None:
    """``git rev-parse HEAD`` in ``folder``, or None (not a checkout, no git, or it took over 5 s)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = proc.stdout.strip()
    return rev if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", rev) else None

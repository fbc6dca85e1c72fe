"""Checkpoints: safetensors weights + a JSON config that rebuilds the model with no other input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from omnivec2_pipelines.models import ModelConfig, OmniVec2
from omnivec2_pipelines.utils import atomic_path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
FORMAT_VERSION = 1


def save_checkpoint(model: OmniVec2, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``path/model.safetensors`` and ``path/config.json`` atomically.

    Args:
        model: The network to save.
        path: Checkpoint directory (replaced as a whole).
        meta: JSON-able extras (stage, class names, normalisation, ...), stored in config.json.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    doc = {"format_version": FORMAT_VERSION, "model": model.cfg.to_dict(), "meta": meta or {}}
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file(state, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True))


def load_checkpoint(path: str | Path) -> tuple[OmniVec2, dict[str, Any]]:
    """Rebuild the model saved at ``path``; returns ``(model, meta)``.

    Never unpickles anything: weights come from safetensors, structure from JSON.
    """
    path = Path(path)
    cfg_file, w_file = path / CONFIG, path / WEIGHTS
    for f in (cfg_file, w_file):
        if not f.is_file():
            raise FileNotFoundError(f"checkpoint {path}: missing {f.name} (expected {CONFIG} + {WEIGHTS})")
    try:
        doc = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"checkpoint config {cfg_file} is not valid JSON: {e}") from e
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint {cfg_file}: format_version {doc.get('format_version')!r}, "
                         f"expected {FORMAT_VERSION}")
    model = OmniVec2(ModelConfig.from_dict(doc["model"]))
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
    """

    def __init__(self, model: OmniVec2, meta: dict[str, Any] | None = None) -> None:
        self.model = model
        self.meta = meta or {}

    def save(self, path: str | Path) -> None:
        save_checkpoint(self.model, path, self.meta)

    @classmethod
    def load(cls, path: str | Path) -> "Checkpoint":
        model, meta = load_checkpoint(path)
        return cls(model, meta)

"""The ``predict`` and ``export`` parameter blocks: their keys and the checks run before the first node (no torch)."""

from __future__ import annotations

from typing import Any, Mapping

from omnivec2_pipelines.checks import pos_int
from omnivec2_pipelines.params_schema import check_keys

#: Keys of ``predict`` (``conf/base/parameters_predict.yml``).
PREDICT_KEYS = ("modality", "task", "path", "checkpoint", "batch_size", "on_error", "device")
#: Keys of ``export``.
EXPORT_KEYS = ("checkpoint", "tasks", "formats", "examples", "out_dir")
#: ``predict.on_error`` values.
ON_ERROR = ("raise", "skip")
#: ``export.formats`` values (as :data:`omnivec2_pipelines.inference.export.FORMATS`).
EXPORT_FORMATS = ("torch_export", "onnx")


def _path(value: Any, key: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a path string, got {value!r}")


def check_predict_params(value: Any, params: Mapping[str, Any] | None = None) -> None:
    """Check the ``predict`` block: keys, ``modality`` (registered), ``task``, ``path``, ``checkpoint``,
    ``batch_size``, ``on_error``, ``device``.

    Raises:
        ValueError: naming the bad key (``predict.<key>``) and what it expects.
    """
    from omnivec2_pipelines.modalities.base import registered_modalities

    if not isinstance(value, Mapping):
        raise ValueError(f"predict must be a mapping of {list(PREDICT_KEYS)}, got {value!r}")
    check_keys(value, PREDICT_KEYS, "predict")
    known = registered_modalities()
    if value.get("modality") not in known:
        raise ValueError(f"predict.modality must be one of {known}, got {value.get('modality')!r}")
    if not isinstance(value.get("task"), str) or not value.get("task"):
        raise ValueError(f"predict.task must be a task name (e.g. 'classification'), got {value.get('task')!r}")
    _path(value.get("path"), "predict.path")
    _path(value.get("checkpoint"), "predict.checkpoint")
    pos_int(dict(value), "batch_size", "predict", 256)
    if value.get("on_error", "raise") not in ON_ERROR:
        raise ValueError(f"predict.on_error must be one of {list(ON_ERROR)}, got {value.get('on_error')!r}")
    if not isinstance(value.get("device", "auto"), str):
        raise ValueError(f"predict.device must be 'auto', 'cpu' or 'cuda', got {value.get('device')!r}")


def check_export_params(value: Any, params: Mapping[str, Any] | None = None) -> None:
    """Check the ``export`` block: keys, ``checkpoint``, ``tasks`` (``all`` or ``<modality>.<task>`` names),
    ``formats``, ``examples``, ``out_dir``.

    Raises:
        ValueError: naming the bad key (``export.<key>``) and what it expects.
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"export must be a mapping of {list(EXPORT_KEYS)}, got {value!r}")
    check_keys(value, EXPORT_KEYS, "export")
    _path(value.get("checkpoint"), "export.checkpoint")
    _path(value.get("out_dir"), "export.out_dir")
    tasks = value.get("tasks", "all")
    if tasks != "all" and (not isinstance(tasks, list) or not tasks
                           or any(not isinstance(t, str) or t.count(".") != 1 for t in tasks)):
        raise ValueError(f"export.tasks must be 'all' or a list of '<modality>.<task>' names, got {tasks!r}")
    formats = value.get("formats", list(EXPORT_FORMATS))
    if not isinstance(formats, list) or not formats or any(f not in EXPORT_FORMATS for f in formats):
        raise ValueError(f"export.formats must be a non-empty list of {list(EXPORT_FORMATS)}, got {formats!r}")
    pos_int(dict(value), "examples", "export", 8)

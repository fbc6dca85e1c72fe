"""What the ``predict`` and ``export`` pipelines do, from their parameter blocks (pure torch, no Kedro).

:func:`predict_inputs` reads a folder (or file) of raw inputs, predicts one (modality, task) and returns the
prediction table, its arrays and a report (inputs read, skipped with reasons, predicted; the metrics it
observed when the inputs sit in class folders). :func:`export_tasks` exports every (modality, task) of a
checkpoint for serving (:mod:`omnivec2_pipelines.inference.export`) and reports each format's outcome.
"""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import numpy as np
import pandas as pd

from omnivec2_pipelines.inference.predictor import Predictions, Predictor
from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.tasks import get_task_kind


def folder_labels(ids: list[str], spec: TaskSpec) -> np.ndarray | None:
    """Each input's class index from the folder it sits in (``<class>/<file>``, ``<split>/<class>/<file>``), when
    the task labels whole samples and every input's folder is one of its class names; else None."""
    if not get_task_kind(spec.kind).sample_labels or not ids:
        return None
    index = {name: i for i, name in enumerate(spec.class_names)}
    parents = [PurePosixPath(i).parts[-2] if len(PurePosixPath(i).parts) > 1 else None for i in ids]
    if any(p not in index for p in parents):
        return None
    return np.asarray([index[p] for p in parents], dtype=np.int64)


def observed_metrics(pred: Predictions, scale: Mapping[str, float] | None) -> dict[str, Any]:
    """``{"labels": where they came from or None, "metrics": the kind's metrics or None}`` of predictions."""
    y = folder_labels(pred.ids, pred.spec)
    if y is None:
        return {"labels": None, "metrics": None}
    kind = get_task_kind(pred.spec.kind)
    return {"labels": "folder names", "metrics": kind.compute_metrics(pred.spec, y, pred.raw, scale),
            "metric_units": kind.units(bool(scale))}


def prediction_arrays(pred: Predictions) -> dict[str, np.ndarray]:
    """Every output array of ``pred`` (text as fixed-width unicode), its ids, head outputs and class names."""
    arrays = {"id": np.asarray(pred.ids, dtype=str), "raw": pred.raw,
              "class_names": np.asarray(pred.class_names, dtype=str)}
    for name, a in pred.outputs.items():
        arrays[name] = a.astype(str) if a.dtype == object else a
    return arrays


def _checked_path(value: Any, key: str) -> Path:
    path = Path(str(value))
    if not path.exists():
        raise FileNotFoundError(f"{key}: {path} does not exist; expected a file or a folder of inputs")
    return path


def predict_inputs(params: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
    """The ``predict`` pipeline's work: ``(table, arrays, report)`` for ``params`` (the ``predict`` block).

    Raises:
        FileNotFoundError: ``predict.path`` or ``predict.checkpoint`` missing.
        ValueError: ``predict.modality`` / ``predict.task`` the checkpoint cannot predict.
        DataError: a bad input with ``on_error: raise``, or every input skipped.
    """
    modality, task = params["modality"], params["task"]
    path = _checked_path(params["path"], "predict.path")
    predictor = Predictor.from_checkpoint(params["checkpoint"], params.get("device", "auto"),
                                          params.get("batch_size", 256))
    try:
        predictor.spec(modality, task)
    except KeyError as e:
        raise ValueError(f"predict.modality / predict.task ({modality}.{task}): {e.args[0]}") from e
    start = time.perf_counter()
    pred = predictor.predict(modality, task, path, params.get("on_error", "raise"))
    seconds = time.perf_counter() - start
    scale = (predictor.bundle_meta(modality).get("tasks_scale") or {}).get(task)
    report = {"modality": modality, "task": task, "kind": pred.spec.kind, "checkpoint": str(params["checkpoint"]),
              "path": str(path), "on_error": params.get("on_error", "raise"), "device": str(predictor.device),
              "inputs": len(pred) + len(pred.skipped), "read": len(pred), "skipped": len(pred.skipped),
              "predicted": len(pred),
              "skipped_inputs": [{"input": name, "reason": why} for name, why in pred.skipped],
              "seconds": seconds, "inputs_per_s": len(pred) / seconds if seconds > 0 else None,
              **observed_metrics(pred, scale)}
    return pred.to_frame(), prediction_arrays(pred), report


def _example_inputs(bundle: ArrayBundle, spec: TaskSpec, n: int) -> np.ndarray:
    """Up to ``n`` real model inputs of a task: the first rows of the test split (else val, else train)."""
    for split in ("test", "val", "train"):
        if bundle.has(split, spec.input_key) and len(bundle.get(split, spec.input_key)):
            return np.asarray(bundle.get(split, spec.input_key)[:n])
    raise ValueError(f"export {spec.name}: the tokenized data has no rows of {spec.input_key!r}")


def export_tasks(params: Mapping[str, Any], bundles: Mapping[str, ArrayBundle]) -> dict[str, Any]:
    """The ``export`` pipeline's work: every (modality, task) of ``export.tasks`` exported to ``export.out_dir``.

    Example inputs (traced, and compared with the eager model) are the first ``export.examples`` rows of
    each modality's tokenized test split. A pair that cannot be exported is in the report with the reason.

    Raises:
        ValueError: ``export.tasks`` names a pair the checkpoint has no head for.
    """
    from omnivec2_pipelines.inference.export import FORMATS, export_task

    predictor = Predictor.from_checkpoint(params["checkpoint"], "cpu")
    pairs = predictor.tasks()
    wanted = params.get("tasks", "all")
    if wanted != "all":
        unknown = [t for t in wanted if tuple(t.split(".")) not in pairs]
        if unknown:
            raise ValueError(f"export.tasks: {unknown} have no head in {params['checkpoint']}; it has "
                             f"{[f'{m}.{t}' for m, t in pairs]}")
        pairs = [tuple(t.split(".")) for t in wanted]
    formats = tuple(params.get("formats", FORMATS))
    exports = []
    for m, t in pairs:
        if m not in bundles:
            exports.append({"modality": m, "task": t, "formats": {
                f: {"ok": False, "error": f"no example inputs: modality {m!r} is not enabled in this run "
                                          f"(its tokenized data is needed)"} for f in formats}})
            continue
        x = _example_inputs(bundles[m], predictor.spec(m, t), int(params.get("examples", 8)))
        exports.append(export_task(predictor.model, predictor.bundle_meta(m), m, t, x, params["out_dir"], formats))
    summary = {f: {"ok": [f"{e['modality']}.{e['task']}" for e in exports if e["formats"][f]["ok"]],
                   "failed": {f"{e['modality']}.{e['task']}": e["formats"][f]["error"]
                              for e in exports if not e["formats"][f]["ok"]}} for f in formats}
    return {"checkpoint": str(params["checkpoint"]), "out_dir": str(params["out_dir"]), "exports": exports,
            "summary": summary}

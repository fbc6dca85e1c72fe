"""Held-out evaluation of every trained (modality, task) head, beside a classical baseline."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.reporting import DEFAULT_UNITS
from omnivec2_pipelines.training.trainer import resolve_device

log = logging.getLogger(__name__)


@torch.no_grad()
def predict(model: OmniVec2, modality: str, task: str, x: np.ndarray, batch_size: int = 256,
            device: str = "auto") -> np.ndarray:
    """Single-stream inference over ``x`` in batches; returns the head outputs as numpy."""
    dev = resolve_device(device)
    model.to(dev).eval()
    outs = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.require(x[i:i + batch_size], requirements=["C", "W"])).to(dev)
        outs.append(model(modality, xb, task).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0,))


def _iou_scores(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    ious = []
    for c in range(k):
        inter = np.sum((y_true == c) & (y_pred == c))
        union = np.sum((y_true == c) | (y_pred == c))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious)) if ious else 0.0


def task_metrics(spec: TaskSpec, y_true: np.ndarray, y_pred: np.ndarray,
                 scale: Mapping[str, float] | None = None) -> dict[str, float]:
    """Metrics of one task (:func:`metric_units` gives the unit of each).

    * classification: ``accuracy``, ``macro_f1`` (``y_pred``: logits or labels);
    * regression: ``mse``, ``mae`` (in the target's units when ``scale`` is given);
    * dense_regression: ``rmse``, ``abs_rel`` (on the de-normalised scale when ``scale`` =
      ``{"mean", "std"}`` is given; ``abs_rel`` over pixels with a positive target), and
      ``mse_standardized``: the mean squared error of the target as tokenized, i.e. standardised
      with the train mean/std (the training loss's scale; ``(rmse / std) ** 2`` when ``scale`` is
      given), named so that nobody reads it as ``rmse ** 2``;
    * segmentation: ``miou`` (mean over classes present in target or prediction), ``accuracy`` per point.
    """
    if spec.kind == "classification":
        labels = y_pred.argmax(-1) if y_pred.ndim == 2 else y_pred
        return {"accuracy": float(accuracy_score(y_true, labels)),
                "macro_f1": float(f1_score(y_true, labels, average="macro",
                                           labels=list(range(spec.out_dim)), zero_division=0))}
    if spec.kind == "segmentation":
        labels = y_pred.argmax(-1) if y_pred.ndim == y_true.ndim + 1 else y_pred
        return {"miou": _iou_scores(y_true, labels, spec.out_dim), "accuracy": float(np.mean(labels == y_true))}
    if spec.kind == "dense_regression":
        yt, yp = y_true.astype(np.float64), y_pred.astype(np.float64)
        if scale:
            yt, yp = yt * scale["std"] + scale["mean"], yp * scale["std"] + scale["mean"]
        pos = yt > 1e-6
        return {"rmse": float(np.sqrt(np.mean((yt - yp) ** 2))),
                "abs_rel": float(np.mean(np.abs(yt[pos] - yp[pos]) / yt[pos])) if pos.any() else float("nan"),
                "mse_standardized": float(np.mean((y_true.astype(np.float64) - y_pred.astype(np.float64)) ** 2))}
    yt, yp = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)
    if scale:  # report in the target's own units
        yt, yp = yt * scale["std"] + scale["mean"], yp * scale["std"] + scale["mean"]
    return {"mse": float(mean_squared_error(yt, yp)), "mae": float(mean_absolute_error(yt, yp))}


#: Unit of each metric name; "target" is the task target's unit (see :func:`metric_units`).
METRIC_UNITS = DEFAULT_UNITS


def metric_units(spec: TaskSpec, scaled: bool) -> dict[str, str]:
    """The unit of every metric :func:`task_metrics` returns for ``spec``.

    Args:
        spec: The task.
        scaled: Whether the bundle stores the target's scale (``meta["tasks_scale"]``), so errors
            are de-standardised into the target's original units.

    Returns:
        ``{metric: unit}``: ``fraction (0-1)``, ``0-1``, ``ratio (abs. error / target)``; for errors,
        ``target`` / ``target^2`` (the target's original units, de-standardised),
        ``tokenized target`` / ``tokenized target^2`` (the target as tokenization wrote it, e.g.
        z-scores per series, when no scale is stored) or ``z-score^2`` (standardised with the train
        mean and std).
    """
    names = {"classification": ("accuracy", "macro_f1"), "segmentation": ("miou", "accuracy"),
             "dense_regression": ("rmse", "abs_rel", "mse_standardized")}.get(spec.kind, ("mse", "mae"))
    units = {"accuracy": "fraction of points (0-1)"} if spec.kind == "segmentation" else {}
    out = {}
    for n in names:
        unit = units.get(n, METRIC_UNITS[n])
        if not scaled and (unit.startswith("target") or unit == "z-score^2"):
            unit = "tokenized target^2" if unit == "z-score^2" else "tokenized " + unit
        out[n] = unit
    return out


def baseline_predictions(spec: TaskSpec, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                         seed: int = 0, max_points: int = 20000) -> np.ndarray:
    """A classical model fitted on the train split, predicting the test split.

    Logistic regression (classification), ridge (regression, dense regression: flat pixels out),
    per-point logistic regression on point coordinates (segmentation; ``f_*`` are the raw
    point clouds, at most ``max_points`` training points).
    """
    if spec.kind == "segmentation":
        pts_tr, pts_te = f_train[..., :3].reshape(-1, 3), f_test[..., :3].reshape(-1, 3)
        lab_tr = y_train.reshape(-1)
        if len(pts_tr) > max_points:
            keep = np.random.default_rng(seed).choice(len(pts_tr), max_points, replace=False)
            pts_tr, lab_tr = pts_tr[keep], lab_tr[keep]
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
        return est.fit(pts_tr, lab_tr).predict(pts_te).reshape(f_test.shape[:2])
    xtr, xte = f_train.reshape(len(f_train), -1), f_test.reshape(len(f_test), -1)
    if spec.kind == "classification":
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        return est.fit(xtr, y_train).predict(xte)
    est = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    return est.fit(xtr, y_train.reshape(len(y_train), -1)).predict(xte).reshape(len(xte), *y_train.shape[1:])


def evaluate(model: OmniVec2, bundles: Mapping[str, ArrayBundle], split: str = "test", batch_size: int = 256,
             device: str = "auto", baselines: bool = True, seed: int = 0,
             details: dict[str, Any] | None = None) -> dict[str, float]:
    """Metrics of every head of ``model`` on ``split``, flat ``"<modality>.<task>.<metric>"`` keys.

    With ``baselines``, adds ``"<modality>.<task>.baseline.<metric>"`` from a classical model
    fitted on the train split of the same arrays (features from the modality's
    ``baseline_features``). When ``details`` is a dict, it receives per-task extras for reports:
    ``{"<modality>.<task>": {"units": {metric: unit}}}`` (see :func:`metric_units`), plus
    ``"confusion": [[...]], "class_names": [...]`` for classification.
    """

    out: dict[str, Any] = {}
    for hcfg in sorted(model.cfg.heads.values(), key=lambda h: (h.modality, h.task)):
        m, t = hcfg.modality, hcfg.task
        if m not in bundles:
            log.warning("evaluation: %s.%s has a head but modality %s is not enabled; skipped", m, t, m)
            continue
        b = bundles[m]
        spec = b.tasks[t]
        scale = b.meta.get("tasks_scale", {}).get(t)
        x, y = b.get(split, spec.input_key), np.asarray(b.get(split, spec.target_key))  # x may be read lazily
        if len(x) == 0:
            raise ValueError(f"evaluation: {m} has no samples in split {split!r}")
        pred = predict(model, m, t, x, batch_size, device)
        for k, v in task_metrics(spec, y, pred, scale).items():
            out[f"{m}.{t}.{k}"] = v
        if details is not None:
            details[f"{m}.{t}"] = {"units": metric_units(spec, bool(scale))}
            if spec.kind == "classification":
                details[f"{m}.{t}"].update(
                    confusion=confusion_matrix(y, pred.argmax(-1), labels=list(range(spec.out_dim))).tolist(),
                    class_names=list(spec.class_names))
        if baselines:
            # the classical baselines fit in memory: sharded arrays are read whole here
            x_tr, y_tr = np.asarray(b.get("train", spec.input_key)), np.asarray(b.get("train", spec.target_key))
            pred = baseline_predictions(spec, task_baseline_features(m, b, spec, x_tr), y_tr,
                                        task_baseline_features(m, b, spec, np.asarray(x)), seed)
            for k, v in task_metrics(spec, y, pred, scale).items():
                out[f"{m}.{t}.baseline.{k}"] = v
    return out


def _registered() -> list[str]:
    from omnivec2_pipelines.modalities.base import registered_modalities

    return registered_modalities()


def task_baseline_features(modality: str, bundle: ArrayBundle, spec: TaskSpec, x: np.ndarray) -> np.ndarray:
    """The classical baseline's input features for rows ``x`` of a task: the modality's
    ``baseline_features`` (flattened arrays for unregistered modalities); the raw point clouds for
    segmentation, whose baseline classifies points by their coordinates."""
    if spec.kind == "segmentation":
        return np.asarray(x)
    if modality in _registered():
        from omnivec2_pipelines.modalities.base import get_modality

        return get_modality(modality).baseline_features(np.asarray(x), bundle.meta)
    return np.asarray(x).reshape(len(x), -1)

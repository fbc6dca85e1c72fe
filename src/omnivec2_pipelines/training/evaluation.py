"""Held-out evaluation of every trained (modality, task) head, beside a classical baseline."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.models import OmniVec2
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


def task_metrics(spec: TaskSpec, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 for classification; MSE and MAE for regression.

    ``y_pred`` holds logits (classification) or raw outputs (regression).
    """
    if spec.kind == "classification":
        labels = y_pred.argmax(-1) if y_pred.ndim == 2 else y_pred
        return {"accuracy": float(accuracy_score(y_true, labels)),
                "macro_f1": float(f1_score(y_true, labels, average="macro",
                                           labels=list(range(spec.out_dim)), zero_division=0))}
    yt, yp = y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)
    return {"mse": float(mean_squared_error(yt, yp)), "mae": float(mean_absolute_error(yt, yp))}


def baseline_predictions(spec: TaskSpec, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                         seed: int = 0) -> np.ndarray:
    """Logistic regression (classification) or ridge (regression) on flattened, standardised inputs."""
    xtr, xte = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    if spec.kind == "classification":
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        return est.fit(xtr, y_train).predict(xte)
    est = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    return est.fit(xtr, y_train.reshape(len(y_train), -1)).predict(xte)


def evaluate(model: OmniVec2, bundles: Mapping[str, ArrayBundle], split: str = "test", batch_size: int = 256,
             device: str = "auto", baselines: bool = True, seed: int = 0) -> dict[str, float]:
    """Metrics of every head of ``model`` on ``split``, flat ``"<modality>.<task>.<metric>"`` keys.

    With ``baselines``, adds ``"<modality>.<task>.baseline.<metric>"`` from a classical model
    fitted on the train split of the same arrays.
    """
    out: dict[str, Any] = {}
    for hcfg in sorted(model.cfg.heads.values(), key=lambda h: (h.modality, h.task)):
        m, t = hcfg.modality, hcfg.task
        if m not in bundles:
            log.warning("evaluation: %s.%s has a head but modality %s is not enabled; skipped", m, t, m)
            continue
        spec = bundles[m].tasks[t]
        b = bundles[m]
        x, y = b.get(split, spec.input_key), b.get(split, spec.target_key)
        if len(x) == 0:
            raise ValueError(f"evaluation: {m} has no samples in split {split!r}")
        for k, v in task_metrics(spec, y, predict(model, m, t, x, batch_size, device)).items():
            out[f"{m}.{t}.{k}"] = v
        if baselines:
            pred = baseline_predictions(spec, b.get("train", spec.input_key), b.get("train", spec.target_key),
                                        x, seed)
            for k, v in task_metrics(spec, y, pred).items():
                out[f"{m}.{t}.baseline.{k}"] = v
    return out

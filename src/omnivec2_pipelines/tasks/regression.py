"""Regression: a vector of values per sample (e.g. a forecast horizon), mean squared error."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from omnivec2_pipelines.tasks.base import TaskKind, flat, register_task_kind, ridge_baseline, unscale


@register_task_kind("regression")
class Regression(TaskKind):
    """Pooled-MLP + flatten head trained with ℓ2; MSE and MAE in the target's units; ridge baseline."""

    metrics = ("mse", "mae")
    main_metric = "mse"
    direction = "min"
    augment_ops = ()  # the target depends on the input's values: no augmentation

    def head(self, dim: int, out_dim: int) -> Any:
        from omnivec2_pipelines.models.heads import RegressionHead

        return RegressionHead(dim, out_dim)

    def loss(self, out: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.mse_loss(out.float(), y.reshape(len(y), -1).float())

    def compute_metrics(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                        scale: Mapping[str, float] | None = None) -> dict[str, float]:
        from sklearn.metrics import mean_absolute_error, mean_squared_error

        yt, yp = unscale(flat(y_true), scale), unscale(flat(y_pred), scale)
        return {"mse": float(mean_squared_error(yt, yp)), "mae": float(mean_absolute_error(yt, yp))}

    def main_value(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                   scale: Mapping[str, float] | None = None) -> float:
        yt, yp = unscale(flat(y_true), scale), unscale(flat(y_pred), scale)
        return float(np.mean((yt - yp) ** 2))

    def baseline(self, spec: Any, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                 seed: int = 0) -> np.ndarray:
        return ridge_baseline(f_train, y_train, f_test)

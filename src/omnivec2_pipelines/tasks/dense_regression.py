"""Dense regression: a value per pixel (e.g. depth), mean squared error on the standardised map."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from omnivec2_pipelines.tasks.base import TaskKind, register_task_kind, ridge_baseline, unscale


@register_task_kind("dense_regression")
class DenseRegression(TaskKind):
    """Per-token patch head trained with ℓ2; RMSE and abs. rel. in the target's units; ridge baseline
    from flat pixels to flat pixels; linear probe: ridge from each g token to the target patch under it.

    ``mse_standardized`` is the error of the target as tokenized (standardised with the train
    mean/std, the training loss's scale; ``(rmse / std) ** 2`` when a scale is stored), named so that
    nobody reads it as ``rmse ** 2``; ``abs_rel`` averages over pixels with a positive target.
    """

    metrics = ("rmse", "abs_rel", "mse_standardized")
    main_metric = "rmse"
    direction = "min"
    augment_ops = ()  # a geometric op would have to move the target map too
    dense_output = True  # a map per sample: stored as an array beside the prediction table
    probe_on = "tokens"  # the dense head's own layout: one patch of the map per token

    def head(self, dim: int, out_dim: int) -> Any:
        from omnivec2_pipelines.models.heads import DenseHead

        return DenseHead(dim, out_dim)

    def loss(self, out: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.mse_loss(out.float(), y.float())

    def compute_metrics(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                        scale: Mapping[str, float] | None = None) -> dict[str, float]:
        yt, yp = unscale(y_true.astype(np.float64), scale), unscale(y_pred.astype(np.float64), scale)
        pos = yt > 1e-6
        return {"rmse": float(np.sqrt(np.mean((yt - yp) ** 2))),
                "abs_rel": float(np.mean(np.abs(yt[pos] - yp[pos]) / yt[pos])) if pos.any() else float("nan"),
                "mse_standardized": float(np.mean((y_true.astype(np.float64) - y_pred.astype(np.float64)) ** 2))}

    def baseline(self, spec: Any, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                 seed: int = 0) -> np.ndarray:
        return ridge_baseline(f_train, y_train, f_test)

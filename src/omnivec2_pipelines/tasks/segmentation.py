"""Segmentation: a label per point of a point cloud, cross-entropy, mean IoU."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from omnivec2_pipelines.tasks.base import TaskKind, logistic_baseline, register_task_kind, softmax
from omnivec2_pipelines.tasks.classification import labels_of


def mean_iou(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> float:
    """Mean intersection over union over the classes present in target or prediction."""
    ious = []
    for c in range(k):
        inter = np.sum((y_true == c) & (y_pred == c))
        union = np.sum((y_true == c) | (y_pred == c))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious)) if ious else 0.0


@register_task_kind("segmentation")
class Segmentation(TaskKind):
    """Per-point head on propagated group features, cross-entropy per point; mIoU and point accuracy;
    baseline: logistic regression of a point's label on its coordinates; linear probe: the same on
    the g tokens propagated to every point (both fitted on at most ``max_points`` training points)."""

    metrics = ("miou", "accuracy")
    main_metric = "miou"
    direction = "max"
    augment_ops = ("rotate_z", "scale", "jitter")  # geometric ops keep per-point labels aligned
    baseline_on_inputs = True
    probe_on = "points"
    unit_overrides = {"accuracy": "fraction of points (0-1)"}
    max_points = 20000
    dense_output = True

    def head(self, dim: int, out_dim: int) -> Any:
        from omnivec2_pipelines.models.heads import PointSegmentationHead

        return PointSegmentationHead(dim, out_dim)

    def loss(self, out: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(out.float().reshape(-1, out.shape[-1]), y.long().reshape(-1),  # (B*P, K)
                               label_smoothing=label_smoothing)

    def compute_metrics(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                        scale: Mapping[str, float] | None = None) -> dict[str, float]:
        labels = labels_of(y_pred, y_true.ndim)
        return {"miou": mean_iou(y_true, labels, spec.out_dim), "accuracy": float(np.mean(labels == y_true))}

    def decided(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        return labels_of(y_pred, y_true.ndim)

    def main_value(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                   scale: Mapping[str, float] | None = None) -> float:
        return mean_iou(y_true, labels_of(y_pred, y_true.ndim), spec.out_dim)

    def baseline(self, spec: Any, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                 seed: int = 0) -> np.ndarray:
        pts_tr, pts_te = f_train[..., :3].reshape(-1, 3), f_test[..., :3].reshape(-1, 3)  # (N*P, 3)
        return self.per_point(pts_tr, y_train.reshape(-1), pts_te, seed).reshape(f_test.shape[:2])

    def probe(self, spec: Any, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
              seed: int = 0) -> np.ndarray:
        return self.per_point(f_train, y_train, f_test, seed)

    def per_point(self, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, seed: int) -> np.ndarray:
        """Labels of the point rows ``f_test`` (M, F) from a logistic regression fitted on at most
        ``max_points`` random rows of ``(f_train, y_train)``."""
        if len(f_train) > self.max_points:
            keep = np.random.default_rng(seed).choice(len(f_train), self.max_points, replace=False)
            f_train, y_train = f_train[keep], y_train[keep]
        return logistic_baseline(f_train, y_train, f_test, seed, max_iter=1000)

    def format_predictions(self, spec: Any, out: np.ndarray,
                           scale: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """``{"prediction": class index per point (N, P) int64, "probabilities": (N, P, K)}`` (class names:
        ``spec.class_names``)."""
        probs = softmax(out)
        return {"prediction": probs.argmax(-1).astype(np.int64), "probabilities": probs}

"""Classification: one label per sample, cross-entropy, accuracy and macro-F1."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from omnivec2_pipelines.tasks.base import TaskKind, logistic_baseline, register_task_kind, softmax


def labels_of(y_pred: np.ndarray, label_ndim: int) -> np.ndarray:
    """Class ids from logits (one more axis than the labels) or from labels themselves."""
    return y_pred.argmax(-1) if y_pred.ndim == label_ndim + 1 else y_pred


@register_task_kind("classification")
class Classification(TaskKind):
    """A pooled (``model.pool``) linear head trained with (label-smoothed) cross-entropy; logistic-regression
    baseline."""

    metrics = ("accuracy", "macro_f1")
    main_metric = "accuracy"
    direction = "max"
    augment_ops = None  # any op: the label of a shifted / masked / rotated sample stays the same
    sample_labels = True

    def head(self, dim: int, out_dim: int) -> Any:
        from omnivec2_pipelines.models.heads import ClassificationHead

        return ClassificationHead(dim, out_dim)

    def loss(self, out: Any, y: Any, label_smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(out.float(), y.long(), label_smoothing=label_smoothing)

    def compute_metrics(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                        scale: Mapping[str, float] | None = None) -> dict[str, float]:
        from sklearn.metrics import accuracy_score, f1_score

        labels = labels_of(y_pred, 1)
        return {"accuracy": float(accuracy_score(y_true, labels)),
                "macro_f1": float(f1_score(y_true, labels, average="macro", labels=list(range(spec.out_dim)),
                                           zero_division=0))}

    def decided(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        return labels_of(y_pred, y_true.ndim)

    def main_value(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray,
                   scale: Mapping[str, float] | None = None) -> float:
        return float(np.mean(labels_of(y_pred, 1) == y_true))

    def baseline(self, spec: Any, f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                 seed: int = 0) -> np.ndarray:
        return logistic_baseline(f_train, y_train, f_test, seed, max_iter=2000)

    def details(self, spec: Any, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix

        return {"confusion": confusion_matrix(y_true, labels_of(y_pred, 1), labels=list(range(spec.out_dim))).tolist(),
                "class_names": list(spec.class_names)}

    def format_predictions(self, spec: Any, out: np.ndarray,
                           scale: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """``{"prediction": class names (N,), "probabilities": (N, K) softmax of the logits}``."""
        probs = softmax(out)
        return {"prediction": np.asarray(spec.class_names, dtype=object)[probs.argmax(-1)], "probabilities": probs}

    def prediction_columns(self, spec: Any, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """``prediction`` (class name), ``probability`` (its probability) and ``p_<class>`` per class."""
        probs = outputs["probabilities"]
        return {"prediction": outputs["prediction"], "probability": probs.max(-1),
                **{f"p_{name}": probs[:, i] for i, name in enumerate(spec.class_names)}}

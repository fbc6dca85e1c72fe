"""The task-kind interface and its registry (torch-free at import)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor, nn

    from omnivec2_pipelines.modalities.base import TaskSpec

#: The unit of each metric name (``"target"``: the task target's own unit, see :meth:`TaskKind.units`).
METRIC_UNITS = {"accuracy": "fraction (0-1)", "macro_f1": "0-1", "miou": "0-1", "mse": "target^2",
                "mae": "target", "rmse": "target", "abs_rel": "ratio (abs. error / target)",
                "mse_standardized": "z-score^2"}

#: Metric names where lower is better (the others: higher is better), whatever the kind.
LOWER_IS_BETTER = frozenset({"mse", "mae", "rmse", "abs_rel", "mse_standardized"})

#: What a kind's frozen-feature linear probe reads (:attr:`TaskKind.probe_on`, built by
#: :mod:`omnivec2_pipelines.training.probe`): one pooled g feature per sample, one row per g token
#: (the target cut into the patch each token covers), or one row per input point.
PROBE_FEATURES = ("pooled", "tokens", "points")

_KINDS: dict[str, "TaskKind"] = {}
K = TypeVar("K", bound=type)


class TaskKind:
    """One family of tasks. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: Registered name (``TaskSpec.kind``, ``HeadConfig.kind``).
        metrics: Metric names :meth:`compute_metrics` returns, in report order.
        main_metric: The metric that ranks models (validation, the study, the report's verdict).
        direction: ``"max"`` when higher is better, ``"min"`` when lower is.
        augment_ops: Batch augmentations (``multitask.augment`` op names) that keep its targets
            valid; ``None``: every op.
        baseline_on_inputs: The baseline reads the raw inputs (e.g. point coordinates), not the
            modality's ``baseline_features``.
        unit_overrides: Units that differ from :data:`METRIC_UNITS` for this kind.
        probe_on: The features of its linear probe, one of :data:`PROBE_FEATURES`: ``"pooled"``
            (the mean of the g tokens per sample), ``"tokens"`` (one row per g token, predicting
            the target's patch under it) or ``"points"`` (one row per input point, the g tokens
            propagated to points).
        sample_labels: Each sample's target is one class index named by ``TaskSpec.class_names``
            (label subsets are stratified by it; a head is reused only for the same class names).
        dense_output: One prediction holds a value per position (pixel, point): prediction tables
            keep it as an array beside them (:meth:`prediction_columns` gives no per-value columns).
    """

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()
    main_metric: ClassVar[str] = ""
    direction: ClassVar[str] = "max"
    augment_ops: ClassVar[tuple[str, ...] | None] = ()
    baseline_on_inputs: ClassVar[bool] = False
    unit_overrides: ClassVar[Mapping[str, str]] = {}
    probe_on: ClassVar[str] = "pooled"
    sample_labels: ClassVar[bool] = False
    dense_output: ClassVar[bool] = False

    def head(self, dim: int, out_dim: int) -> "nn.Module":
        """A fresh head of this kind on ``dim``-wide tokens with ``out_dim`` outputs."""
        raise NotImplementedError

    def loss(self, out: "Tensor", y: "Tensor", label_smoothing: float = 0.0) -> "Tensor":
        """Training loss of head outputs ``out`` against targets ``y`` (a scalar tensor)."""
        raise NotImplementedError

    def compute_metrics(self, spec: "TaskSpec", y_true: np.ndarray, y_pred: np.ndarray,
                        scale: Mapping[str, float] | None = None) -> dict[str, float]:
        """Every metric of :attr:`metrics` (``scale``: the target's train mean/std, to report errors in
        the target's own units)."""
        raise NotImplementedError

    def decided(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """The predictions as the metrics read them, decided once (class ids from logits); by default
        ``y_pred`` itself. :meth:`compute_metrics` and :meth:`main_value` give the same values on both."""
        return y_pred

    def main_value(self, spec: "TaskSpec", y_true: np.ndarray, y_pred: np.ndarray,
                   scale: Mapping[str, float] | None = None) -> float:
        """The :attr:`main_metric` alone (what the paired bootstrap recomputes on every resample); by default
        taken from :meth:`compute_metrics`, which kinds may shortcut."""
        return self.compute_metrics(spec, y_true, y_pred, scale)[self.main_metric]

    def baseline(self, spec: "TaskSpec", f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                 seed: int = 0) -> np.ndarray:
        """Predictions of a classical model fitted on ``(f_train, y_train)`` for ``f_test``."""
        raise NotImplementedError

    def probe(self, spec: "TaskSpec", f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
              seed: int = 0) -> np.ndarray:
        """The linear probe's fit: predictions for the rows ``f_test`` of a model fitted on the rows
        ``(f_train, y_train)`` of frozen network features (see :attr:`probe_on`); by default the
        kind's classical :meth:`baseline` model on those features."""
        return self.baseline(spec, f_train, y_train, f_test, seed)

    def details(self, spec: "TaskSpec", y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
        """Extras for the report (e.g. a confusion matrix); none by default."""
        return {}

    def format_predictions(self, spec: "TaskSpec", out: np.ndarray,
                           scale: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
        """Head outputs ``out`` (N, ...) as what a user reads, named arrays of N rows each.

        The default (regression kinds): ``{"values": ...}``, shaped ``(N, *spec.out_shape)`` when the sizes
        agree and de-standardised into the target's own units with ``scale`` (the train mean/std of the
        bundle's ``tasks_scale``). Classification kinds give ``"prediction"`` and ``"probabilities"``.
        """
        return {"values": unscale(shaped(out, spec.out_shape).astype(np.float64), scale).astype(np.float32)}

    def prediction_columns(self, spec: "TaskSpec", outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Table columns (one value per row) of :meth:`format_predictions`' ``outputs``.

        The default: ``value`` for one regressed value, else ``value_<i>`` per value (row-major order);
        none for a :attr:`dense_output` kind (its arrays are stored beside the table).
        """
        if self.dense_output:
            return {}
        values = flat(outputs["values"])
        if values.shape[1] == 1:
            return {"value": values[:, 0]}
        return {f"value_{i}": values[:, i] for i in range(values.shape[1])}

    def units(self, scaled: bool) -> dict[str, str]:
        """The unit of every metric; without a stored target scale, errors are in tokenized units."""
        out = {}
        for n in self.metrics:
            unit = self.unit_overrides.get(n, METRIC_UNITS[n])
            if not scaled and (unit.startswith("target") or unit == "z-score^2"):
                unit = "tokenized target^2" if unit == "z-score^2" else "tokenized " + unit
            out[n] = unit
        return out

    def augmentations(self, spec: Mapping[str, float]) -> dict[str, float]:
        """The ops of a modality's augmentation ``spec`` that apply to this kind's training batches."""
        if self.augment_ops is None:
            return dict(spec)
        return {op: s for op, s in spec.items() if op in self.augment_ops}


def register_task_kind(name: str) -> Callable[[K], K]:
    """Class decorator: register one instance of a :class:`TaskKind` subclass under ``name``."""

    def deco(cls: K) -> K:
        if name in _KINDS:
            raise ValueError(f"task kind {name!r} is already registered ({type(_KINDS[name]).__name__})")
        cls.name = name
        kind = cls()
        if kind.main_metric not in kind.metrics or kind.direction != (
                "min" if kind.main_metric in LOWER_IS_BETTER else "max"):
            raise ValueError(f"task kind {name!r}: main_metric must be one of {kind.metrics}, with direction "
                             f"'min' for {sorted(LOWER_IS_BETTER)} and 'max' otherwise")
        if kind.probe_on not in PROBE_FEATURES:
            raise ValueError(f"task kind {name!r}: probe_on must be one of {PROBE_FEATURES}, got {kind.probe_on!r}")
        unknown = [n for n in kind.metrics if n not in METRIC_UNITS and n not in kind.unit_overrides]
        if unknown:
            raise ValueError(f"task kind {name!r}: metrics {unknown} have no unit (METRIC_UNITS / unit_overrides)")
        _KINDS[name] = kind
        return cls

    return deco


def get_task_kind(name: str) -> TaskKind:
    """The registered kind ``name``; raises naming the known kinds."""
    if name not in _KINDS:
        raise ValueError(f"unknown task kind {name!r}; known: {sorted(_KINDS)}")
    return _KINDS[name]


def task_kinds() -> dict[str, TaskKind]:
    """Every registered kind by name."""
    return dict(_KINDS)


def flat(a: np.ndarray) -> np.ndarray:
    """Rows of ``a`` flattened: (N, ...) → (N, prod(...))."""
    return a.reshape(len(a), -1)


def shaped(out: np.ndarray, shape: tuple[int, ...] | list[int]) -> np.ndarray:
    """``out`` (N, ...) reshaped to ``(N, *shape)`` when it holds that many values per row, else unchanged."""
    shape = tuple(int(s) for s in shape)
    if shape and int(np.prod(shape)) == int(np.prod(out.shape[1:])) and out.shape[1:] != shape:
        return out.reshape(len(out), *shape)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (float32), computed stably in float64."""
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def unscale(a: np.ndarray, scale: Mapping[str, float] | None) -> np.ndarray:
    """Values in the target's own units when ``scale`` (train mean/std) is given."""
    return a * scale["std"] + scale["mean"] if scale else a


def ridge_baseline(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray) -> np.ndarray:
    """Standardised ridge regression from flat features to the flattened targets, reshaped back."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    return est.fit(flat(f_train), flat(y_train)).predict(flat(f_test)).reshape(len(f_test), *y_train.shape[1:])


def logistic_baseline(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, seed: int,
                      max_iter: int) -> np.ndarray:
    """Standardised logistic regression on flat features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    return est.fit(flat(f_train), y_train).predict(flat(f_test))

"""Metrics of every task kind, and the classical baselines."""

from __future__ import annotations

import numpy as np
import pytest

from omnivec2_pipelines.modalities.base import TaskSpec
from omnivec2_pipelines.training.evaluation import baseline_predictions, metric_units, task_metrics

SEG = TaskSpec("segmentation", "segmentation", "x", "y.segmentation", 3, (4,))
DENSE = TaskSpec("depth", "dense_regression", "x", "y.depth", 1, (1, 2, 2))
CLS = TaskSpec("classification", "classification", "x", "y.classification", 3, (3,))


def test_segmentation_miou_by_hand() -> None:
    y = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    m = task_metrics(SEG, y, pred)
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # class 2 absent from both: not counted
    assert m["accuracy"] == pytest.approx(0.75)
    logits = np.eye(3)[y]  # one-hot "logits" (1, 4, 3) → perfect
    assert task_metrics(SEG, y, logits)["miou"] == 1.0


def test_dense_rmse_and_abs_rel_on_original_scale() -> None:
    y = np.array([[[[1.0, 2.0], [0.0, 4.0]]]])  # standardised targets
    pred = y + 0.5
    m = task_metrics(DENSE, y, pred, {"mean": 3.0, "std": 2.0})
    # original scale: y' = 2y + 3, error = 1.0 everywhere
    assert m["rmse"] == pytest.approx(1.0)
    assert m["abs_rel"] == pytest.approx(np.mean(1.0 / np.array([5.0, 7.0, 3.0, 11.0])))
    # the standardised error has its unit in its name: never read as rmse ** 2 (which is 1.0 here)
    assert m["mse_standardized"] == pytest.approx(0.25) and "mse" not in m
    assert m["mse_standardized"] == pytest.approx((m["rmse"] / 2.0) ** 2)


def test_every_metric_has_a_unit() -> None:
    reg = TaskSpec("regression", "regression", "x", "y.regression", 1, (1,))
    y = np.array([[0.0], [1.0]])
    for spec, y_true, scale in ((SEG, np.array([[0, 1]]), None), (CLS, np.array([0, 1]), None),
                                (DENSE, np.zeros((1, 1, 2, 2)), {"mean": 0.0, "std": 1.0}),
                                (reg, y, {"mean": 0.0, "std": 1.0}), (reg, y, None)):
        pred = np.eye(3)[y_true] if spec.kind in ("classification", "segmentation") else y_true
        units = metric_units(spec, scaled=scale is not None)
        assert set(units) == set(task_metrics(spec, y_true, pred, scale)), spec.kind
    assert metric_units(DENSE, True) == {"rmse": "target", "abs_rel": "ratio (abs. error / target)",
                                         "mse_standardized": "z-score^2"}
    assert metric_units(reg, True) == {"mse": "target^2", "mae": "target"}
    # no stored scale (e.g. forecasting of per-series z-scores): the errors are in the tokenized units
    assert metric_units(reg, False) == {"mse": "tokenized target^2", "mae": "tokenized target"}
    assert metric_units(SEG, False)["accuracy"] == "fraction of points (0-1)"


def test_classification_metrics_and_baseline_learns() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 5)) + y[:, None] * 2.0
    pred = baseline_predictions(CLS, x[:200], y[:200], x[200:])
    m = task_metrics(CLS, y[200:], pred)
    assert m["accuracy"] > 0.9 and 0.0 <= m["macro_f1"] <= 1.0


def test_segmentation_and_dense_baselines_have_target_shape() -> None:
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(10, 4, 3)).astype(np.float32)
    labels = (pts[..., 0] > 0).astype(np.int64)
    pred = baseline_predictions(SEG, pts[:6], labels[:6], pts[6:])
    assert pred.shape == (4, 4) and task_metrics(SEG, labels[6:], pred)["accuracy"] > 0.8
    imgs = rng.normal(size=(80, 3, 2, 2)).astype(np.float32)
    depth = imgs[:, :1] * 2
    dense = baseline_predictions(DENSE, imgs[:60], depth[:60], imgs[60:])
    assert dense.shape == (20, 1, 2, 2) and task_metrics(DENSE, depth[60:], dense)["rmse"] < 0.5

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


REG = TaskSpec("regression", "regression", "x", "y.regression", 1, (1,))


@pytest.mark.parametrize("spec, y, pred", [
    (CLS, np.array([0, 1, 2, 2, 1]), np.random.default_rng(0).normal(size=(5, 3))),  # logits
    (CLS, np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 1, 1])),  # labels
    (SEG, np.array([[0, 0, 1, 1], [2, 2, 1, 0]]), np.random.default_rng(1).normal(size=(2, 4, 3))),
    (REG, np.array([[0.0], [1.0], [3.0]]), np.array([[0.5], [1.0], [2.0]])),
    (DENSE, np.ones((2, 1, 2, 2)), np.zeros((2, 1, 2, 2))),
])
def test_main_value_and_decided_agree_with_compute_metrics(spec, y, pred) -> None:
    from omnivec2_pipelines.tasks import get_task_kind

    kind = get_task_kind(spec.kind)
    scale = {"mean": 1.0, "std": 2.0}
    want = kind.compute_metrics(spec, y, pred, scale)[kind.main_metric]
    assert kind.main_value(spec, y, pred, scale) == pytest.approx(want)
    decided = kind.decided(y, pred)
    assert kind.main_value(spec, y, decided, scale) == pytest.approx(want)
    assert kind.compute_metrics(spec, y, decided, scale) == pytest.approx(kind.compute_metrics(spec, y, pred, scale))


def test_bootstrap_interval_brackets_the_difference_and_narrows_with_more_samples() -> None:
    from omnivec2_pipelines.training.evaluation import bootstrap_difference

    rng = np.random.default_rng(0)

    def case(n: int) -> dict[str, float]:
        y = rng.integers(0, 3, n)
        right_a, right_b = rng.random(n) < 0.9, rng.random(n) < 0.7  # model right 90 %, baseline 70 %
        a, b = np.where(right_a, y, (y + 1) % 3), np.where(right_b, y, (y + 1) % 3)
        out = bootstrap_difference(CLS, y, a, b, resamples=500, seed=1)
        assert out["diff"] == pytest.approx(np.mean(a == y) - np.mean(b == y))
        assert out["ci_low"] <= out["diff"] <= out["ci_high"]
        return out

    small, large = case(30), case(3000)
    assert large["ci_high"] - large["ci_low"] < 0.35 * (small["ci_high"] - small["ci_low"])  # ~ 1 / sqrt(n)
    assert large["ci_low"] > 0.1  # 20 points apart on 3000 samples: the interval excludes 0
    # the same seed gives the same interval; identical predictions give exactly zero
    y = rng.integers(0, 3, 50)
    p = np.eye(3)[rng.integers(0, 3, 50)]
    assert bootstrap_difference(CLS, y, p, p, resamples=100) == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_bootstrap_is_paired_and_in_the_targets_units() -> None:
    from omnivec2_pipelines.training.evaluation import bootstrap_difference

    y = np.linspace(-1, 1, 40).reshape(40, 1)
    noise = np.random.default_rng(0).normal(size=(40, 1))
    # b = a + a constant shift: paired resamples see the same rows, so the difference varies far less than
    # either MSE does on its own
    a, b = y + 0.1 * noise, y + 0.1 * noise + 0.5
    out = bootstrap_difference(REG, y, a, b, scale={"mean": 0.0, "std": 10.0}, resamples=300, seed=0)
    mse = lambda p: float(np.mean((10 * (p - y)) ** 2))  # noqa: E731 - errors in the target's units (std 10)
    assert out["diff"] == pytest.approx(mse(a) - mse(b))
    assert out["ci_high"] < 0  # a's errors are lower: a negative difference favours a
    assert out["ci_high"] - out["ci_low"] < 0.5 * abs(out["diff"])


@pytest.mark.parametrize("kwargs, message", [
    ({"resamples": 0}, "resamples >= 1"),
    ({"level": 1.0}, "0 < level < 1"),
])
def test_bootstrap_rejects_bad_settings(kwargs, message) -> None:
    from omnivec2_pipelines.training.evaluation import bootstrap_difference

    y = np.array([0, 1])
    with pytest.raises(ValueError, match=message):
        bootstrap_difference(CLS, y, y, y, **kwargs)
    with pytest.raises(ValueError, match="equally many"):
        bootstrap_difference(CLS, y, y[:1], y)

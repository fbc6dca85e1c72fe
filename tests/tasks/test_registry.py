"""Task kinds are objects in one registry; a new kind is one class, used by every consumer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.base import TaskSpec
from omnivec2_pipelines.tasks import TaskKind, get_task_kind, register_task_kind, task_kinds
from omnivec2_pipelines.tasks.base import LOWER_IS_BETTER, _KINDS

SRC = Path(__file__).resolve().parents[2] / "src" / "omnivec2_pipelines"


def test_the_four_kinds_are_registered_consistently() -> None:
    kinds = task_kinds()
    assert sorted(kinds) == ["classification", "dense_regression", "regression", "segmentation"]
    for name, k in kinds.items():
        assert k.name == name and k.main_metric in k.metrics
        assert (k.direction == "min") == (k.main_metric in LOWER_IS_BETTER)
        assert set(k.units(True)) == set(k.metrics) == set(k.units(False))
    with pytest.raises(ValueError, match=r"unknown task kind 'ranking'; known: \['classification'"):
        get_task_kind("ranking")


def test_no_task_kind_switch_outside_the_registry() -> None:
    """Consumers ask the kind object; only tasks/ names the kinds."""
    pattern = re.compile(r"""kind\s*(==|!=|in)\s*\(?["'](classification|regression|dense_regression|segmentation)""")
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if "tasks" not in p.parts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_importing_the_registry_loads_neither_torch_nor_sklearn() -> None:
    code = "import sys, omnivec2_pipelines.tasks; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.fixture
def ordinal():
    """A throw-away kind declared in one class: ordinal regression scored by exact-match accuracy."""

    @register_task_kind("ordinal_test")
    class Ordinal(TaskKind):
        metrics = ("accuracy", "mae")
        main_metric = "accuracy"
        direction = "max"

        def head(self, dim, out_dim):
            from omnivec2_pipelines.models.heads import RegressionHead

            return RegressionHead(dim, out_dim)

        def loss(self, out, y, label_smoothing=0.0):
            return torch.nn.functional.l1_loss(out.float().squeeze(-1), y.float())

        def compute_metrics(self, spec, y_true, y_pred, scale=None):
            labels = np.rint(y_pred.reshape(len(y_pred)))
            return {"accuracy": float(np.mean(labels == y_true)), "mae": float(np.mean(np.abs(labels - y_true)))}

        def baseline(self, spec, f_train, y_train, f_test, seed=0):
            return np.full(len(f_test), np.median(y_train))

    yield get_task_kind("ordinal_test")
    del _KINDS["ordinal_test"]


def test_a_new_kind_works_through_heads_losses_metrics_and_baselines(ordinal, bundles, tiny_model_params) -> None:
    from omnivec2_pipelines.models import HeadConfig
    from omnivec2_pipelines.training import stages
    from omnivec2_pipelines.training.evaluation import baseline_predictions, metric_units, task_metrics
    from omnivec2_pipelines.training.objectives import task_loss
    from omnivec2_pipelines.training.scores import MAIN_METRIC

    torch.manual_seed(0)
    model = stages.build_model(tiny_model_params, bundles)
    model.add_head(HeadConfig("series", "level", "ordinal_test", 1))
    x = torch.from_numpy(np.asarray(bundles["series"].get("train", "x_context")[:4]))
    out = model("series", x, "level")
    assert out.shape == (4, 1)
    y = torch.tensor([0.0, 1.0, 2.0, 1.0])
    assert float(task_loss("ordinal_test", out, y).detach()) == pytest.approx(float((out.squeeze(-1) - y).abs().mean().detach()))
    spec = TaskSpec(name="level", kind="ordinal_test", input_key="x_context", target_key="y.level", out_dim=1)
    assert task_metrics(spec, np.array([1, 2]), np.array([[1.2], [0.6]])) == {"accuracy": 0.5, "mae": 0.5}
    assert metric_units(spec, True) == {"accuracy": "fraction (0-1)", "mae": "target"}
    assert baseline_predictions(spec, np.zeros((3, 2)), np.array([1, 2, 9]), np.zeros((2, 2))).tolist() == [2, 2]
    assert MAIN_METRIC["classification"] == ("accuracy", "max")
    with pytest.raises(ValueError, match="already registered"):
        register_task_kind("ordinal_test")(type("Again", (TaskKind,), {}))


def test_a_kind_must_declare_a_consistent_main_metric() -> None:
    with pytest.raises(ValueError, match="main_metric must be one of"):
        register_task_kind("broken_test")(type("Broken", (TaskKind,), {"metrics": ("mse",), "main_metric": "mse",
                                                                         "direction": "max"}))
    assert "broken_test" not in task_kinds()

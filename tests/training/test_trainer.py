from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import MaskedUnimodal, Objective, StepOutput
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig, resolve_device


def test_config_validation_names_the_key() -> None:
    with pytest.raises(ValueError, match="trainer.lr"):
        TrainerConfig(lr=-1.0)
    with pytest.raises(TypeError, match="'steps' must be int"):
        TrainerConfig.from_params({"steps": "100"})
    cfg = TrainerConfig.from_params({"lr": 1, "steps": 3}, {"batch_size": 9, "steps": 5})
    assert cfg.lr == 1.0 and cfg.steps == 5


def test_device_auto_and_missing_cuda() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_history_and_determinism(bundles, tiny_model_params) -> None:
    def run():
        torch.manual_seed(0)
        model = stages.build_model(tiny_model_params, bundles)
        obj = MaskedUnimodal({"grid": BatchSource(bundles["grid"].get("train", "x"), seed=0)}, {"grid": 0.5}, 8)
        hist = Trainer(TrainerConfig(steps=6, progress=False)).fit(model, obj, "s")
        return model, hist

    m1, h1 = run()
    m2, h2 = run()
    assert list(h1.columns[:5]) == ["step", "loss", "lr", "what", "elapsed_s"] and len(h1) == 6
    assert h1["loss"].tolist() == h2["loss"].tolist()
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), n


class NaNObjective(Objective):
    name = "nan"

    def batch_sources(self):
        return {}

    def step(self, model, ctx):
        p = next(model.parameters())
        return StepOutput(p.sum() * float("nan"), {}, "grid.classification", 1)


def test_non_finite_loss_names_stage_step_and_task(bundles, tiny_model_params) -> None:
    model = stages.build_model(tiny_model_params, bundles)
    with pytest.raises(FloatingPointError, match=r"multitask: non-finite loss .* step 0 \(grid.classification\)"):
        Trainer(TrainerConfig(steps=2, progress=False)).fit(model, NaNObjective(), "multitask")


class NaNGradObjective(NaNObjective):
    """Finite loss, non-finite gradient (sqrt at 0)."""

    def step(self, model, ctx):
        p = next(model.parameters())
        return StepOutput((p.sum() * 0.0).abs().sqrt(), {}, "series.forecasting", 1)


def test_non_finite_gradient_raises_or_is_skipped_and_counted(bundles, tiny_model_params, caplog) -> None:
    model = stages.build_model(tiny_model_params, bundles)
    with pytest.raises(FloatingPointError, match=r"s3: non-finite gradient .* step 0 \(series.forecasting\)"):
        Trainer(TrainerConfig(steps=2, progress=False)).fit(model, NaNGradObjective(), "s3")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level("WARNING"):
        hist = Trainer(TrainerConfig(steps=3, progress=False, nonfinite="skip")).fit(model, NaNObjective(), "s3")
    assert hist["skipped"].tolist() == [True, True, True] and "update skipped (3 so far)" in caplog.text
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no update applied
    with pytest.raises(ValueError, match="trainer.nonfinite"):
        TrainerConfig(nonfinite="ignore")

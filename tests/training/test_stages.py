"""The three stages chained on synthetic bundles, evaluation, and parameter validation."""

from __future__ import annotations

import pytest

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.evaluation import evaluate

TRAINER = {"device": "cpu", "seed": 0, "progress": False, "warmup_steps": 2}


def test_three_stages_chain_and_evaluate(bundles, tiny_model_params) -> None:
    ck1, h1 = stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 4, "batch_size": 8,
                                                                    "mask_ratio": {"default": 0.5}}, TRAINER)
    assert set(h1["what"]) == {"grid", "series"} and ck1.meta["stage"] == "pretrain_unimodal"
    ck2, h2 = stages.pretrain_paired(ck1, bundles, {"steps": 3, "batch_size": 8, "mask_ratio": 0.5}, TRAINER)
    assert set(h2["what"]) <= {"grid+series", "series+grid"} and len(h2) == 3
    ck3, h3 = stages.multitask(ck2, bundles, {"steps": 60, "batch_size": 16, "lr": 3e-3}, TRAINER)
    assert set(ck3.model.heads) == {"grid__classification", "series__classification", "series__forecasting"}
    metrics = evaluate(ck3.model, bundles, "test", device="cpu")
    assert set(metrics) == {
        "grid.classification.accuracy", "grid.classification.macro_f1",
        "grid.classification.baseline.accuracy", "grid.classification.baseline.macro_f1",
        "series.classification.accuracy", "series.classification.macro_f1",
        "series.classification.baseline.accuracy", "series.classification.baseline.macro_f1",
        "series.forecasting.mse", "series.forecasting.mae",
        "series.forecasting.baseline.mse", "series.forecasting.baseline.mae"}
    assert metrics["grid.classification.accuracy"] > 0.6  # 3 classes: chance is about 0.33


@pytest.mark.parametrize("stage_params, message", [
    ({"stepz": 3}, r"unknown parameter 'pretrain_unimodal.stepz'; did you mean 'pretrain_unimodal.steps'\?"),
    ({"mask_ratio": {"grid": 0.5}}, r"pretrain_unimodal.mask_ratio.series must be a number in \(0, 1\)"),
    ({"mask_ratio": 1.2}, r"mask_ratio.grid must be a number in \(0, 1\)"),
    ({"batch_size": "big"}, "batch_size must be a positive integer"),
    ({"lr": -1.0, "mask_ratio": 0.5}, "trainer.lr"),
])
def test_bad_stage_params(bundles, tiny_model_params, stage_params, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        stages.pretrain_unimodal(bundles, tiny_model_params, stage_params, TRAINER)


def test_bad_model_and_task_params(bundles, tiny_model_params) -> None:
    with pytest.raises(ValueError, match="unknown model parameter"):
        stages.build_model({**tiny_model_params, "depth": 3}, bundles)
    with pytest.raises(ValueError, match="multitask.tasks.grid: unknown task 'segmentation'"):
        stages.select_tasks(bundles, {"grid": ["segmentation"]})
    with pytest.raises(ValueError, match="modality 'video', which is not enabled"):
        stages.select_tasks(bundles, {"video": ["classification"]})


def test_changed_tokenizer_is_refused(bundles, tiny_model_params) -> None:
    model = stages.build_model(tiny_model_params, bundles)
    from tests.conftest import grid_bundle

    with pytest.raises(ValueError, match="re-run pretrain_unimodal"):
        stages.attach_modalities(model, {"grid": grid_bundle("grid", hw=(12, 12))})


def test_stage_one_is_reproducible_from_its_seed(bundles, tiny_model_params) -> None:
    import torch

    params = {"steps": 2, "batch_size": 8, "mask_ratio": 0.5}
    ck_a, _ = stages.pretrain_unimodal(bundles, tiny_model_params, params, TRAINER)
    torch.rand(100)  # unrelated use of the global RNG must not change the result
    ck_b, _ = stages.pretrain_unimodal(bundles, tiny_model_params, params, TRAINER)
    for (name, a), (_, b) in zip(ck_a.model.state_dict().items(), ck_b.model.state_dict().items()):
        assert torch.equal(a, b), name

"""Overfit one batch per objective: every stage's loss must fall far below its start."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnivec2_pipelines.models import HeadConfig
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import MaskedPaired, MaskedUnimodal, Multitask, TaskData
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig

B = 8


def _one_batch(bundles, key="x", target=None, name="grid"):
    b = bundles[name]
    y = None if target is None else b.get("train", target)[:B]
    return BatchSource(b.get("train", key)[:B], y, 0, name)


def _fit(model, objective, steps=80, lr=3e-3):
    cfg = TrainerConfig(steps=steps, lr=lr, warmup_steps=5, weight_decay=0.0, progress=False, log_every=1000)
    hist = Trainer(cfg).fit(model, objective, objective.name)
    return hist["loss"].head(5).mean(), hist["loss"].tail(5).mean()


@pytest.fixture
def model(bundles, tiny_model_params):
    torch.manual_seed(0)
    return stages.build_model(tiny_model_params, bundles)


def test_overfit_unimodal(model, bundles) -> None:
    obj = MaskedUnimodal({"grid": _one_batch(bundles)}, {"grid": 0.5}, B, norm_target=False)
    start, end = _fit(model, obj)
    assert end < 0.5 * start


def test_overfit_paired(model, bundles) -> None:
    obj = MaskedPaired({"grid": _one_batch(bundles), "series": _one_batch(bundles, name="series")},
                       {"grid": 0.5, "series": 0.5}, 2 * B, norm_target=False)
    start, end = _fit(model, obj)
    assert end < 0.5 * start


def test_overfit_multitask_classification_and_regression(model, bundles) -> None:
    model.add_head(HeadConfig("grid", "classification", "classification", 3))
    model.add_head(HeadConfig("series", "forecasting", "regression", 16))
    tasks = [TaskData("grid", "classification", "classification",
                      _one_batch(bundles, target="y.classification")),
             TaskData("series", "forecasting", "regression",
                      _one_batch(bundles, "x_context", "y.forecasting", "series"))]
    start, end = _fit(model, Multitask(tasks, 2 * B))
    assert end < 0.2 * start


def test_objectives_validate_inputs(bundles) -> None:
    src = {"grid": _one_batch(bundles)}
    with pytest.raises(ValueError, match="at least two modalities"):
        MaskedPaired(src, {"grid": 0.5}, 8)
    with pytest.raises(ValueError, match=r"mask_ratio.grid must be in \(0, 1\)"):
        MaskedUnimodal(src, {"grid": 1.0}, 8)
    with pytest.raises(ValueError, match="at least one"):
        Multitask([], 8)
    with pytest.raises(ValueError, match=r"multitask.batch_size \(1\) must be at least 2 x multitask.pairs_per_step"):
        Multitask([TaskData("grid", "c", "classification", src["grid"]),
                   TaskData("series", "f", "regression", src["grid"])], 1)


def test_single_modality_multitask_is_one_stream(model, bundles) -> None:
    """Tasks of one modality: the whole batch comes from one task and fusion is never called."""
    model.add_head(HeadConfig("grid", "classification", "classification", 3))
    obj = Multitask([TaskData("grid", "classification", "classification",
                              _one_batch(bundles, target="y.classification"))], B)
    calls = []
    model.fusion.register_forward_hook(lambda *a: calls.append(1))
    start, end = _fit(model, obj)
    assert end < 0.2 * start and not calls
    assert obj.half == B


@pytest.mark.parametrize("share, expected", [(0.0, 20), (1.0, 0), (0.5, None)])
def test_single_stream_share_of_multitask_steps(model, bundles, share, expected) -> None:
    """A share of the steps runs both halves as single streams (the inference path), the rest fused."""
    model.add_head(HeadConfig("grid", "classification", "classification", 3))
    model.add_head(HeadConfig("series", "forecasting", "regression", 16))
    tasks = [TaskData("grid", "classification", "classification", _one_batch(bundles, target="y.classification")),
             TaskData("series", "forecasting", "regression",
                      _one_batch(bundles, "x_context", "y.forecasting", "series"))]
    calls = []
    model.fusion.register_forward_hook(lambda *a: calls.append(1))
    cfg = TrainerConfig(steps=20, progress=False, log_every=1000)
    Trainer(cfg).fit(model, Multitask(tasks, 2 * B, single_stream=share), "multitask")
    if expected is None:
        assert 3 <= len(calls) <= 17
    else:
        assert len(calls) == expected


def test_label_smoothing_raises_the_loss_of_a_confident_prediction() -> None:
    from omnivec2_pipelines.training.objectives import task_loss

    logits, y = torch.tensor([[10.0, -10.0, -10.0]]), torch.tensor([0])
    assert task_loss("classification", logits, y, 0.1) > task_loss("classification", logits, y) + 0.5
    with pytest.raises(ValueError, match="single_stream"):
        Multitask([], 8, single_stream=1.5)


def _points_model_and_sources():
    import numpy as np

    from omnivec2_pipelines.models import ModelConfig, OmniVec2

    tok = {"kind": "point_groups", "n_points": 32, "n_groups": 8, "group_size": 8}
    torch.manual_seed(0)
    model = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                                 tokenizers={"pts": dict(tok), "pts2": dict(tok)}))
    model.add_head(HeadConfig("pts", "parts", "segmentation", 4))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, 32, 3)).astype(np.float32)
    y = rng.integers(0, 4, (B, 32)).astype(np.int64)
    return model, BatchSource(x, y, 0, "pts"), BatchSource(x[::-1].copy(), None, 0, "pts2")


@pytest.mark.parametrize("stage", ["unimodal", "paired", "multitask"])
def test_point_grouping_runs_once_per_stream_and_step(stage) -> None:
    """FPS runs once per point-cloud stream per step: patchify and the segmentation head reuse the
    tokenizer's grouping from the stream instead of recomputing it."""
    from unittest import mock

    from omnivec2_pipelines.models.tokenizers import point_groups

    model, src, src2 = _points_model_and_sources()
    obj = {"unimodal": lambda: MaskedUnimodal({"pts": src}, {"pts": 0.5}, B),
           "paired": lambda: MaskedPaired({"pts": src, "pts2": src2}, {"pts": 0.5, "pts2": 0.5}, 2 * B),
           "multitask": lambda: Multitask([TaskData("pts", "parts", "segmentation", src)], B)}[stage]()
    with mock.patch.object(point_groups, "farthest_point_sample", wraps=point_groups.farthest_point_sample) as fps:
        hist = Trainer(TrainerConfig(steps=1, progress=False, log_every=1000)).fit(model, obj, obj.name)
    assert len(hist) == 1 and torch.isfinite(torch.tensor(hist["loss"].to_numpy())).all()
    assert fps.call_count == (2 if stage == "paired" else 1)


def test_info_nce_prefers_matching_views() -> None:
    from omnivec2_pipelines.training.objectives import info_nce

    torch.manual_seed(0)
    a = torch.randn(16, 8)
    matched = info_nce(a, a + 0.01 * torch.randn(16, 8), 0.2)
    shuffled = info_nce(a, a[torch.randperm(16)], 0.2)
    assert matched < 1.0 and shuffled > 3.0
    # two identical samples: their three other rows are equally similar, so the loss is log(3)
    dup = torch.cat([a[:1], a[:1]])
    assert abs(info_nce(dup, dup, 0.01).item() - math.log(3)) < 1e-4


def test_unimodal_contrastive_trains_both_terms(model, bundles) -> None:
    obj = MaskedUnimodal({"grid": _one_batch(bundles)}, {"grid": 0.5}, B, norm_target=False,
                         contrastive_weight=1.0, contrastive_temperature=0.2)
    cfg = TrainerConfig(steps=60, lr=3e-3, warmup_steps=5, weight_decay=0.0, progress=False, log_every=1)
    hist = Trainer(cfg).fit(model, obj, obj.name)
    for col in ("loss.grid", "loss.grid.contrastive"):
        assert hist[col].tail(5).mean() < 0.5 * hist[col].head(5).mean(), col


def test_unimodal_contrastive_checks_its_parameters(bundles) -> None:
    src = {"grid": _one_batch(bundles)}
    with pytest.raises(ValueError, match="pretrain_unimodal.contrastive_weight must be a number >= 0"):
        MaskedUnimodal(src, {"grid": 0.5}, 8, contrastive_weight=-1.0)
    with pytest.raises(ValueError, match=r"pretrain_unimodal.contrastive_temperature must be a number in \(0, 10\]"):
        MaskedUnimodal(src, {"grid": 0.5}, 8, contrastive_weight=1.0, contrastive_temperature=0.0)
    with pytest.raises(ValueError, match="contrastive_weight"):
        stages._check_stage_params("pretrain_unimodal", {"contrastive_weight": "high"})


def _four_modality_tasks():
    from omnivec2_pipelines.training import stages
    from tests.conftest import TINY_MODEL, classification_tasks, grid_bundle, series_bundle

    four = {"g1": grid_bundle("g1"), "g2": grid_bundle("g2", seed=2), "s1": series_bundle("s1"),
            "s2": series_bundle("s2", seed=3)}
    torch.manual_seed(0)
    model = stages.build_model(dict(TINY_MODEL), four).eval()
    return model, classification_tasks(four, model)


@pytest.mark.parametrize("fused", [True, False])
def test_pairs_per_step_draws_2p_modalities_fuses_them_in_pairs_and_averages_the_pairs(fused) -> None:
    from omnivec2_pipelines.training.objectives import Multitask, StepContext

    model, tasks = _four_modality_tasks()
    calls = []
    model.fusion.register_forward_hook(lambda _m, args, _out: calls.append([a.tokens.shape[0] for a in args]))
    obj = Multitask(tasks, 16, single_stream=0.0 if fused else 1.0, pairs_per_step=2)
    ctx = StepContext(0, np.random.default_rng(0), torch.Generator().manual_seed(0), torch.device("cpu"))
    out = obj.step(model, ctx)
    assert sorted(out.parts) == sorted(f"{t.modality}.classification" for t in tasks)  # all four, once each
    assert out.samples == 16
    assert calls == ([[4, 4], [4, 4]] if fused else [])  # two pairs of 16 / 4 samples, or no fusion at all
    assert float(out.loss.detach()) == pytest.approx(sum(float(v) for v in out.parts.values()) / 2, rel=1e-5)


def test_forward_features_fuses_each_pair_as_if_alone() -> None:
    model, tasks = _four_modality_tasks()
    xs = {t.modality: torch.as_tensor(t.source.x[:3]) for t in tasks}
    order = ["g1", "s1", "g2", "s2"]
    together = model.forward_features(model.encode_streams([(m, xs[m], 0.0) for m in order]))
    alone = [s for a, b in (order[:2], order[2:])
             for s in model.forward_features(model.encode_streams([(a, xs[a], 0.0), (b, xs[b], 0.0)]))]
    for got, want in zip(together, alone):
        assert got.modality == want.modality and torch.allclose(got.tokens, want.tokens, atol=1e-5)
    with pytest.raises(ValueError, match="fuses streams in pairs, got 3"):
        model.forward_features(model.encode_streams([(m, xs[m], 0.0) for m in order[:3]]))


def test_bad_pairs_per_step_names_the_key() -> None:
    from omnivec2_pipelines.training.objectives import Multitask
    from omnivec2_pipelines.training.params import validate_stage_params

    _, tasks = _four_modality_tasks()
    with pytest.raises(ValueError, match="multitask.pairs_per_step must be a positive integer"):
        validate_stage_params("multitask", {"pairs_per_step": 0}, {}, ["a", "b"])
    with pytest.raises(ValueError, match="multitask.pairs_per_step must be a positive integer"):
        validate_stage_params("multitask", {"pairs_per_step": "2"}, {}, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"multitask.batch_size \(3\) must be at least 2 x multitask.pairs_per_step"):
        validate_stage_params("multitask", {"pairs_per_step": 2, "batch_size": 3}, {}, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"multitask.pairs_per_step \(2\) needs 4 different modalities"):
        validate_stage_params("multitask", {"pairs_per_step": 2}, {}, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"multitask.pairs_per_step \(3\) needs 6 different modalities with tasks, got 4"):
        Multitask(tasks, 64, pairs_per_step=3)
    with pytest.raises(ValueError, match=r"multitask.pairs_per_step \(2\) needs tasks of at least two modalities"):
        Multitask(tasks[:1], 64, pairs_per_step=2)

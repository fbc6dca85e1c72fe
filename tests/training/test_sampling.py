"""The task sampler: declared probabilities, observed frequencies, and its use by the stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnivec2_pipelines.training.params import check_loss_weights, stage_sampling
from omnivec2_pipelines.training.sampling import SamplerItem, TaskSampler

ITEMS = [SamplerItem("a", "a.x", 1000), SamplerItem("a", "a.y", 10), SamplerItem("b", "b.x", 100),
         SamplerItem("c", "c.x", 50), SamplerItem("d", "d.x", 5)]


def _frequencies(sampler: TaskSampler, n: int = 40_000) -> dict[str, float]:
    rng = np.random.default_rng(0)
    counts = {it.name: 0 for it in sampler.items}
    for _ in range(n):
        picked = sampler.draw(rng)
        mods = [sampler.items[i].modality for i in picked]
        assert len(set(mods)) == len(mods) == sampler.per_step  # different modalities every step
        for i in picked:
            counts[sampler.items[i].name] += 1
    return {k: v / n for k, v in counts.items()}


@pytest.mark.parametrize("per_step", [1, 2, 3])
@pytest.mark.parametrize("sampling, temperature", [("uniform", 1.0), ("size", 1.0), ("size", 3.0)])
def test_observed_frequencies_match_declared_probabilities(per_step, sampling, temperature) -> None:
    sampler = TaskSampler(ITEMS, per_step, sampling, temperature)
    declared = sampler.inclusion()
    assert sum(declared.values()) == pytest.approx(per_step)
    observed = _frequencies(sampler)
    for name, p in declared.items():
        assert observed[name] == pytest.approx(p, abs=0.01), name


def _enumerated_inclusion(mass: list[float], draws: int) -> list[float]:
    """Inclusion by summing the probability of every ordered sequence of draws (brute force)."""
    from itertools import permutations

    out = [0.0] * len(mass)
    for seq in permutations(range(len(mass)), draws):
        p, left = 1.0, sum(mass)
        for i in seq:
            p *= mass[i] / left
            left -= mass[i]
        for i in seq:
            out[i] += p
    return out


@pytest.mark.parametrize("draws", [1, 2, 3, 4, 5])
def test_inclusion_of_successive_draws_equals_the_enumeration(draws) -> None:
    items = [SamplerItem(m, m, n) for m, n in zip("abcde", (1000, 300, 40, 7, 1))]
    sampler = TaskSampler(items, draws, "size", 1.5)
    want = _enumerated_inclusion(list(sampler.modality_mass), draws)
    assert [sampler.inclusion()[m] for m in "abcde"] == pytest.approx(want, abs=1e-12)
    if draws == 5:
        assert want == pytest.approx([1.0] * 5)  # every modality, every step


def test_uniform_gives_every_modality_the_same_share_and_size_follows_size() -> None:
    uni = TaskSampler(ITEMS, 2, "uniform").inclusion()
    # two of four modalities per step: each modality takes part in half the steps, split over its tasks
    assert uni == pytest.approx({"a.x": 0.25, "a.y": 0.25, "b.x": 0.5, "c.x": 0.5, "d.x": 0.5})
    one = TaskSampler(ITEMS, 1, "size", 1.0).inclusion()
    total = sum(it.size for it in ITEMS)
    assert one == pytest.approx({it.name: it.size / total for it in ITEMS})
    hot = TaskSampler(ITEMS, 1, "size", 4.0).inclusion()
    # a higher temperature flattens the weights towards uniform over items
    assert hot["d.x"] > one["d.x"] and hot["a.x"] < one["a.x"]


def test_bad_sampling_parameters_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"multitask.sampling must be one of \['uniform', 'size'\]"):
        stage_sampling("multitask", {"sampling": "loss"})
    with pytest.raises(ValueError, match="pretrain_paired.sampling_temperature must be a number > 0"):
        stage_sampling("pretrain_paired", {"sampling": "size", "sampling_temperature": 0})
    with pytest.raises(ValueError, match="cannot draw 2 different modalities"):
        TaskSampler([SamplerItem("a", "a.x", 3)], 2)
    with pytest.raises(ValueError, match="cannot draw 5 different modalities"):
        TaskSampler(ITEMS, 5)
    with pytest.raises(ValueError, match=r"multitask.loss_weights.a: unknown task .z.; a has \[.x.\]"):
        check_loss_weights({"a": {"z": 1.0}}, {"a": ["x"]})
    with pytest.raises(ValueError, match=r"multitask.loss_weights.a.x must be a number >= 0"):
        check_loss_weights({"a": {"x": -1}})
    assert check_loss_weights({"a": {"x": 2}}) == {"a.x": 2.0} and check_loss_weights(None) == {}


def _tasks(bundles, weights=(1.0, 1.0)):
    from omnivec2_pipelines.training.data import BatchSource
    from omnivec2_pipelines.training.objectives import TaskData

    g, s = bundles["grid"], bundles["series"]
    return [TaskData("grid", "classification", "classification",
                     BatchSource(g.get("train", "x"), g.get("train", "y.classification"), 0, "g"), weight=weights[0]),
            TaskData("series", "forecasting", "regression",
                     BatchSource(s.get("train", "x_context"), s.get("train", "y.forecasting"), 0, "s"),
                     weight=weights[1])]


def test_loss_weights_scale_each_task_in_the_step_sum(bundles, tiny_model_params) -> None:
    from omnivec2_pipelines.models import HeadConfig
    from omnivec2_pipelines.training import stages
    from omnivec2_pipelines.training.objectives import Multitask, StepContext

    torch.manual_seed(0)
    model = stages.build_model(tiny_model_params, bundles)
    model.add_head(HeadConfig("grid", "classification", "classification", 3))
    model.add_head(HeadConfig("series", "forecasting", "regression", 16))
    model.eval()
    outs = []
    for w in [(1.0, 1.0), (3.0, 0.0)]:
        ctx = StepContext(0, np.random.default_rng(0), torch.Generator().manual_seed(0), torch.device("cpu"))
        outs.append(Multitask(_tasks(bundles, w), 8).step(model, ctx))
    parts = {k: float(v) for k, v in outs[0].parts.items()}
    assert {k: float(v) for k, v in outs[1].parts.items()} == pytest.approx(parts)  # same batches, same per-task losses
    assert float(outs[0].loss.detach()) == pytest.approx(sum(parts.values()), rel=1e-5)
    assert float(outs[1].loss.detach()) == pytest.approx(3.0 * parts["grid.classification"], rel=1e-5)


def test_size_sampling_in_the_multitask_stage(bundles, tiny_model_params, caplog) -> None:
    """The stage passes the sampling keys to its objective and logs the declared probabilities."""
    import logging

    from omnivec2_pipelines.training import stages

    torch.manual_seed(0)
    init = stages.fresh_checkpoint(bundles, tiny_model_params, 0)
    params = {"steps": 2, "batch_size": 4, "sampling": "size", "sampling_temperature": 2.0,
              "loss_weights": {"grid": {"classification": 0.5}}}
    trainer = {"progress": False, "eval_every": 0, "checkpoint_every": 0, "warmup_steps": 1}
    with caplog.at_level(logging.INFO, logger="omnivec2_pipelines.training.stages"):
        stages.multitask(init, bundles, params, trainer)
    assert "probability that each task takes part in a step" in caplog.text
    with pytest.raises(ValueError, match="multitask.sampling must be one of"):
        stages.multitask(init, bundles, {**params, "sampling": "bogus"}, trainer)


def test_reweight_multiplies_the_weights_and_the_draws_follow() -> None:
    sampler = TaskSampler(ITEMS, 2, "size", 2.0)
    before = sampler.inclusion()
    sampler.reweight({"d.x": 8.0, "a.x": 0.5})
    after = sampler.inclusion()
    assert after["d.x"] > 2 * before["d.x"] and after["a.x"] < before["a.x"]
    base = np.array([float(it.size) ** 0.5 for it in ITEMS]) * np.array([0.5, 1, 1, 1, 8.0])
    assert sampler.weights == pytest.approx(base / base.sum())
    observed = _frequencies(sampler)
    for name, p in after.items():
        assert observed[name] == pytest.approx(p, abs=0.01), name
    sampler.reweight({})  # back to the sampling's own weights
    assert sampler.inclusion() == pytest.approx(before)
    with pytest.raises(ValueError, match="factors must be finite numbers > 0"):
        sampler.reweight({"nope": 1.0})
    with pytest.raises(ValueError, match="factors must be finite numbers > 0"):
        sampler.reweight({"a.x": 0.0})


def test_focus_factors_favour_the_tasks_behind() -> None:
    from omnivec2_pipelines.training.sampling import check_focus, focus_factors

    f = focus_factors({"behind": -0.5, "level": 0.0, "ahead": 3.0, "broken": float("nan")}, 2.0)
    assert f == pytest.approx({"behind": np.e, "level": 1.0, "ahead": np.exp(-2.0), "broken": np.exp(2.0)})
    assert focus_factors({"x": -0.3}, 0.0) == {"x": 1.0}
    for bad in (-1, True, "1", 11):
        with pytest.raises(ValueError, match="multitask.sampling_focus must be a number in"):
            check_focus("multitask", bad)
    from omnivec2_pipelines.training.params import _check_stage_params

    with pytest.raises(ValueError, match="multitask.sampling_focus"):
        _check_stage_params("multitask", {"sampling_focus": -0.5})


def test_plateau_factors_mark_the_tasks_that_stopped_improving() -> None:
    from omnivec2_pipelines.training.sampling import PlateauFactors

    plateau = PlateauFactors({"acc": "max", "mse": "min"}, patience=2, factor=0.25)
    assert plateau.update({"acc": 0.5, "mse": 1.0}) == {"acc": 1.0, "mse": 1.0}  # first values: best so far
    assert plateau.update({"acc": 0.5, "mse": 0.8}) == {"acc": 1.0, "mse": 1.0}  # a tie is no improvement
    assert plateau.update({"acc": 0.4, "mse": 0.7}) == {"acc": 0.25, "mse": 1.0}  # acc: 2 without improving
    assert plateau.update({"acc": float("nan"), "mse": 0.9}) == {"acc": 0.25, "mse": 1.0}  # nan never improves
    assert plateau.update({"acc": 0.6, "mse": 0.95}) == {"acc": 1.0, "mse": 0.25}  # acc improved: back to 1
    assert plateau.best == {"acc": 0.6, "mse": 0.7} and plateau.stale == {"acc": 0, "mse": 2}
    # a task without a value this time keeps its count
    assert plateau.update({"mse": 0.5}) == {"acc": 1.0, "mse": 1.0}
    again = PlateauFactors({"acc": "max", "mse": "min"}, patience=2, factor=0.25)
    again.load_state_dict(plateau.state_dict())
    assert again.update({"acc": 0.1, "mse": 0.6}) == plateau.update({"acc": 0.1, "mse": 0.6})


def test_check_patience_names_the_key() -> None:
    from omnivec2_pipelines.training.params import _check_stage_params
    from omnivec2_pipelines.training.sampling import check_patience

    assert check_patience("multitask", 3, 0.5) == (3, 0.5)
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="multitask.sampling_patience must be an integer >= 0"):
            check_patience("multitask", bad, 0.25)
    for bad in (0, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match="multitask.sampling_patience_factor must be a number in"):
            check_patience("multitask", 2, bad)
    with pytest.raises(ValueError, match="multitask.sampling_patience_factor"):
        _check_stage_params("multitask", {"sampling_patience": 2, "sampling_patience_factor": 2})

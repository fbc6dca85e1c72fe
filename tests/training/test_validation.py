"""Validation during training: best-step selection, early stopping, val-only scoring, resume."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.models import HeadConfig
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import Multitask, TaskData
from omnivec2_pipelines.training.resume import ResumeConfig, read_state
from omnivec2_pipelines.training.trainer import STEP_CALLBACKS, Trainer, TrainerConfig
from omnivec2_pipelines.training.validation import ReconstructionValidator, Selection, TaskValidator

TRAINER = {"device": "cpu", "seed": 0, "progress": False, "warmup_steps": 2}


class _Curve:
    """A validator whose scores follow a fixed curve (one value per evaluation)."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.calls = list(scores), 0

    def __call__(self, model, device):
        self.calls += 1
        return self.scores[self.calls - 1], {"val.fake": float(self.calls)}


def _multitask(bundles, model):
    model.add_head(HeadConfig("grid", "classification", "classification", 3))
    b = bundles["grid"]
    return Multitask([TaskData("grid", "classification", "classification",
                               BatchSource(b.get("train", "x"), b.get("train", "y.classification"), 0, "grid"))], 8)


@pytest.fixture
def model(bundles, tiny_model_params):
    torch.manual_seed(0)
    return stages.build_model(tiny_model_params, bundles)


def test_best_step_weights_are_kept_not_the_last(model, bundles) -> None:
    objective = _multitask(bundles, model)
    snapshots = {}
    cfg = TrainerConfig(steps=20, lr=3e-3, eval_every=5, progress=False, device="cpu")
    trainer = Trainer(cfg)
    hist = trainer.fit(model, objective, "multitask", validator=_Curve([0.1, 0.5, 0.3, 0.2]),
                       on_step=lambda s: snapshots.__setitem__(s + 1, {k: v.clone() for k, v in
                                                                       model.state_dict().items()}))
    assert len(hist) == 20 and trainer.selection["chosen_step"] == 10
    assert trainer.selection["val_score"] == 0.5 and trainer.selection["stopped"] == "completed all 20 steps"
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[10][k]), k
    assert not all(torch.equal(v, snapshots[20][k]) for k, v in model.state_dict().items())
    assert hist["val.score"].dropna().tolist() == [0.1, 0.5, 0.3, 0.2]
    assert hist.loc[hist["val.score"].notna(), "step"].tolist() == [4, 9, 14, 19]


def test_early_stopping_ends_the_stage(model, bundles) -> None:
    cfg = TrainerConfig(steps=100, eval_every=5, early_stopping=2, progress=False, device="cpu")
    trainer = Trainer(cfg)
    curve = _Curve([0.1, 0.5, 0.4, 0.3, 0.9, 1.0])
    hist = trainer.fit(model, _multitask(bundles, model), "multitask", validator=curve)
    assert len(hist) == 20 and curve.calls == 4  # best at eval 2, two evaluations without improvement
    assert trainer.selection["chosen_step"] == 10 and "early stopping" in trainer.selection["stopped"]


def test_select_best_off_keeps_last_weights(model, bundles) -> None:
    cfg = TrainerConfig(steps=10, eval_every=5, select_best=False, progress=False, device="cpu")
    trainer = Trainer(cfg)
    trainer.fit(model, _multitask(bundles, model), "multitask", validator=_Curve([0.9, 0.1]))
    assert trainer.selection["chosen_step"] == 10 and trainer.selection["weights"] == "last step"


def test_task_validator_scores_only_val_rows(model, bundles) -> None:
    b = bundles["grid"]
    poisoned = dict(b.arrays)
    for split in ("test",):  # test rows must never be read during training
        poisoned[f"{split}.x"] = np.full_like(b.arrays[f"{split}.x"], np.nan)
    data = {"grid": ArrayBundle(poisoned, b.meta), "series": bundles["series"]}
    model.add_head(HeadConfig("grid", "classification", "classification", 3))
    validator = TaskValidator.from_bundles([("grid", "classification")], data, limit=5)
    seen = []
    model.tokenizers["grid"].register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    score, metrics = validator(model, torch.device("cpu"))
    assert np.isfinite(score) and set(metrics) == {"val.grid.classification.accuracy",
                                                   "val.score.grid.classification"}
    rows = torch.cat(seen)
    assert torch.equal(rows, torch.from_numpy(b.get("val", "x")[:5]))
    # the score is the normalised score against the baseline on the same val rows
    (vt,) = validator.tasks
    from omnivec2_pipelines.training.scores import normalised_score

    assert score == pytest.approx(normalised_score(metrics["val.grid.classification.accuracy"], vt.baseline, "max"))
    assert metrics["val.score.grid.classification"] == score  # one task: its own score is the mean


def test_reconstruction_validator_is_deterministic(model, bundles) -> None:
    v = ReconstructionValidator({"grid": bundles["grid"].get("val", "x")}, {"grid": 0.5}, True)
    a, b = v(model, torch.device("cpu")), v(model, torch.device("cpu"))
    assert a == b and a[0] < 0 and set(a[1]) == {"val.loss.grid"}


def test_stages_record_the_selection_in_the_checkpoint(bundles, tiny_model_params, tmp_path) -> None:
    trainer = {**TRAINER, "eval_every": 3, "eval_samples": 6}
    ck1, h1 = stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 6, "batch_size": 8,
                                                                    "mask_ratio": {"default": 0.5}}, trainer)
    assert {"val.score", "val.loss.grid", "val.loss.series"} <= set(h1.columns)
    ck3, h3 = stages.multitask(ck1, bundles, {"steps": 9, "batch_size": 8}, trainer)
    sel = ck3.meta["training"]
    assert sel["evaluations"] == 3 and sel["chosen_step"] in (3, 6, 9) and sel["steps"] == 9
    assert sel["val_score"] == pytest.approx(h3["val.score"].max())
    assert {"val.grid.classification.accuracy", "val.series.forecasting.mse"} <= set(h3.columns)
    ck3.save(tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["meta"]["training"]["chosen_step"] == \
        sel["chosen_step"]


def test_bundle_without_val_rows_is_named(bundles, tiny_model_params, caplog) -> None:
    arrays = {k: v for k, v in bundles["series"].arrays.items() if not k.startswith("val.")}
    data = {"grid": bundles["grid"], "series": ArrayBundle(arrays, bundles["series"].meta)}
    with caplog.at_level(logging.WARNING):
        ck, hist = stages.pretrain_unimodal(data, tiny_model_params, {"steps": 2, "batch_size": 8,
                                                                      "mask_ratio": 0.5},
                                            {**TRAINER, "eval_every": 1})
    assert "series has no val rows" in caplog.text and "val.loss.series" not in hist.columns
    assert "val.loss.grid" in hist.columns


def _fit_killed_at(trainer, model, objective, resume_dir, validator, kill_at=None):
    """``trainer.fit`` with crash-resume state in ``resume_dir`` (every 2 steps), interrupted after step ``kill_at``."""
    def kill(stage, step, loss):
        if step == kill_at:
            raise KeyboardInterrupt

    STEP_CALLBACKS.append(kill)
    try:
        return trainer.fit(model, objective, "multitask", ResumeConfig(resume_dir, 2, "fp"), validator=validator)
    finally:
        STEP_CALLBACKS.remove(kill)


def test_resume_after_a_kill_keeps_the_chosen_step_and_weights(bundles, tiny_model_params, tmp_path) -> None:
    """Killed after the best evaluation: the resumed stage ends with the same chosen step and weights."""
    def run(resume_dir, kill_at=None):
        torch.manual_seed(0)
        model = stages.build_model(tiny_model_params, bundles)
        objective = _multitask(bundles, model)
        validator = TaskValidator.from_bundles([("grid", "classification")], bundles, limit=12)
        cfg = TrainerConfig(steps=16, lr=3e-3, eval_every=4, checkpoint_every=2, progress=False, device="cpu")
        trainer = Trainer(cfg)
        _fit_killed_at(trainer, model, objective, resume_dir, validator, kill_at)
        return trainer.selection, model.state_dict()

    straight_sel, straight_w = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", kill_at=10)
    assert read_state(tmp_path / "b").best_weights() is not None  # the best weights are in the resume state
    sel, w = run(tmp_path / "b")
    assert sel == straight_sel
    for k in straight_w:
        assert torch.equal(w[k], straight_w[k]), k


def test_selection_counts_improvements_with_min_delta() -> None:
    sel = Selection(patience=1, min_delta=0.1)
    m = torch.nn.Linear(1, 1)
    assert not sel.update(1, 0.5, m)
    assert sel.update(2, 0.55, m)  # not an improvement of at least 0.1
    assert sel.best_step == 1 and sel.summary(2, 10)["stopped"].startswith("early stopping")


def test_selection_window_compares_the_mean_of_the_last_evaluations() -> None:
    """One spike on a noisy val curve wins alone with window 1, not with window 3."""
    curve = [0.1, 0.9, 0.1, 0.5, 0.6, 0.7, 0.2]
    m = torch.nn.Linear(1, 1, bias=False)

    def feed(sel: Selection, start: int = 0, stop: int = len(curve)) -> Selection:
        for i in range(start + 1, stop + 1):
            with torch.no_grad():
                m.weight.fill_(float(i))  # the weights after evaluation i
            sel.update(10 * i, curve[i - 1], m)
        return sel

    one, three = feed(Selection(window=1)), feed(Selection(window=3))
    assert one.best_step == 20 and one.best_score == pytest.approx(0.9)
    assert three.best_step == 60 and three.best_score == pytest.approx((0.5 + 0.6 + 0.7) / 3)
    assert float(three.best_state["weight"]) == 6.0  # the window's last evaluation's weights
    # resumed halfway from its saved state (JSON, as in the resume file): the same choice
    half = feed(Selection(window=3), stop=4)
    again = Selection(window=3)
    again.load_state_dict(json.loads(json.dumps(half.state_dict())), half.best_state)
    resumed = feed(again, start=4)
    assert (resumed.best_step, resumed.best_score) == (three.best_step, three.best_score)
    with pytest.raises(ValueError, match="trainer.select_window=0 is out of range"):
        TrainerConfig(select_window=0)


class _TaskScores:
    """A validator that puts fixed per-task normalised scores (``val.score.<task>``) in its metrics."""

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def __call__(self, model, device):
        return float(np.mean(list(self.scores.values()))), {f"val.score.{k}": v for k, v in self.scores.items()}


def _three_modalities(focus: float, patience: int = 0):
    from tests.conftest import TINY_MODEL, classification_tasks, grid_bundle, series_bundle

    three = {"g1": grid_bundle("g1"), "g2": grid_bundle("g2", seed=2), "s1": series_bundle("s1")}
    torch.manual_seed(0)
    model = stages.build_model(dict(TINY_MODEL), three)
    return model, Multitask(classification_tasks(three, model), 8, sampling="size", temperature=2.0, focus=focus,
                            patience=patience, patience_factor=0.25)


def test_sampling_focus_draws_the_tasks_behind_val_more_often(tmp_path) -> None:
    from omnivec2_pipelines.training.sampling import focus_factors

    scores = {"g1.classification": -0.8, "g2.classification": 0.0, "s1.classification": 0.6}
    model, objective = _three_modalities(focus=1.5)
    before = objective.sampler.inclusion()
    cfg = TrainerConfig(steps=8, eval_every=4, progress=False, device="cpu")
    hist = Trainer(cfg).fit(model, objective, "multitask", validator=_TaskScores(scores))
    after = objective.sampler.inclusion()
    assert after["g1.classification"] > before["g1.classification"]
    assert after["s1.classification"] < before["s1.classification"]
    assert objective.sampler.factors == pytest.approx(focus_factors(scores, 1.5))
    row = hist.dropna(subset=["val.score"]).iloc[0]  # the shares from then on are in the history
    assert {k: row[f"sampling.{k}"] for k in after} == pytest.approx(after)
    # off: the same validation changes nothing, and the history has no sampling columns
    model, objective = _three_modalities(focus=0.0)
    hist = Trainer(cfg).fit(model, objective, "multitask", validator=_TaskScores(scores))
    assert objective.sampler.inclusion() == pytest.approx(before)
    assert not [c for c in hist.columns if c.startswith("sampling.")]


def test_sampling_focus_survives_a_kill_and_resume(tmp_path) -> None:
    """The focus factors are part of the resume state: a killed stage draws the same tasks afterwards."""
    def run(resume_dir, kill_at=None):
        model, objective = _three_modalities(focus=2.0)

        def validator(m, device):  # scores that change with the weights, as a real validator's do
            w = float(sum(p.detach().double().abs().sum() for p in m.heads.parameters()))
            s = {"g1.classification": -(w * 7.31 % 1.0), "g2.classification": w * 3.17 % 1.0, "s1.classification": 0.1}
            return float(np.mean(list(s.values()))), {f"val.score.{k}": v for k, v in s.items()}

        cfg = TrainerConfig(steps=24, eval_every=4, checkpoint_every=2, progress=False, device="cpu")
        hist = _fit_killed_at(Trainer(cfg), model, objective, resume_dir, validator, kill_at)
        return hist, objective.sampler.factors

    straight, factors = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", kill_at=13)
    resumed, resumed_factors = run(tmp_path / "b")
    assert resumed["what"].tolist() == straight["what"].tolist()
    assert resumed_factors == factors and len(set(factors.values())) == 3


class _AccuracyCurves:
    """A validator whose val accuracies follow fixed curves, one value per evaluation."""

    def __init__(self, curves: dict[str, list[float]]) -> None:
        self.curves, self.calls = curves, 0

    def __call__(self, model, device):
        values = {k: v[min(self.calls, len(v) - 1)] for k, v in self.curves.items()}
        self.calls += 1
        return float(np.mean(list(values.values()))), {f"val.{k}.accuracy": v for k, v in values.items()}


def test_sampling_patience_draws_a_stale_task_less_often_until_it_improves() -> None:
    curves = {"g1.classification": [0.5, 0.6, 0.7, 0.8, 0.9],   # keeps improving
              "g2.classification": [0.9, 0.8, 0.8, 0.95, 0.9],  # stale for 2 evaluations, then better
              "s1.classification": [0.7, 0.7, 0.6, 0.6, 0.6]}   # peaks at once
    model, objective = _three_modalities(focus=0.0, patience=2)
    before = objective.sampler.inclusion()
    cfg = TrainerConfig(steps=20, eval_every=4, progress=False, device="cpu")
    hist = Trainer(cfg).fit(model, objective, "multitask", validator=_AccuracyCurves(curves))
    rows = hist.dropna(subset=["val.score"])
    share = {k: rows[f"sampling.{k}"].tolist() for k in curves}
    # evaluation 3 (index 2): g2 and s1 are stale; evaluation 4: g2 improved, s1 still stale
    assert share["s1.classification"][2] < before["s1.classification"] and share["g2.classification"][2] < before[
        "g2.classification"]
    assert share["g2.classification"][3] == pytest.approx(before["g2.classification"], rel=0.3)
    assert share["s1.classification"][4] < share["s1.classification"][1]
    assert objective.sampler.factors == {"g1.classification": 1.0, "g2.classification": 1.0,
                                         "s1.classification": 0.25}
    assert objective.plateau.stale == {"g1.classification": 0, "g2.classification": 1, "s1.classification": 4}


def test_sampling_patience_survives_a_kill_and_resume(tmp_path) -> None:
    """The tasks' best val values and staleness are part of the resume state: the same draws afterwards."""
    def run(resume_dir, kill_at=None):
        model, objective = _three_modalities(focus=0.0, patience=1)

        def validator(m, device):  # values that change with the weights, as a real validator's do
            w = float(sum(p.detach().double().abs().sum() for p in m.heads.parameters()))
            s = {"g1.classification": w * 7.31 % 1.0, "g2.classification": w * 3.17 % 1.0, "s1.classification": 0.1}
            return float(np.mean(list(s.values()))), {f"val.{k}.accuracy": v for k, v in s.items()}

        cfg = TrainerConfig(steps=24, eval_every=4, checkpoint_every=2, progress=False, device="cpu")
        hist = _fit_killed_at(Trainer(cfg), model, objective, resume_dir, validator, kill_at)
        return hist, objective.sampler.factors, objective.plateau.state_dict()

    straight, factors, plateau = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", kill_at=13)
    resumed, resumed_factors, resumed_plateau = run(tmp_path / "b")
    assert resumed["what"].tolist() == straight["what"].tolist()
    assert resumed_factors == factors and resumed_plateau == plateau
    assert plateau["stale"]["s1.classification"] == 5  # never improved after the first evaluation

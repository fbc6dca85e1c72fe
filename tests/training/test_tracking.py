"""Experiment tracking: the trainer's callbacks, and the DVCLive logs of a real (tiny) stage."""

from __future__ import annotations

import json

import pytest
import yaml

from omnivec2_pipelines.pipelines.nested import untracked
from omnivec2_pipelines.training import distributed, stages, tracking
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import MaskedUnimodal
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig


class Recorder(tracking.TrainingCallback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_step(self, stage, step, row):
        self.calls.append(("step", step, row["last"], row["samples_per_s"] > 0, "loss" in row))

    def on_eval(self, stage, step, row):
        self.calls.append(("eval", step, row["val.score"]))

    def on_end(self, stage, summary):
        self.calls.append(("end", summary["steps_run"], summary["chosen_step"], summary["final_loss"] is not None))


def test_callbacks_see_every_step_each_validation_and_the_end(bundles, tiny_model_params) -> None:
    scores = iter([0.1, 0.3])
    model = stages.build_model(tiny_model_params, bundles)
    obj = MaskedUnimodal({"grid": BatchSource(bundles["grid"].get("train", "x"), seed=0)}, {"grid": 0.5}, 8)
    rec = Recorder()
    Trainer(TrainerConfig(steps=4, progress=False, eval_every=2)).fit(
        model, obj, "s", validator=lambda m, d: (next(scores), {"val.x": 1.0}), callbacks=[rec])
    # every step, in order, handed over when its loss is read back (here at each validation)
    assert rec.calls == [("eval", 1, 0.1), ("step", 0, False, True, True), ("step", 1, False, True, True),
                         ("eval", 3, 0.3), ("step", 2, False, True, True), ("step", 3, True, True, True),
                         ("end", 4, 4, True)]


def _stage_1(bundles, tiny_model_params, **trainer):
    return stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 5, "batch_size": 8, "mask_ratio": 0.5},
                                    {"device": "cpu", "progress": False, "warmup_steps": 1, **trainer})


def _tsv_steps(path) -> list[int]:
    return [int(line.split("\t")[0]) for line in path.read_text().splitlines()[1:]]


def test_dvclive_logs_every_log_every_steps_each_validation_params_and_final(tmp_path, bundles,
                                                                             tiny_model_params) -> None:
    live = tmp_path / "live"
    _stage_1(bundles, tiny_model_params, track="dvclive", track_dir=str(live), log_every=2, eval_every=3)
    d = live / "pretrain_unimodal"
    plots = d / "plots" / "metrics"
    assert _tsv_steps(plots / "train" / "loss.tsv") == [2, 4, 5]  # every log_every steps, and the last
    for name in ("lr", "samples_per_s"):
        assert _tsv_steps(plots / "train" / f"{name}.tsv") == [2, 4, 5], name
    # a step's loss parts: the modality it trained (one per step in stage 1), at the logged steps only
    parts = [_tsv_steps(plots / "train" / f"loss.{m}.tsv") for m in ("grid", "series")
             if (plots / "train" / f"loss.{m}.tsv").is_file()]
    assert parts and sorted(s for p in parts for s in p) == [2, 4, 5]
    assert _tsv_steps(plots / "val" / "score.tsv") == [3, 5]  # every validation
    assert (plots / "val" / "loss.grid.tsv").is_file()

    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["step"] == 5
    assert set(metrics["train"]) >= {"loss", "lr", "samples_per_s"} and "score" in metrics["val"]
    assert metrics["final"]["steps_run"] == 5 and metrics["final"]["chosen_step"] in (3, 5)
    assert metrics["final"]["val_score"] == max(_val_scores(plots / "val" / "score.tsv"))
    params = yaml.safe_load((d / "params.yaml").read_text())
    assert params["stage"] == "pretrain_unimodal" and params["pretrain_unimodal"]["steps"] == 5
    assert params["trainer"]["lr"] == 1e-3 and params["trainer"]["track"] == "dvclive"

    # the dvc.yaml beside the stage folders declares them for `dvc exp show` / `dvc plots`
    dvcyaml = yaml.safe_load((live / "dvc.yaml").read_text())
    assert dvcyaml["metrics"] == ["pretrain_unimodal/metrics.json"]
    assert dvcyaml["params"] == ["pretrain_unimodal/params.yaml"]
    assert dvcyaml["plots"] == [{"pretrain_unimodal/plots/metrics": {"x": "step"}}]


def _val_scores(path) -> list[float]:
    return [float(line.split("\t")[1]) for line in path.read_text().splitlines()[1:]]


def test_track_none_writes_nothing(tmp_path, bundles, tiny_model_params) -> None:
    live = tmp_path / "live"
    _, hist = _stage_1(bundles, tiny_model_params, track="none", track_dir=str(live), eval_every=3)
    assert len(hist) == 5 and not live.exists()


def test_only_rank_0_tracks(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(distributed, "rank_world", lambda: (1, 2))
    assert tracking.stage_callbacks("dvclive", str(tmp_path / "live"), "multitask", {}, 10) == []
    assert not (tmp_path / "live").exists()
    monkeypatch.setattr(distributed, "rank_world", lambda: (0, 2))
    assert len(tracking.stage_callbacks("dvclive", str(tmp_path / "live"), "multitask", {}, 10)) == 1


def test_track_parameter_is_checked_by_name() -> None:
    with pytest.raises(ValueError, match=r"trainer.track='mlflow' must be one of \['none', 'dvclive'\]"):
        TrainerConfig.from_params({"track": "mlflow"})
    with pytest.raises(ValueError, match="trainer.track_dir"):
        TrainerConfig.from_params({"track": "dvclive", "track_dir": ""})
    assert TrainerConfig.from_params({"track": None}).track == "none"


def test_nested_runs_of_a_sweep_or_study_are_untracked() -> None:
    params = {"trainer": {"track": "dvclive", "lr": 1.0}, "multitask": {"track": "dvclive", "steps": 3},
              "pretrain_paired": {"steps": 2}, "modalities": ["a", "b"]}
    out = untracked(params)
    assert out["trainer"] == {"track": "none", "lr": 1.0} and out["multitask"] == {"track": "none", "steps": 3}
    assert out["pretrain_paired"] == {"steps": 2} and out["modalities"] == ["a", "b"]
    assert params["trainer"]["track"] == "dvclive"  # the run's own parameters are left alone


def test_a_tracker_that_cannot_start_warns_and_the_stage_still_trains(tmp_path, monkeypatch, bundles,
                                                                      tiny_model_params, caplog) -> None:
    """DVCLive refuses a DVC project in a git repository with no commit yet: the stage trains untracked."""
    from tests.project_copy import run_cmd  # the test interpreter's dvc first on PATH (no venv activated)

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run_cmd(cmd, tmp_path)
    monkeypatch.chdir(tmp_path)
    _, hist = _stage_1(bundles, tiny_model_params, track="dvclive", track_dir="live", eval_every=3)
    assert len(hist) == 5
    assert "DVCLive could not start" in caplog.text and "not tracked" in caplog.text

"""Where a stage starts: ``<stage>.init`` (a given checkpoint), ``resume_from`` (continue a finished stage), and
what the checkpoint records about it (stage, steps, data digests, tasks, project version)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.checkpoint import (
    Checkpoint,
    check_model_compatible,
    load_init,
    project_provenance,
    resolve_checkpoint_dir,
    save_checkpoint,
    weights_digest,
)

TRAINER = {"device": "cpu", "seed": 0, "progress": False, "warmup_steps": 2}
UNI = {"steps": 3, "batch_size": 8, "mask_ratio": 0.5}
MT = {"batch_size": 8, "lr": 3e-3}


def _stage1(bundles, model_params, path: Path) -> Path:
    ck, _ = stages.pretrain_unimodal(bundles, model_params, UNI, TRAINER)
    ck.save(path)
    return path


@pytest.fixture
def ck1(tmp_path, bundles, tiny_model_params) -> Path:
    """A stage-1 checkpoint on disk (with its training state)."""
    return _stage1(bundles, tiny_model_params, tmp_path / "pretrain_unimodal")


def _equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------------------ init


def test_init_from_a_path_is_the_same_start_as_that_checkpoint(ck1, bundles, tiny_model_params, caplog) -> None:
    """``multitask.init=<path>`` with no previous checkpoint trains exactly as from that checkpoint passed in."""
    with caplog.at_level("INFO"):
        ck_a, _ = stages.multitask(None, bundles, {**MT, "steps": 2, "init": str(ck1)}, TRAINER,
                                   model_params=tiny_model_params)
    assert f"multitask: starting from the checkpoint {ck1} (multitask.init)" in caplog.text
    ck_b, _ = stages.multitask(Checkpoint.load(ck1), bundles, {**MT, "steps": 2}, TRAINER)
    _equal(ck_a.model.state_dict(), ck_b.model.state_dict())
    init = ck_a.meta["init"]
    assert init == {"kind": "init", "path": str(ck1.resolve()), "stage": "pretrain_unimodal",
                    "weights_digest": weights_digest(Checkpoint.load(ck1).model)}
    assert ck_b.meta["init"]["kind"] == "previous_stage" and ck_b.meta["init"]["weights_digest"] == init["weights_digest"]
    # the starting checkpoint's own record names the same digest: a model is traced back to what it came from
    assert json.loads((ck1 / "config.json").read_text())["meta"]["weights_digest"] == init["weights_digest"]


def test_init_wins_over_the_previous_checkpoint_and_stage_one_starts_from_it(ck1, bundles, tiny_model_params,
                                                                          caplog) -> None:
    with caplog.at_level("INFO"):
        ck, _ = stages.pretrain_paired(Checkpoint.load(ck1), bundles, {"steps": 1, "batch_size": 8, "mask_ratio": 0.5,
                                                                        "init": str(ck1)}, TRAINER)
    assert "not from the previous stage's" in caplog.text and ck.meta["init"]["kind"] == "init"
    again, _ = stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "init": str(ck1)}, TRAINER)
    fresh, _ = stages.pretrain_unimodal(bundles, tiny_model_params, UNI, TRAINER)
    assert again.meta["init"]["path"] == str(ck1.resolve()) and fresh.meta["init"] == {"kind": "fresh", "seed": 0}
    assert weights_digest(again.model) != weights_digest(fresh.model)


def test_init_architecture_mismatch_names_every_key(ck1, bundles, tiny_model_params) -> None:
    params = {**tiny_model_params, "width": 64, "depth_f": 2}
    with pytest.raises(ValueError) as err:
        stages.multitask(None, bundles, {**MT, "steps": 1, "init": str(ck1)}, TRAINER, model_params=params)
    msg = str(err.value)
    assert msg.startswith(f"multitask.init={ck1}: the checkpoint has model.width=32 but the run's model.width=64")
    assert "model.depth_f=1 but the run's model.depth_f=2" in msg and "heads_f" not in msg
    # regularisation is the run's choice, not a mismatch
    ck, _ = stages.multitask(None, bundles, {**MT, "steps": 1, "init": str(ck1)}, TRAINER,
                             model_params={**tiny_model_params, "dropout": 0.1})
    assert ck.model.cfg.dropout == 0.1


def test_missing_or_broken_init_names_the_parameter(tmp_path, ck1, bundles, tiny_model_params) -> None:
    with pytest.raises(FileNotFoundError, match=r"multitask.init: /nowhere/ck does not exist; expected a checkpoint"):
        stages.multitask(None, bundles, {**MT, "init": "/nowhere/ck"}, TRAINER, model_params=tiny_model_params)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"finetune.init: checkpoint .*empty: missing config.json"):
        load_init(tmp_path / "empty", "finetune.init")
    (ck1 / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"finetune.init: checkpoint weights .* are unreadable"):
        load_init(ck1, "finetune.init")
    with pytest.raises(ValueError, match=r"multitask.init must be a checkpoint directory"):
        stages.multitask(None, bundles, {**MT, "init": 3}, TRAINER)
    with pytest.raises(ValueError, match=r"multitask.init and trainer.resume_from are both set"):
        stages.multitask(None, bundles, {**MT, "init": str(ck1)}, {**TRAINER, "resume_from": str(ck1)})
    with pytest.raises(ValueError, match=r"multitask starts from the previous stage's checkpoint or from multitask.init"):
        stages.multitask(None, bundles, MT, TRAINER)


def test_check_model_compatible_takes_a_config_or_a_dict(ck1, tiny_model_params) -> None:
    model = Checkpoint.load(ck1).model
    check_model_compatible(model.cfg, tiny_model_params, "x")
    check_model_compatible(model.cfg.to_dict(), {**tiny_model_params, "drop_path": 0.2}, "x")
    with pytest.raises(ValueError, match=r"finetune.init=p: the checkpoint has model.heads_g=2 but the run's "
                                         r"model.heads_g=4"):
        check_model_compatible(model.cfg, {**tiny_model_params, "heads_g": 4}, "finetune.init=p")
    with pytest.raises(ValueError, match=r"finetune.init=p: the run's model config is invalid: unknown model"):
        check_model_compatible(model.cfg, {"depth": 3}, "finetune.init=p")


def test_tokenizer_mismatch_names_init(ck1, tiny_model_params) -> None:
    from tests.conftest import grid_bundle, series_bundle

    other = {"grid": grid_bundle("grid", hw=(12, 12)), "series": series_bundle("series")}
    with pytest.raises(ValueError, match=r"multitask.init: the checkpoint's grid tokenizer was built for .* tokenize "
                                         r"grid as the checkpoint's data was \(grid.tokenization\)"):
        stages.multitask(None, other, {**MT, "init": str(ck1)}, TRAINER, model_params=tiny_model_params)


# ----------------------------------------------------------------------------------------------- resume_from


@pytest.mark.parametrize("stage", ["pretrain_unimodal", "multitask"])
def test_resume_from_continues_a_finished_stage_as_one_run(stage, tmp_path, bundles, tiny_model_params,
                                                           caplog) -> None:
    """3 steps, saved, continued to 6 == 6 steps in one go (constant LR after warm-up, validation every 3 steps),
    also when the checkpoint's own weights (the best val step's) are not the last step's."""
    trainer = {**TRAINER, "min_lr_ratio": 1.0, "eval_every": 3, "eval_samples": 8}
    base = _stage1(bundles, tiny_model_params, tmp_path / "base") if stage == "multitask" else None

    def run(steps: int, **extra) -> tuple[Checkpoint, object]:
        if stage == "pretrain_unimodal":
            return stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "steps": steps}, {**trainer, **extra})
        return stages.multitask(None if extra else Checkpoint.load(base), bundles, {**MT, "steps": steps},
                                {**trainer, **extra}, model_params=tiny_model_params)

    straight, h_straight = run(6)
    first, _ = run(3)
    first.save(tmp_path / "first")
    assert sorted(p.name for p in (tmp_path / "first" / "training_state").iterdir()) == ["state.json",
                                                                                       "state.safetensors"]
    # the continuation starts from the saved last-step state, whatever the checkpoint's weights are
    weights = {k: v * 2 for k, v in first.model.state_dict().items()}
    save_checkpoint(first.model, tmp_path / "doubled", first.meta, first.training_state)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "doubled" / "model.safetensors"))
    with caplog.at_level("INFO"):
        cont, h_cont = run(6, resume_from=str(tmp_path / "doubled"))
    assert f"{stage}: continuing the finished run in {tmp_path / 'doubled'} (trainer.resume_from) from step 3" \
        in caplog.text
    _equal(cont.model.state_dict(), straight.model.state_dict())
    assert h_cont["loss"].tolist() == h_straight["loss"].tolist() and h_cont["step"].tolist() == list(range(6))
    assert h_cont["lr"].tolist() == h_straight["lr"].tolist()
    for key in ("chosen_step", "best_step", "val_score", "evaluations", "steps_run"):
        assert cont.meta["training"][key] == straight.meta["training"][key], key
    assert cont.meta["init"]["kind"] == "resume_from" and cont.meta["init"]["steps_run"] == 3
    assert cont.training_state.step == 6


def test_resume_from_lays_the_cosine_schedule_over_the_new_total(tmp_path, bundles, tiny_model_params) -> None:
    ck, h1 = stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "steps": 4}, TRAINER)
    ck.save(tmp_path / "ck")
    _, h2 = stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "steps": 8},
                                     {**TRAINER, "resume_from": str(tmp_path / "ck")})
    _, h8 = stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "steps": 8}, TRAINER)
    assert h2["lr"].tolist()[:4] == h1["lr"].tolist()  # the history of the first run, kept
    assert h2["lr"].tolist()[4:] == h8["lr"].tolist()[4:]  # then the schedule of one 8-step run
    assert h2["lr"].iloc[4] > h1["lr"].iloc[-1]


def test_resume_from_errors_name_the_parameter(tmp_path, ck1, bundles, tiny_model_params) -> None:
    with pytest.raises(ValueError, match=r"pretrain_unimodal.steps=3 must exceed the 3 steps that .* already ran: "
                                         r"with trainer.resume_from, steps is the new total"):
        stages.pretrain_unimodal(bundles, tiny_model_params, UNI, {**TRAINER, "resume_from": str(ck1)})
    with pytest.raises(ValueError, match=r"multitask.resume_from=.* is a checkpoint of pretrain_unimodal, not of "
                                         r"multitask: .* set multitask.init"):
        stages.multitask(None, bundles, {**MT, "steps": 9, "resume_from": str(ck1)}, TRAINER)
    save_checkpoint(Checkpoint.load(ck1).model, tmp_path / "bare", {"stage": "pretrain_unimodal"})
    with pytest.raises(FileNotFoundError, match=r"trainer.resume_from: checkpoint .*bare has no training state"):
        stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "steps": 9},
                                 {**TRAINER, "resume_from": str(tmp_path / "bare")})
    with pytest.raises(FileNotFoundError, match=r"pretrain_unimodal.resume_from: /nowhere does not exist"):
        stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "steps": 9, "resume_from": "/nowhere"}, TRAINER)
    with pytest.raises(ValueError, match=r"trainer.resume_from=.*: the checkpoint has model.width=32 but the run's "
                                         r"model.width=64"):
        stages.pretrain_unimodal(bundles, {**tiny_model_params, "width": 64}, {**UNI, "steps": 9},
                                 {**TRAINER, "resume_from": str(ck1)})
    from tests.conftest import grid_bundle

    more = {**bundles, "extra": grid_bundle("extra", seed=4)}
    with pytest.raises(ValueError, match=r"trainer.resume_from: this run's network differs from the saved run's "
                                         r"\(new: \[.*'tokenizers.extra'\], gone: \[\]\)"):
        stages.pretrain_unimodal(more, tiny_model_params, {**UNI, "steps": 9}, {**TRAINER, "resume_from": str(ck1)})
    fewer = {"grid": grid_bundle("grid", n=40), "series": bundles["series"]}
    with pytest.raises(ValueError, match=r"trainer.resume_from: grid has 40 rows, the saved run's had 48"):
        stages.pretrain_unimodal(fewer, tiny_model_params, {**UNI, "steps": 9}, {**TRAINER, "resume_from": str(ck1)})
    # a stage's own empty value switches the trainer's off for that stage
    ck, _ = stages.pretrain_unimodal(bundles, tiny_model_params, {**UNI, "resume_from": None},
                                     {**TRAINER, "resume_from": str(ck1)})
    assert ck.meta["init"]["kind"] == "fresh"


# -------------------------------------------------------------------------------------------------- metadata


def test_checkpoint_meta_traces_the_model_back(tmp_path, ck1, bundles) -> None:
    ck, hist = stages.multitask(Checkpoint.load(ck1), bundles, {**MT, "steps": 4},
                                {**TRAINER, "eval_every": 2, "eval_samples": 8})
    ck.save(tmp_path / "mt")
    meta = json.loads((tmp_path / "mt" / "config.json").read_text())["meta"]
    assert {"stage", "init", "training", "modalities", "tasks", "data", "data_digests", "weights_digest",
            "project"} <= set(meta)
    assert meta["stage"] == "multitask" and meta["modalities"] == ["grid", "series"]
    training = meta["training"]
    assert training["steps"] == 4 and training["steps_run"] == 4 == len(hist)
    assert training["lr"] == 3e-3 and training["seed"] == 0 and training["best_step"] in (2, 4)
    assert training["chosen_step"] == training["best_step"]
    assert meta["tasks"] == {
        "grid.classification": {"kind": "classification", "out_dim": 3, "class_names": ["c0", "c1", "c2"]},
        "series.classification": {"kind": "classification", "out_dim": 2, "class_names": ["slow", "fast"]},
        "series.forecasting": {"kind": "regression", "out_dim": 16, "class_names": None}}
    assert meta["data_digests"] == stages.data_digests(bundles) and len(meta["data_digests"]["grid"]) == 64
    assert meta["init"]["kind"] == "previous_stage" and meta["init"]["stage"] == "pretrain_unimodal"
    assert meta["weights_digest"] == weights_digest(Checkpoint.load(tmp_path / "mt").model)
    project = meta["project"]
    assert project["package"] == "omnivec2-pipelines" and (project["version"] is None or project["version"])
    assert project["git_revision"] is None or re.fullmatch(r"[0-9a-f]{40,64}", project["git_revision"])
    pre = json.loads((ck1 / "config.json").read_text())["meta"]
    assert pre["tasks"] == {} and pre["init"] == {"kind": "fresh", "seed": 0} and pre["training"]["best_step"] is None


def test_data_digest_changes_with_the_data(bundles) -> None:
    from tests.conftest import grid_bundle

    assert stages.data_digests(bundles) == stages.data_digests(dict(bundles))
    other = stages.data_digests({**bundles, "grid": grid_bundle("grid", seed=9)})
    assert other["grid"] != stages.data_digests(bundles)["grid"]
    assert other["series"] == stages.data_digests(bundles)["series"]


def test_git_revision_is_none_outside_a_checkout(tmp_path, monkeypatch) -> None:
    from omnivec2_pipelines.training import checkpoint

    assert checkpoint._git_revision(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert checkpoint._git_revision(Path(checkpoint.__file__).parent) is None
    assert set(project_provenance()) == {"package", "version", "git_revision"}


# ---------------------------------------------------------------------------------------- pipelines and checks


def test_a_stage_with_a_named_start_reads_the_model_not_the_previous_checkpoint() -> None:
    from omnivec2_pipelines.pipelines.training.pipeline import create_pipelines

    mods = ["image", "text"]
    default = create_pipelines(mods, {})
    assert "pretrain_paired_checkpoint" in default["multitask"].inputs()
    assert "params:model" not in default["multitask"].inputs()
    pipes = create_pipelines(mods, {"multitask": {"init": "ck"}})
    assert "params:model" in pipes["multitask"].inputs()
    assert "pretrain_paired_checkpoint" not in pipes["multitask"].inputs()
    assert "pretrain_unimodal_checkpoint" in pipes["pretrain_paired"].inputs()
    pipes = create_pipelines(mods, {"trainer": {"resume_from": "ck"}, "multitask": {"resume_from": None}})
    assert "params:model" in pipes["pretrain_paired"].inputs() and "params:model" not in pipes["multitask"].inputs()


def test_run_parameters_are_checked_before_the_first_node(tmp_path, ck1) -> None:
    from omnivec2_pipelines.hooks import validate_run_parameters
    from omnivec2_pipelines.pipelines.training.pipeline import create_pipelines
    from tests.tiny import TINY, project_params

    params = {k: v for k, v in project_params().items() if k in ("trainer", "model", "multitask", "image", "text")}
    params["modalities"] = ["image", "text"]
    params["model"].update(TINY["model"], mlp_ratio=2.0, flat_head=False, wide_head=[])  # ck1: ModelConfig's defaults
    params["multitask"]["init"] = str(tmp_path / "missing")
    pipe = create_pipelines(params["modalities"], params)["multitask"]
    with pytest.raises(FileNotFoundError, match=r"multitask.init: .*missing does not exist"):
        validate_run_parameters(params, pipe)
    params["multitask"]["init"] = str(ck1)
    validate_run_parameters(params, pipe)
    params["model"]["flat_head"] = True  # the heads' readout is part of the architecture too
    with pytest.raises(ValueError, match=r"the checkpoint has model.flat_head=False but the run's model.flat_head=True"):
        validate_run_parameters(params, pipe)
    params["model"]["flat_head"] = False
    params["model"]["wide_head"] = ["regression"]
    with pytest.raises(ValueError, match=r"the checkpoint has model.wide_head=\[\] but the run's model.wide_head=\['regression'\]"):
        validate_run_parameters(params, pipe)
    params["model"]["wide_head"] = []
    params["model"]["depth_g"] = 3
    with pytest.raises(ValueError, match=r"the checkpoint has model.depth_g=1 but the run's model.depth_g=3"):
        validate_run_parameters(params, pipe)
    params["multitask"]["inti"] = "x"
    with pytest.raises(ValueError, match=r"unknown parameter 'multitask.inti'; did you mean 'multitask.init'\?"):
        validate_run_parameters(params, pipe)


@pytest.mark.slow
def test_kedro_run_of_one_stage_from_a_given_checkpoint_then_continued(tmp_path, monkeypatch) -> None:
    """``kedro run --pipelines multitask --params multitask.init=<path>`` with no previous checkpoint on disk,
    then ``trainer.resume_from`` continuing it, then a mismatch refused before the first node."""
    from tests.project_copy import copy_project, run_cmd
    from tests.tiny import TINY

    monkeypatch.delenv("KEDRO_ENV", raising=False)
    root = copy_project(tmp_path / "project")
    (root / "conf" / "small").mkdir()
    small = {"modalities": ["time_series", "tabular"], "model": TINY["model"],
             "trainer": {"device": "cpu", "progress": False, "warmup_steps": 1, "eval_every": 0},
             "multitask": {"steps": 4, "batch_size": 8}}
    (root / "conf" / "small" / "parameters.yml").write_text(yaml.safe_dump(small))
    run_cmd(["kedro", "run", "--env", "small", "--pipelines", "sample_data"], root)
    run_cmd(["kedro", "run", "--env", "small", "--pipelines", "ingestion,tokenization"], root)
    from omnivec2_pipelines.models import ModelConfig, OmniVec2

    base = yaml.safe_load((root / "conf/base/parameters.yml").read_text())["model"]
    torch.manual_seed(0)
    save_checkpoint(OmniVec2(ModelConfig.from_dict({**base, **TINY["model"]})), tmp_path / "init",
                    {"stage": "pretrain_paired"})

    proc = run_cmd(["kedro", "run", "--env", "small", "--pipelines", "multitask", "--params",
                    f"multitask.init={tmp_path / 'init'}"], root)
    out = proc.stdout + proc.stderr
    assert f"multitask: starting from the checkpoint {tmp_path / 'init'} (multitask.init)" in out
    assert not (root / "data/06_models/pretrain_paired").exists()
    first = resolve_checkpoint_dir(root / "data/06_models/multitask")  # the run's version
    meta = json.loads((first / "config.json").read_text())["meta"]
    assert meta["init"]["path"] == str(tmp_path / "init") and meta["training"]["steps_run"] == 4
    assert (first / "training_state/state.json").is_file()

    # resume_from names the stage's folder of versions: it continues the newest, into a new version
    proc = run_cmd(["kedro", "run", "--env", "small", "--pipelines", "multitask", "--params",
                    "trainer.resume_from=data/06_models/multitask,multitask.steps=6"], root)
    second = resolve_checkpoint_dir(root / "data/06_models/multitask")
    meta = json.loads((second / "config.json").read_text())["meta"]
    assert second != first and meta["init"]["kind"] == "resume_from" and meta["training"]["steps_run"] == 6
    assert meta["init"]["path"] == str(first.resolve())
    assert json.loads((first / "config.json").read_text())["meta"]["training"]["steps_run"] == 4  # kept
    history = root / "data/08_reporting/loss_multitask.csv" / second.parent.name / "loss_multitask.csv"
    assert len(history.read_text().splitlines()) == 7  # the same run id as its checkpoint

    with pytest.raises(AssertionError) as err:
        run_cmd(["kedro", "run", "--env", "small", "--pipelines", "multitask", "--params",
                 f"multitask.init={tmp_path / 'init'},model.width=64"], root)
    assert "the checkpoint has model.width=32 but the run's model.width=64" in str(err.value)
    assert "Running node" not in str(err.value)

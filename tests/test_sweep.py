"""Optuna sweeps over the real pipelines: validation up front, a pruned 3-trial study, parallel workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from omnivec2_pipelines import sweep as sw
from omnivec2_pipelines.pipelines.sweep import nodes
from omnivec2_pipelines.training import stages
from tests.sweep_worker import PARAMS, bundles, spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared():
    b = bundles()
    ck1, _ = stages.pretrain_unimodal(b, PARAMS["model"], PARAMS["pretrain_unimodal"], PARAMS["trainer"])
    ck2, _ = stages.pretrain_paired(ck1, b, PARAMS["pretrain_paired"], PARAMS["trainer"])
    return b, ck1, ck2


def _sweep_params(tmp_path, **over) -> dict:
    s = {"stage": "multitask", "objective": "grid.classification.accuracy", "direction": "maximize",
         "n_trials": 3, "storage": f"sqlite:///{tmp_path}/s.db", "study_name": "s", "pruner": "median",
         "report_every": 4, "split": "val", "seed": 0,
         "space": {"multitask": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                 "batch_size": {"type": "categorical", "choices": [8, 16]}}}}
    s.update(over)
    return s


def test_three_trial_sweep_with_pruning_writes_outputs(tmp_path, prepared) -> None:
    b, ck1, ck2 = prepared
    trials, best, figs = nodes.sweep_node(_sweep_params(tmp_path), PARAMS, ck1, ck2, **b)
    assert len(trials) == 3 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert set(best) == {"multitask"} and set(best["multitask"]) == {"lr", "batch_size"}
    assert 1e-4 <= best["multitask"]["lr"] <= 1e-2 and yaml.safe_load(yaml.safe_dump(best)) == best
    assert list(figs) == ["sweep_history.png"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    # every trial reported intermediate values (training loss every 4 steps), which the pruner reads
    assert all(len(t.intermediate_values) >= 2 for t in study.trials)


@pytest.mark.parametrize("over, message", [
    ({"space": {"multitask": {"lrr": {"type": "float", "low": 0.1, "high": 1}}}},
     r"unknown parameter 'multitask.lrr'"),
    ({"space": {"multitask.lr": {"type": "float", "low": 0.1, "high": 0.01}}}, r"low=0.1 > high=0.01"),
    ({"storage": "redis://localhost/0"}, r"sweep.storage='redis://localhost/0': unknown scheme"),
    ({"objective": "grid.classification.miou"}, r"sweep.objective='grid.classification.miou' is not a metric"),
    ({"stage": "finetune"}, r"sweep.stage='finetune'"),
    ({"objective": "grid.classification.baseline.accuracy"},
     r"sweep.objective='grid.classification.baseline.accuracy' is a baseline metric.*"
     r"sweep.objective='grid.classification.accuracy'"),
    ({"heartbeat_interval": 0}, r"sweep.heartbeat_interval must be a positive integer"),
    ({"heartbeat_interval": 1.5}, r"sweep.heartbeat_interval must be a positive integer"),
])
def test_bad_sweep_fails_before_any_trial(tmp_path, prepared, over, message) -> None:
    b, ck1, ck2 = prepared
    with pytest.raises(ValueError, match=message):
        nodes.sweep_node(_sweep_params(tmp_path, **over), PARAMS, ck1, ck2, **b)
    assert not (tmp_path / "s.db").exists()  # no study was even created


def test_baseline_objective_and_bad_heartbeat_are_refused_from_the_parameters_alone(tmp_path) -> None:
    # SweepSpec.from_params is what the parameter hook calls: these need no data, so no node runs first
    with pytest.raises(ValueError, match=r"is a baseline metric.*'image.classification.accuracy'"):
        sw.SweepSpec.from_params(_sweep_params(tmp_path, objective="image.classification.baseline.accuracy"))
    with pytest.raises(ValueError, match=r"sweep.heartbeat_interval must be a positive integer"):
        sw.SweepSpec.from_params(_sweep_params(tmp_path, heartbeat_interval=True))
    assert sw.SweepSpec.from_params(_sweep_params(tmp_path, heartbeat_interval=None)).heartbeat_interval is None


def test_a_data_parallel_trainer_is_refused_in_a_sweep(tmp_path, prepared) -> None:
    b, ck1, ck2 = prepared
    params = {**PARAMS, "trainer": {**PARAMS["trainer"], "nproc_per_node": 2}}
    with pytest.raises(ValueError, match="trainer.nproc_per_node and trainer.nnodes must be 1"):
        nodes.sweep_node(_sweep_params(tmp_path), params, ck1, ck2, **b)


def test_two_parallel_workers_share_one_journal_study(tmp_path) -> None:
    storage = f"journal:{tmp_path}/study.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.sweep_worker", storage, "4"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="t", storage=sw.make_storage(storage))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))  # no duplicated trial
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                       optuna.trial.TrialState.PRUNED)]
    assert len(finished) == len(study.trials) and 4 <= len(finished) <= 5  # none lost or left running
    assert spec(storage, 4).n_trials == 4


def test_cli_sweep_after_a_tiny_run(tmp_path) -> None:
    """`kedro run --pipelines sweep` with --params overrides, on a project copy that has run once."""
    from tests.project_copy import copy_project, run_cmd, shrink_base_params

    root = copy_project(tmp_path / "project")
    shrink_base_params(root)
    params = yaml.safe_load((root / "conf/base/parameters.yml").read_text())
    params["modalities"] = ["image", "time_series"]
    (root / "conf/base/parameters.yml").write_text(yaml.safe_dump(params))
    run_cmd(["kedro", "run", "--pipelines", "sample_data"], root)
    run_cmd(["kedro", "run"], root)
    run_cmd(["kedro", "run", "--pipelines", "sweep", "--params",
             "sweep.n_trials=2,sweep.report_every=2,sweep.space.multitask.steps.low=4,"
             "sweep.space.multitask.steps.high=6,sweep.storage=journal:data/07_model_output/sweep.log"], root)
    trials = (root / "data/08_reporting/sweep_trials.csv").read_text().splitlines()
    assert len(trials) == 3  # header + 2 trials
    best = yaml.safe_load((root / "data/08_reporting/sweep_best_params.yml").read_text())
    assert set(best["multitask"]) == {"lr", "batch_size", "steps"} and 4 <= best["multitask"]["steps"] <= 6
    assert (root / "data/08_reporting/figures/sweep/sweep_history.png").is_file()
    assert (root / "data/07_model_output/sweep.log").is_file()


# the dead worker asks for its trial outside Study.optimize, which Optuna warns about
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_whose_worker_died_is_failed_and_retried(tmp_path, prepared, kind) -> None:
    """A worker killed mid-trial leaves it RUNNING; the next worker fails it (heartbeat) and reruns its parameters."""
    b, ck1, ck2 = prepared
    url = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"journal:{tmp_path}/s.log"
    params = _sweep_params(tmp_path, storage=url, n_trials=2, heartbeat_interval=1, pruner="none")
    # the dead worker: it started a trial, sent one heartbeat and was never heard from again
    storage = sw.make_storage(url, heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dead = study.ask()
    lr = dead.suggest_float("multitask.lr", 1e-4, 1e-2, log=True)
    bs = dead.suggest_categorical("multitask.batch_size", [8, 16])
    storage.record_heartbeat(dead._trial_id)
    # longer than the grace period (twice the interval) by more than a second: SQLite's now() has whole-second
    # resolution, so 2.5 s could read as 2 s, which is not > 2 s, and the trial would not count as stale
    time.sleep(3.5)

    trials, best, _ = nodes.sweep_node(params, PARAMS, ck1, ck2, **b)
    study = optuna.load_study(study_name="s", storage=sw.make_storage(url))
    states = {t.number: t.state for t in study.trials}
    assert states[dead.number] == optuna.trial.TrialState.FAIL  # no longer RUNNING forever
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == {"multitask.lr": lr, "multitask.batch_size": bs}  # the same trial, run again
    assert optuna.trial.TrialState.RUNNING not in states.values()
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 2 and set(trials["state"]) == {"COMPLETE", "FAIL"}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_live_trial_is_not_failed(tmp_path) -> None:
    storage = sw.make_storage(f"journal:{tmp_path}/s.log", heartbeat_interval=1)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    time.sleep(2.2)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    storage.record_heartbeat(trial._trial_id)  # beating again: alive
    assert storage._get_stale_trial_ids(study._study_id) == []
    # without a heartbeat interval the storages are Optuna's plain ones
    assert type(sw.make_storage(f"journal:{tmp_path}/t.log")) is optuna.storages.JournalStorage
    assert sw.make_storage(f"sqlite:///{tmp_path}/t.db") == f"sqlite:///{tmp_path}/t.db"


def test_default_heartbeat_is_documented_in_the_parameters() -> None:
    conf = yaml.safe_load((ROOT / "conf/base/parameters_sweep.yml").read_text())["sweep"]
    default = sw.SweepSpec("multitask", {}, "x").heartbeat_interval
    assert conf["heartbeat_interval"] == sw.DEFAULT_HEARTBEAT_INTERVAL == default
    line = next(x for x in (ROOT / "conf/base/parameters_sweep.yml").read_text().splitlines()
                if "heartbeat_interval:" in x)
    assert "#" in line  # documented where it is set

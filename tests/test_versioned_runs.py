"""Versioned runs and DVCLive tracking, for real, through the Kedro CLI in a project copy: no run overwrites an
earlier model, the next stage loads the newest version, an older one stays loadable (``--load-versions``, a
parameter naming a version's directory), old versions are pruned and `make clean-data` removes everything; each
training stage logs to dvclive/ (`dvc exp show` lists it) unless ``trainer.track: none``."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
import yaml

from omnivec2_pipelines.io.versions import versions
from tests.project_copy import TINY_PARAMS, copy_project, deep_update, run_cmd

pytestmark = pytest.mark.slow


def _meta(root, stage: str, version: str) -> dict:
    return json.loads((root / f"data/06_models/{stage}/{version}/{stage}/config.json").read_text())["meta"]


def test_two_runs_keep_two_versions_next_stage_loads_newest_older_loadable(tmp_path) -> None:
    root = copy_project(tmp_path / "project")
    local: dict = {}
    for over in TINY_PARAMS.values():
        deep_update(local, over)
    local["modalities"] = ["time_series", "tabular"]
    (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(local))
    run_cmd(["kedro", "run", "--pipelines", "sample_data"], root)

    run_cmd(["kedro", "run"], root)  # run A: every stage and the evaluation, tracked (the default)
    (a,) = versions(root / "data/06_models/pretrain_paired")
    for stage in ("pretrain_unimodal", "pretrain_paired", "multitask"):
        assert versions(root / f"data/06_models/{stage}") == [a]  # one run id for all outputs of a run
        assert versions(root / f"data/08_reporting/loss_{stage}.csv") == [a]
    assert versions(root / "data/08_reporting/runs/metrics.json") == [a]
    run_metrics = json.loads((root / f"data/08_reporting/runs/metrics.json/{a}/metrics.json").read_text())
    assert run_metrics == json.loads((root / "data/08_reporting/metrics.json").read_text())
    assert _meta(root, "multitask", a)["init"]["weights_digest"] == _meta(root, "pretrain_paired", a)["weights_digest"]

    # DVCLive: per stage, the training and validation metrics, the learning rate, samples/s, params, final metrics
    live = root / "dvclive"
    for stage in ("pretrain_unimodal", "pretrain_paired", "multitask"):
        metrics = json.loads((live / stage / "metrics.json").read_text())
        assert {"loss", "lr", "samples_per_s"} <= set(metrics["train"]) and "score" in metrics["val"], stage
        assert metrics["final"]["steps_run"] == TINY_PARAMS[f"parameters_{stage}.yml"][stage]["steps"]
        assert yaml.safe_load((live / stage / "params.yaml").read_text())[stage]["batch_size"] == 8
    assert "time_series.classification.accuracy" in json.loads((live / "multitask/metrics.json").read_text())["val"]
    steps = [r["step"] for r in csv.DictReader((live / "multitask/plots/metrics/train/loss.tsv").open(),
                                               delimiter="\t")]
    assert steps == ["2", "4"]  # every trainer.log_every (2) steps of the 4
    # ... which `dvc exp show` lists (the workspace and the committed baseline)
    run_cmd(["git", "init", "-q"], root)
    run_cmd(["git", "add", "-A"], root)
    run_cmd(["git", "commit", "-q", "-m", "run A"], root)
    table = list(csv.reader(io.StringIO(run_cmd(["dvc", "exp", "show", "--csv"], root).stdout)))
    header, rows = table[0], table[1:]
    for column in ("dvclive/multitask/metrics.json:train.loss", "dvclive/multitask/metrics.json:val.score",
                   "dvclive/pretrain_paired/metrics.json:final.val_score"):
        assert column in header, header
        assert all(row[header.index(column)] not in ("", "-") for row in rows), column
    assert any(h.startswith("dvclive/multitask/params.yaml:multitask.") for h in header), header

    # the off-switch writes nothing; run C of pretrain_paired is a second version, A's stays as it was
    shutil.rmtree(live)
    a_weights = (root / f"data/06_models/pretrain_paired/{a}/pretrain_paired/model.safetensors").read_bytes()
    run_cmd(["kedro", "run", "--pipelines", "pretrain_paired", "--params",
             "trainer.track=none,pretrain_paired.seed=1"], root)
    assert not live.exists()
    first, c = versions(root / "data/06_models/pretrain_paired")
    assert first == a and c > a and versions(root / "data/08_reporting/loss_pretrain_paired.csv") == [a, c]
    assert (root / f"data/06_models/pretrain_paired/{a}/pretrain_paired/model.safetensors").read_bytes() == a_weights
    assert _meta(root, "pretrain_paired", c)["weights_digest"] != _meta(root, "pretrain_paired", a)["weights_digest"]

    # the next stage loads the newest version (C) by default ...
    run_cmd(["kedro", "run", "--pipelines", "multitask", "--params", "trainer.track=none"], root)
    d = versions(root / "data/06_models/multitask")[-1]
    assert _meta(root, "multitask", d)["init"]["weights_digest"] == _meta(root, "pretrain_paired", c)["weights_digest"]
    # ... an older one when --load-versions names it ...
    run_cmd(["kedro", "run", "--pipelines", "multitask", "--load-versions", f"pretrain_paired_checkpoint:{a}",
             "--params", "trainer.track=none"], root)
    e = versions(root / "data/06_models/multitask")[-1]
    assert _meta(root, "multitask", e)["init"]["weights_digest"] == _meta(root, "pretrain_paired", a)["weights_digest"]
    # ... or a parameter naming its directory
    run_cmd(["kedro", "run", "--pipelines", "multitask", "--params",
             f"trainer.track=none,multitask.init=data/06_models/pretrain_paired/{a}/pretrain_paired"], root)
    f = versions(root / "data/06_models/multitask")[-1]
    assert _meta(root, "multitask", f)["init"]["kind"] == "init"
    assert _meta(root, "multitask", f)["init"]["weights_digest"] == _meta(root, "pretrain_paired", a)["weights_digest"]
    assert versions(root / "data/06_models/multitask") == [a, d, e, f]

    # retention: keep the newest version of each versioned dataset; `make clean-data` removes everything
    run_cmd(["python", "-m", "omnivec2_pipelines.io.versions", "--keep", "1"], root)
    assert versions(root / "data/06_models/multitask") == [f] and versions(root / "data/06_models/pretrain_paired") == [c]
    assert versions(root / "data/08_reporting/loss_multitask.csv") == [f]
    run_cmd(["make", "clean-data"], root)
    left = sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*") if p.is_file())
    assert all(p.endswith(".gitkeep") for p in left), left
    assert not live.exists()

"""`dvc repro` on a fresh copy runs everything; a second is a no-op; a multitask change re-runs only its tail."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.project_copy import copy_project, run_cmd, shrink_base_params

pytestmark = pytest.mark.slow


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_@]+)'", output)


def test_dvc_repro_twice_then_param_change(tmp_path) -> None:
    root = copy_project(tmp_path / "project")
    shrink_base_params(root)
    # a subset of modalities: the per-modality stages expand for exactly the enabled ones
    params_file = root / "conf/base/parameters.yml"
    params = yaml.safe_load(params_file.read_text())
    params["modalities"] = ["image", "audio", "time_series"]
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    run_cmd(["git", "init", "-q"], root)
    run_cmd(["dvc", "init", "-q"], root)
    run_cmd(["dvc", "config", "core.analytics", "false"], root)

    first = run_cmd(["dvc", "repro"], root).stdout
    modalities = ["image", "audio", "time_series"]
    expected = {f"{stage}@{m}" for stage in ("sample_data", "ingestion", "tokenization") for m in modalities}
    ran = _ran(first)
    assert set(ran[:-4]) == expected and len(ran) == len(expected) + 4
    assert ran[-4:] == ["pretrain_unimodal", "pretrain_paired", "multitask", "evaluation"]
    assert "time_series.forecasting.mse" in json.loads((root / "data/08_reporting/metrics.json").read_text())

    second = run_cmd(["dvc", "repro"], root).stdout
    assert _ran(second) == [] and "Data and pipelines are up to date" in second

    params_file = root / "conf/base/parameters_multitask.yml"
    params = yaml.safe_load(params_file.read_text())
    assert params["multitask"]["steps"] == 4
    params["multitask"]["steps"] = 5
    params_file.write_text(yaml.safe_dump(params))
    third = run_cmd(["dvc", "repro"], root).stdout
    assert _ran(third) == ["multitask", "evaluation"]

    metrics = run_cmd(["dvc", "metrics", "show", "--json"], root).stdout
    assert "image.classification.accuracy" in metrics

    # experiments: commit the baseline, then change a Kedro parameter with -S; only its tail re-runs
    run_cmd(["git", "add", "-A"], root)
    run_cmd(["git", "commit", "-q", "-m", "baseline"], root)
    assert run_cmd(["git", "status", "--porcelain"], root).stdout.strip() == ""  # metrics, plots, lock: in git
    exp = run_cmd(["dvc", "exp", "run", "-S", "conf/base/parameters_multitask.yml:multitask.lr=0.005"], root).stdout
    assert _ran(exp) == ["multitask", "evaluation"]
    diff = run_cmd(["dvc", "metrics", "diff", "--json"], root).stdout
    assert "image.classification.accuracy" in diff
    plots = run_cmd(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)
    assert (tmp_path / "plots" / "index.html").is_file(), plots.stdout
    assert "loss_multitask.csv" in (tmp_path / "plots" / "index.html").read_text()

    # raw data is versioned by DVC: push to a local remote, lose it, pull it back
    remote = tmp_path / "remote"
    run_cmd(["dvc", "remote", "add", "-d", "local", str(remote)], root)
    run_cmd(["dvc", "push"], root)
    png = sorted((root / "data/01_raw/image/train").rglob("*.png"))[0]
    content = png.read_bytes()
    shutil.rmtree(root / "data/01_raw/image")
    shutil.rmtree(root / ".dvc" / "cache")
    run_cmd(["dvc", "pull"], root)
    assert png.read_bytes() == content

"""A new modality is one module + one configuration block: the guide's ``sensor`` example, written into a copy of the
project, runs through every stage with the real Kedro CLI (sample data, ingestion, tokenization, both pretraining
stages, multitask training, evaluation), with no other file changed."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.project_copy import BIN, TINY_PARAMS, copy_project, deep_update, run_cmd

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding_a_modality.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_a_module_and_a_config_block_run_through_every_stage(tmp_path) -> None:
    root = copy_project(tmp_path / "project")
    (root / "src/omnivec2_pipelines/modalities/sensor.py").write_text(_blocks("python")[0])
    config = _blocks("yaml")[0]
    assert yaml.safe_load(config).keys() == {"sensor"}  # one block
    (root / "conf/base/parameters_modalities/sensor.yml").write_text(config)
    local: dict = {}
    for over in TINY_PARAMS.values():
        deep_update(local, over)
    local["modalities"] = ["time_series", "sensor"]  # enabled in an env, as a user would
    (root / "conf/local/parameters.yml").write_text(yaml.safe_dump(local))

    listed = run_cmd(["kedro", "registry", "describe", "__default__"], root).stdout
    assert "sensor.ingest" in listed and "sensor.tokenize" in listed
    run_cmd(["kedro", "run", "--pipelines", "sample_data"], root)
    assert sorted(p.name for p in (root / "data/01_raw/sensor").iterdir()) == ["test", "train"]
    proc = run_cmd(["kedro", "run"], root)
    assert "Pipeline execution completed successfully" in proc.stdout + proc.stderr

    report = json.loads((root / "data/08_reporting/ingestion/sensor.json").read_text())
    assert report
    metrics = json.loads((root / "data/08_reporting/metrics.json").read_text())
    assert 0.0 <= metrics["sensor.classification.accuracy"] <= 1.0
    assert any(k.startswith("sensor.classification.baseline.") for k in metrics)
    # a typo in the new block is named in full before any node runs
    (root / "conf/local/parameters.yml").write_text(yaml.safe_dump(
        {**local, "sensor": {"tokenization": {"lenght": 64}}}))
    proc = subprocess.run([str(BIN / "kedro"), "run", "--pipelines", "tokenization"], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"})
    assert proc.returncode != 0
    assert "unknown parameter 'sensor.tokenization.lenght'; did you mean 'sensor.tokenization.length'?" in \
        proc.stdout + proc.stderr

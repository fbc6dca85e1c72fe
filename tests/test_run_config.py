"""The real ``kedro`` CLI in a copy of the project: ``--env``, ``--conf-source``, typos, sizes, lists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from omnivec2_pipelines.modalities import get_modality
from tests.project_copy import copy_project, run_cmd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy with an env ``small`` enabling only ``image``, and a little image sample data."""
    root = copy_project(tmp_path_factory.mktemp("run_config") / "project")
    (root / "conf" / "small").mkdir()
    (root / "conf" / "small" / "parameters.yml").write_text("modalities: [image]\n")
    get_modality("image").make_sample_data(root / "data" / "01_raw" / "image", {"per_class": 10, "seed": 0})
    return root


def _fails(args: list[str], root: Path) -> str:
    with pytest.raises(AssertionError) as err:  # run_cmd raises on a non-zero exit code
        run_cmd(args, root)
    return str(err.value)


def _tokenizer(root: Path) -> dict:
    index = root / "data" / "05_model_input" / "tokenized" / "image" / "index.json"
    return json.loads(index.read_text())["meta"]["tokenizer"]


def test_a_typo_stops_the_run_before_the_first_node(project) -> None:
    out = _fails(["kedro", "run", "--env", "small", "--pipelines", "ingestion",
                  "--params", "image.source.val_fracton=0.2"], project)
    assert "unknown parameter 'image.source.val_fracton'; did you mean 'image.source.val_fraction'?" in out
    assert "Running node" not in out

    local = project / "conf" / "local" / "parameters.yml"
    local.write_text(yaml.safe_dump({"modalities": ["image"], "image": {"tokenization": {"sise": [32, 32]}}}))
    try:
        out = _fails(["kedro", "run", "--pipelines", "ingestion"], project)
    finally:
        local.unlink()
    assert "unknown parameter 'image.tokenization.sise'; did you mean 'image.tokenization.size'?" in out
    assert "Running node" not in out


def test_env_and_conf_source_choose_the_modalities(project, tmp_path) -> None:
    tables = project / "data" / "03_primary" / "tables"
    shutil.rmtree(tables, ignore_errors=True)
    run_cmd(["kedro", "run", "--env", "small", "--pipelines", "ingestion"], project)
    assert sorted(p.name for p in tables.iterdir() if not p.name.startswith(".")) == ["image.parquet"]

    conf = shutil.copytree(project / "conf", tmp_path / "my_conf")
    shutil.rmtree(conf / "small")
    params = yaml.safe_load((conf / "base" / "parameters.yml").read_text())
    (conf / "base" / "parameters.yml").write_text(yaml.safe_dump({**params, "modalities": ["image"]}))
    proc = run_cmd(["kedro", "run", "--conf-source", str(conf), "--pipelines", "ingestion"], project)
    assert "Completed 1 out of 1 tasks" in proc.stdout + proc.stderr  # one modality's ingestion node only


def test_sizes_on_the_command_line_and_lists_in_a_config_file(project) -> None:
    run_cmd(["kedro", "run", "--env", "small", "--pipelines", "ingestion,tokenization",
             "--params", "image.tokenization.size=14x14,image.tokenization.patch_size=7x7"], project)
    assert _tokenizer(project)["input_size"] == [14, 14]

    # a list cannot be written in --params: Kedro splits the value on commas
    out = _fails(["kedro", "run", "--env", "small", "--pipelines", "tokenization",
                  "--params", "image.tokenization.size=[28,28]"], project)
    assert "must contain a key and a value separated by `=`" in out
    # ... but it can in a run config file (kedro run --config), nested as in conf/
    config = project / "run_config.yml"
    config.write_text(yaml.safe_dump({"run": {"env": "small", "pipelines": "tokenization", "params": {
        "image": {"tokenization": {"size": [28, 28], "patch_size": [7, 7]}}}}}))
    run_cmd(["kedro", "run", "--config", str(config)], project)
    assert _tokenizer(project)["input_size"] == [28, 28]

"""Parameters are validated up front, naming the key, before any node runs."""

from __future__ import annotations

import copy

import pytest

from omnivec2_pipelines.hooks import validate_run_parameters
from omnivec2_pipelines.pipeline_registry import build_pipelines
from tests.project_copy import copy_project, run_cmd
from tests.tiny import MODALITIES, project_params


@pytest.fixture(scope="module")
def default():
    return build_pipelines(MODALITIES)["__default__"]


def _with(path: str, value):
    params = copy.deepcopy(project_params())
    *keys, last = path.split(".")
    d = params
    for k in keys:
        d = d[k]
    d[last] = value
    return params


def test_project_parameters_are_valid(default, tmp_path) -> None:
    params = project_params()
    for m in MODALITIES:  # the sources must exist for the check to pass
        (tmp_path / m).mkdir()
        params[m]["source"]["path"] = str(tmp_path / m)
    validate_run_parameters(params, default)


@pytest.mark.parametrize("path, value, message", [
    ("image.mask_ratio", 1.5, r"image.mask_ratio must be a number in \(0, 1\)"),
    ("model.width", 130, r"model.width=130 must be a positive multiple of its head count 4"),
    ("multitask.lr", -0.1, r"trainer.lr=-0.1 is out of range"),
    ("pretrain_paired.batch_size", 1, r"pretrain_paired.batch_size must be >= 2"),
    ("multitask.tasks", {"smell": ["classification"]}, r"multitask.tasks names modality 'smell'"),
    ("multitask.stepz", 3, r"unknown parameter 'multitask.stepz'; did you mean 'multitask.steps'\?"),
    ("image.source.val_fracton", 0.2, r"unknown parameter 'image.source.val_fracton'; "
                                      r"did you mean 'image.source.val_fraction'\?"),
    ("multitask.tasks", {"image": ["clasification"]}, r"multitask.tasks.image: unknown task 'clasification'"),
    ("trainer.weight_decay", "lots", r"trainer parameter 'weight_decay' must be float"),
    ("image.source.format", "tiff_stack", r"image.source.format='tiff_stack' is not supported"),
    ("audio.source.path", "/nowhere/audio", r"audio.source.path: /nowhere/audio does not exist"),
    ("text.source.on_error", "ignore", r"text.source.on_error='ignore'"),
    ("image.source.batch_files", 0, r"image.source.batch_files must be a positive int"),
    ("evaluation.split", "holdout", r"evaluation.split must be one of"),
])
def test_bad_parameter_names_the_key(default, path, value, message) -> None:
    params = _with(path, value)
    if not path.endswith(".path"):
        for m in MODALITIES:
            params[m]["source"]["path"] = "."
    with pytest.raises((ValueError, TypeError), match=message):
        validate_run_parameters(params, default)


def test_cli_run_fails_before_the_first_node(tmp_path) -> None:
    root = copy_project(tmp_path / "project")
    with pytest.raises(AssertionError) as err:
        run_cmd(["kedro", "run", "--pipelines", "multitask", "--params", "multitask.lr=-1.0"], root)
    out = str(err.value)
    assert "trainer.lr=-1.0 is out of range" in out
    assert "Running node" not in out and "pretrain_paired_checkpoint" not in out


def test_register_pipelines_follows_the_env_and_conf_source_of_the_run(tmp_path, monkeypatch) -> None:
    """Kedro creates the run's context (``--env``, ``--conf-source``) before it reads the pipelines."""
    from types import SimpleNamespace

    from omnivec2_pipelines.hooks import PipelineConfigHook
    from omnivec2_pipelines.pipeline_registry import project_config_loader, register_pipelines, use_run_config

    monkeypatch.delenv("KEDRO_ENV", raising=False)
    conf = tmp_path / "my_conf"
    for env, mods in (("base", "[image, text]"), ("small", "[graph]")):
        (conf / env).mkdir(parents=True)
        (conf / env / "parameters.yml").write_text(f"modalities: {mods}\n")
    (conf / "local").mkdir()

    def context(env):  # what Kedro's session creates for `kedro run --conf-source my_conf [--env env]`
        return SimpleNamespace(config_loader=project_config_loader(conf, env), env=env)

    try:
        PipelineConfigHook().after_context_created(context("small"))
        assert {n.name for n in register_pipelines()["ingestion"].nodes} == {"graph.ingest"}
        # no env: conf/local, which sets no modalities: base
        PipelineConfigHook().after_context_created(context(None))
        assert {n.name for n in register_pipelines()["ingestion"].nodes} == {"image.ingest", "text.ingest"}
    finally:
        use_run_config(None)

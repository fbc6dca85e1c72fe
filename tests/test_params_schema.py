"""The schema of every parameter block: unknown keys named in full with a suggestion, sizes, tasks, devices."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
from kedro.framework.cli.utils import _split_params
from kedro.io import DataCatalog

from omnivec2_pipelines import params_schema
from omnivec2_pipelines.hooks import check_tasks_in_data, validate_run_parameters
from omnivec2_pipelines.io import ArrayBundleDataset
from omnivec2_pipelines.modalities import get_modality
from omnivec2_pipelines.params_schema import (
    STAGES,
    modality_schema,
    normalize_sizes,
    parse_size,
    probe_stages,
    register_block,
)
from omnivec2_pipelines.pipeline_registry import build_pipelines
from omnivec2_pipelines.settings import CONFIG_LOADER_ARGS, ProjectConfigLoader
from omnivec2_pipelines.shards import save_bundle
from tests.tiny import MODALITIES, PROJECT, project_params, tiny_params


@pytest.fixture(scope="module")
def pipes():
    return build_pipelines(MODALITIES)


@pytest.fixture
def params():
    p = project_params()
    for m in MODALITIES:
        p[m]["source"]["path"] = "."  # exists, so only the key under test can fail
    return p


def _set(params: dict, path: str, value) -> dict:
    params = copy.deepcopy(params)
    *keys, last = path.split(".")
    d = params
    for k in keys:
        d = d.setdefault(k, {})
    d[last] = value
    return params


@pytest.mark.parametrize("path, value, message", [
    ("image.source.val_fracton", 0.2, "unknown parameter 'image.source.val_fracton'; "
                                      "did you mean 'image.source.val_fraction'?"),
    ("image.tokenization.sise", [32, 32], "unknown parameter 'image.tokenization.sise'; "
                                          "did you mean 'image.tokenization.size'?"),
    ("infrared.tokenization.spectra.lenght", 50, "did you mean 'infrared.tokenization.spectra.length'?"),
    ("video.sample_data.fsp", 8, "unknown parameter 'video.sample_data.fsp'; did you mean 'video.sample_data.fps'?"),
    ("imgae.sample_data", {"path": "x"}, "did you mean 'image'?"),
    ("graph.source.split_flie", "s.txt", "did you mean 'graph.source.split_file'?"),
    ("graph.sourse", {}, "unknown parameter 'graph.sourse'; did you mean 'graph.source'?"),
    ("image.tokenizaton", {}, "unknown parameter 'image.tokenizaton'; did you mean 'image.tokenization'?"),
    ("model.widht", 64, "unknown parameter 'model.widht'; did you mean 'model.width'?"),
    ("model.heads", {}, "unknown parameter 'model.heads'"),  # shaped by the data, never a parameter
    ("trainer.lrr", 0.1, "unknown parameter 'trainer.lrr'; did you mean 'trainer.lr'?"),
    ("pretrain_paired.mask_ratio.imgae", 0.5, "did you mean 'pretrain_paired.mask_ratio.image'?"),
    ("multitask.stepz", 3, "unknown parameter 'multitask.stepz'; did you mean 'multitask.steps'?"),
    ("evaluation.splt", "val", "unknown parameter 'evaluation.splt'; did you mean 'evaluation.split'?"),
    ("study.seedz", [0], "unknown parameter 'study.seedz'; did you mean 'study.seeds'?"),
    ("image.tokenization.zzz", 1, r"allowed under 'image.tokenization': \['patch_size', 'size'\] "
                                  r"\(keys declared by image's Modality.tokenization_keys\)"),
    ("image.mask_ration", 0.5, "unknown parameter 'image.mask_ration'; did you mean 'image.mask_ratio'?"),
    ("audio.augment", {"time_mak": 0.1}, "did you mean 'audio.augment.time_mask'?"),
    ("tokenization.image.size", [32, 32], r"parameter block 'tokenization' moved: each modality's entry is now "
                                          r"'<modality>.tokenization'.*'image: \{tokenization: ...\}'"),
    ("sample_data.image.path", "x", "parameter block 'sample_data' moved"),
])
def test_unknown_key_is_named_in_full_with_a_suggestion(pipes, params, path, value, message) -> None:
    # every block is checked, also by a pipeline that does not read it
    for name in ("__default__", "sample_data"):
        with pytest.raises(ValueError, match=message):
            validate_run_parameters(_set(params, path, value), pipes[name])


@pytest.mark.parametrize("value, message", [
    (["pretrain_unimodl"], "evaluation.probe: unknown stage 'pretrain_unimodl'; did you mean 'pretrain_unimodal'?"),
    ({"multitask": True}, r"evaluation.probe must be true, false or a list of stages of \['pretrain_unimodal'"),
])
def test_evaluation_probe_names_stages(pipes, params, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_run_parameters(_set(params, "evaluation.probe", value), pipes["evaluation"])
    assert probe_stages(True) == STAGES and probe_stages(False) == ()
    assert probe_stages(["multitask", "pretrain_unimodal"]) == ("pretrain_unimodal", "multitask")


def test_sweep_keys_are_checked_by_runs_of_the_sweep(pipes, params) -> None:
    with pytest.raises(ValueError, match="unknown parameter 'sweep.n_trails'; did you mean 'sweep.n_trials'?"):
        validate_run_parameters(_set(params, "sweep.n_trails", 3), pipes["sweep"])


def test_every_pipeline_accepts_the_project_parameters(pipes, params) -> None:
    for name, pipe in pipes.items():
        validate_run_parameters(params, pipe)


def test_optional_keys_absent_from_conf_base_are_allowed(pipes, params) -> None:
    for path, value in (("graph.source.split_file", "splits.txt"), ("audio.source.val_folds", [4]),
                        ("point_cloud.source.n_points", 512), ("text.source.test_fraction", 0.3),
                        ("infrared.tokenization.image", {"size": [32, 32], "patch_size": [4, 4]})):
        validate_run_parameters(_set(params, path, value), pipes["__default__"])


def test_declared_keys_cover_every_key_the_modalities_read(raw_root) -> None:
    """Read and tokenize every modality with parameters that record each key asked for."""
    asked: set[str] = set()

    class Recording(dict):
        def __init__(self, d: dict, where: str) -> None:
            super().__init__({k: Recording(v, f"{where}.{k}") if isinstance(v, dict) else v for k, v in d.items()})
            self.where = where

        def get(self, key, *default):
            asked.add(f"{self.where}.{key}")
            return super().get(key, *default)

        def __getitem__(self, key):
            asked.add(f"{self.where}.{key}")
            return super().__getitem__(key)

        def __contains__(self, key) -> bool:
            asked.add(f"{self.where}.{key}")
            return super().__contains__(key)

    params = tiny_params(raw_root)
    for m in MODALITIES:
        mod = get_modality(m)
        table = mod.read(Recording(params[m]["source"], f"{m}.source"))
        mod.tokenize(table, Recording(params[m]["tokenization"], f"{m}.tokenization"))
    for key in sorted(asked):
        *where, last = key.split(".")
        m, block = where[0], where[1]
        schema = modality_schema(get_modality(m), block)
        for part in where[2:]:
            schema = params_schema.as_schema(schema[part])
        assert last in schema, f"{key} is read but not declared"


def test_sizes_may_be_written_hxw() -> None:
    assert parse_size("32x32") == [32, 32] and parse_size(" 2X8x8 ") == [2, 8, 8]
    assert parse_size("32") == "32" and parse_size("data/32x32") == "data/32x32" and parse_size([4, 4]) == [4, 4]
    params = {"image": {"tokenization": {"size": "32x32", "patch_size": "8x8"}, "source": {"path": "data/32x32"}},
              "video": {"tokenization": {"tubelet": "2x8x8"}}, "infrared": {"tokenization": {"image": {"size": "16x16"}}},
              "trainer": {"device": "cpu"}}
    out = normalize_sizes(params)
    assert out["image"]["tokenization"] == {"size": [32, 32], "patch_size": [8, 8]}
    assert out["video"]["tokenization"]["tubelet"] == [2, 8, 8]
    assert out["infrared"]["tokenization"]["image"]["size"] == [16, 16]
    assert out["image"]["source"]["path"] == "data/32x32"  # only declared sizes are parsed


def test_the_project_config_loader_reads_hxw_from_the_command_line() -> None:
    """``--params`` as Kedro's CLI parses it: a list cannot be written there, ``HxW`` can."""
    runtime = _split_params(None, None, "image.tokenization.size=32x32,video.tokenization.tubelet=2x8x8")
    loader = ProjectConfigLoader(str(PROJECT / "conf"), env="base", runtime_params=runtime, **CONFIG_LOADER_ARGS)
    p = loader["parameters"]
    assert p["image"]["tokenization"]["size"] == [32, 32] and p["video"]["tokenization"]["tubelet"] == [2, 8, 8]


def test_a_new_block_registers_its_keys_and_checker(pipes, params) -> None:
    from kedro.pipeline import Pipeline, node

    seen = []
    register_block("probe", ("alpha", "beta"), lambda value, all_params: seen.append((value, len(all_params))))
    try:
        pipe = Pipeline([node(lambda p: p, "params:probe", "probe_out", name="probe")])
        validate_run_parameters({**params, "probe": {"alpha": 1}}, pipe)
        assert seen == [({"alpha": 1}, len(params) + 1)]
        validate_run_parameters({**params, "probe": {"alpha": 1}}, pipes["sample_data"])  # not read: not run
        assert len(seen) == 1
        with pytest.raises(ValueError, match="unknown parameter 'probe.alpah'; did you mean 'probe.alpha'?"):
            validate_run_parameters({**params, "probe": {"alpah": 1}}, pipes["sample_data"])
    finally:
        params_schema.BLOCKS.pop("probe")
    with pytest.raises(ValueError, match="unknown parameter 'probe'"):
        validate_run_parameters({**params, "probe": {"alpha": 1}}, pipes["sample_data"])


def test_the_study_block_is_checked_by_its_own_checker(pipes, params) -> None:
    bad = _set(params, "study.variants.full.stages", ["pretrain_unimodal", "multitask", "oops"])
    validate_run_parameters(bad, pipes["sample_data"])  # keys are fine; values are checked by study runs
    with pytest.raises(ValueError, match="study.variants.full.stages"):
        validate_run_parameters(bad, pipes["study"])


@pytest.mark.parametrize("tasks, message", [
    ({"image": ["clasification"]}, r"multitask.tasks.image: unknown task 'clasification'; "
                                   r"did you mean 'classification'\? image can produce \['classification'\]"),
    ({"time_series": "forcasting"}, r"did you mean 'forecasting'\?"),
    ({"imgae": ["classification"]}, r"multitask.tasks names modality 'imgae', which is not enabled; "
                                    r"did you mean 'image'\?"),
])
def test_unknown_tasks_are_reported_before_the_first_node(pipes, params, tasks, message) -> None:
    with pytest.raises(ValueError, match=message):
        validate_run_parameters(_set(params, "multitask.tasks", tasks), pipes["multitask"])


def test_tasks_are_checked_against_the_tokenized_data_on_disk(pipes, params, tmp_path) -> None:
    task = {"name": "regression", "kind": "regression", "input_key": "x", "target_key": "y.regression",
            "out_dim": 1, "out_shape": [1], "class_names": []}
    save_bundle({"train.x": np.zeros((2, 3), np.float32)}, {"modality": "tabular", "tasks": {"regression": task}},
                tmp_path / "tabular")
    catalog = DataCatalog({"tabular.tokenized": ArrayBundleDataset(str(tmp_path / "tabular"))})
    wrong = _set(params, "multitask.tasks", {"tabular": ["classification"], "image": ["classification"]})
    validate_run_parameters(wrong, pipes["multitask"])  # tabular can produce classification ...
    with pytest.raises(ValueError, match=r"multitask.tasks.tabular: unknown task 'classification'; "
                                         r"tabular has in its tokenized data \['regression'\]"):
        check_tasks_in_data(wrong, pipes["multitask"], catalog)  # ... but this data set is a regression
    check_tasks_in_data(wrong, pipes["__default__"], catalog)  # tokenized again by this run: not read
    check_tasks_in_data(_set(params, "multitask.tasks", {"tabular": "regression"}), pipes["multitask"], catalog)


@pytest.mark.parametrize("path, device, key", [
    ("trainer.device", "cuda", "trainer.device"),
    ("multitask.device", "cuda:0", "multitask.device"),
    ("pretrain_unimodal.device", "cuda", "pretrain_unimodal.device"),
])
def test_cuda_without_cuda_is_reported_before_the_first_node(pipes, params, monkeypatch, path, device, key) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=rf"{key}='{device}' but CUDA is not available"):
        validate_run_parameters(_set(params, path, device), pipes["__default__"])
    validate_run_parameters(_set(params, path, device), pipes["sample_data"])  # no training: no device


def test_checking_a_cpu_run_does_not_import_torch() -> None:
    code = ("import sys\n"
            "from omnivec2_pipelines.hooks import validate_run_parameters\n"
            "from omnivec2_pipelines.pipeline_registry import build_pipelines\n"
            "from tests.tiny import MODALITIES, project_params\n"
            "p = project_params()\n"
            "for m in MODALITIES: p[m]['source']['path'] = '.'\n"
            "validate_run_parameters(p, build_pipelines(MODALITIES)['__default__'])\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_sweep_run_checks_the_stages_its_trials_train(pipes, params, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"sweep.stage='multitsk'; expected one of .*did you mean 'multitask'"):
        validate_run_parameters(_set(params, "sweep.stage", "multitsk"), pipes["sweep"])
    with pytest.raises(ValueError, match="multitask.device='cuda' but CUDA is not available"):
        validate_run_parameters(_set(params, "multitask.device", "cuda"), pipes["sweep"])
    with pytest.raises(ValueError, match="unknown parameter 'multitask.lrr'"):
        validate_run_parameters(_set(params, "multitask.lrr", 0.1), pipes["sweep"])


def test_a_key_the_stages_read_missing_from_a_modality_block_is_named(pipes, params) -> None:
    for path, stage in (("image.mask_ratio", "pretrain_unimodal"), ("audio.augment", "multitask")):
        m, key = path.split(".")
        broken = {**params, m: {k: v for k, v in params[m].items() if k != key}}
        with pytest.raises(ValueError, match=rf"{m}\.{key} is missing: {stage} reads it"):
            validate_run_parameters(broken, pipes[stage])


@pytest.mark.parametrize("value", [-1, 1.5, True, "1000"])
def test_evaluation_bootstrap_must_be_a_count(pipes, params, value) -> None:
    with pytest.raises(ValueError, match=r"evaluation.bootstrap must be an int >= 0 .*got " + repr(value)[:3]):
        validate_run_parameters(_set(params, "evaluation.bootstrap", value), pipes["evaluation"])

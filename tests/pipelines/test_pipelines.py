"""Every registered pipeline on an in-memory catalog, in the order of the default run."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.pipeline_registry import build_pipelines, enabled_modalities, project_config_loader
from omnivec2_pipelines.training.checkpoint import Checkpoint
from tests.tiny import MODALITIES, PROJECT, tiny_params

ORDER = ["ingestion", "tokenization", "pretrain_unimodal", "pretrain_paired", "multitask", "evaluation"]


def _flatten(prefix: str, value, out: dict) -> None:
    out[prefix] = value
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)


class KeptMemoryDataset(MemoryDataset):
    """A memory dataset the runner cannot release, so tests can inspect intermediate outputs."""

    def _release(self) -> None:
        pass


def memory_catalog(params: dict) -> DataCatalog:
    flat: dict = {}
    for k, v in params.items():
        _flatten(f"params:{k}", v, flat)
    return DataCatalog({k: MemoryDataset(v, copy_mode="assign") for k, v in flat.items()})


def run(pipe: Pipeline, catalog: DataCatalog) -> None:
    for name in pipe.all_outputs():
        if name not in catalog:
            catalog[name] = KeptMemoryDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)


def test_registry_structure() -> None:
    pipes = build_pipelines(MODALITIES)
    assert set(pipes) == {"__default__", "sample_data", "sweep", "study", "finetune", "transfer", "predict", "export",
                          *ORDER}
    assert {n.name for n in pipes["ingestion"].nodes} == {f"{m}.ingest" for m in MODALITIES}
    assert {n.name for n in pipes["tokenization"].nodes} == {f"{m}.tokenize" for m in MODALITIES}
    assert pipes["__default__"].nodes == sum((pipes[p] for p in ORDER), Pipeline([])).nodes
    for stage in ("pretrain_unimodal", "pretrain_paired", "multitask"):
        (node,) = pipes[stage].nodes
        assert "gpu" in node.tags and node.outputs == [f"{stage}_checkpoint", f"{stage}_loss_history"]
    assert "pretrain_unimodal_checkpoint" in pipes["pretrain_paired"].inputs()
    assert "pretrain_paired_checkpoint" in pipes["multitask"].inputs()
    # the template is namespaced: the image ingestion node reads params:image.source
    assert "params:image.source" in pipes["ingestion"].inputs()
    assert "params:audio.tokenization" in pipes["tokenization"].inputs()
    assert enabled_modalities(project_config_loader(PROJECT / "conf")) == MODALITIES
    # finetune: the run's multitask checkpoint and tokenized data by default; a new data set gets its own nodes
    assert "multitask_checkpoint" in pipes["finetune"].inputs() and "image.tokenized" in pipes["finetune"].inputs()
    custom = build_pipelines(MODALITIES, {"finetune": {"init": "elsewhere", "modalities": ["image"],
                                                       "data": {"image": {"source": {"path": "x"}}}}})["finetune"]
    assert "multitask_checkpoint" not in custom.inputs() and "image.tokenized" not in custom.inputs()
    assert {"finetune.image.ingest", "finetune.image.tokenize"} <= {n.name for n in custom.nodes}
    assert "params:finetune.data.image" in custom.inputs()


def test_enabled_modalities_is_validated(tmp_path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("modalities: [image, smell]\n")
    with pytest.raises(ValueError, match="'modalities' .* must be a non-empty list"):
        enabled_modalities(project_config_loader(tmp_path, env="base"))


def test_all_pipelines_in_order_on_memory_catalog(raw_root) -> None:
    pipes = build_pipelines(MODALITIES)
    catalog = memory_catalog(tiny_params(raw_root))

    run(pipes["ingestion"], catalog)
    for m in MODALITIES:
        table = catalog.load(f"{m}.table")
        assert isinstance(table, pd.DataFrame) and {"train", "test"} <= set(table["split"])
        assert catalog.load(f"{m}.ingestion_report")["rows"] == len(table)

    run(pipes["tokenization"], catalog)
    bundles = {m: catalog.load(f"{m}.tokenized") for m in MODALITIES}
    assert all(isinstance(b, ArrayBundle) for b in bundles.values())
    shapes = {m: b.get("train", "x").shape for m, b in bundles.items()}
    assert shapes["image"][1:] == (1, 28, 28)  # digits are grayscale, resized to image.tokenization.size
    assert shapes["audio"][1:3] == (1, 32)  # one log-mel channel, n_mels mel bins
    assert shapes["time_series"][1:] == (1, 128)  # GunPoint is univariate, resampled to length
    assert shapes["imu"][1] == 6  # BasicMotions: 3-axis accelerometer + 3-axis gyroscope

    # every stage trains every task kind at least once: 2 tasks per step, so enough steps to cover them
    tasks = [(m, t) for m, b in sorted(bundles.items()) for t in sorted(b.tasks)]
    assert {b.tasks[t].kind for m, b in bundles.items() for t in b.tasks} == {
        "classification", "regression", "dense_regression", "segmentation"}
    catalog["params:multitask"] = MemoryDataset({**catalog.load("params:multitask"), "steps": 2 * len(tasks)},
                                                copy_mode="assign")
    for stage, steps in (("pretrain_unimodal", len(MODALITIES)), ("pretrain_paired", 2),
                         ("multitask", 2 * len(tasks))):
        if stage == "pretrain_unimodal":
            catalog["params:pretrain_unimodal"] = MemoryDataset(
                {**catalog.load("params:pretrain_unimodal"), "steps": steps}, copy_mode="assign")
        run(pipes[stage], catalog)
        ckpt, hist = catalog.load(f"{stage}_checkpoint"), catalog.load(f"{stage}_loss_history")
        assert isinstance(ckpt, Checkpoint) and ckpt.meta["stage"] == stage
        assert len(hist) == steps and hist["loss"].notna().all()
    hist = catalog.load("pretrain_unimodal_loss_history")
    assert set(hist["what"]) == set(MODALITIES)  # round robin: each modality pretrained
    assert sorted(catalog.load("multitask_checkpoint").model.heads) == sorted(f"{m}__{t}" for m, t in tasks)

    run(pipes["evaluation"], catalog)
    metrics = catalog.load("metrics")
    report = catalog.load("evaluation_report")
    assert report.startswith("# OmniVec2 evaluation report") and "| point_cloud | segmentation | miou |" in report
    assert set(catalog.load("loss_curves")) == {"pretrain_unimodal.png", "pretrain_paired.png", "multitask.png"}
    classification = {f"{m}.{t}.png" for m, t in tasks if bundles[m].tasks[t].kind == "classification"}
    assert set(catalog.load("confusion_matrices")) == classification
    for m, t in tasks:
        kind = bundles[m].tasks[t].kind
        main = {"classification": "accuracy", "regression": "mse", "dense_regression": "rmse",
                "segmentation": "miou"}[kind]
        assert f"{m}.{t}.{main}" in metrics and f"{m}.{t}.baseline.{main}" in metrics
        # the linear probe of every stage's checkpoint, for every task kind (dense ones per token / point)
        assert all(f"{m}.{t}.probe.{s}.{main}" in metrics for s in ("pretrain_unimodal", "pretrain_paired",
                                                                    "multitask"))
    assert all(isinstance(v, float) for v in metrics.values())
    assert "## Linear probes" in report and "| depth | depth | rmse |" in report.split("## Linear probes")[1]


def test_sample_data_pipeline_writes_standard_layouts(tmp_path) -> None:
    catalog = memory_catalog(tiny_params(tmp_path))
    run(build_pipelines(MODALITIES)["sample_data"], catalog)
    for m in MODALITIES:
        assert (tmp_path / m).is_dir() and catalog.load(f"{m}.sample_manifest")["modality"] == m
    assert catalog.load("image.sample_manifest")["files"] == len(list((tmp_path / "image").rglob("*.png")))
    assert (tmp_path / "audio" / "meta" / "esc50.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "time_series").iterdir()) == ["GunPoint_TEST.ts", "GunPoint_TRAIN.ts"]


def test_missing_data_path_names_the_key(tmp_path) -> None:
    params = tiny_params(tmp_path / "nowhere")
    catalog = memory_catalog(params)
    with pytest.raises(Exception, match=r"image.source.path: .*nowhere/image does not exist"):
        run(build_pipelines(["image"])["ingestion"], catalog)


def test_empty_class_folder_is_an_error(tmp_path) -> None:
    (tmp_path / "image" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "image" / "test" / "cat").mkdir(parents=True)
    catalog = memory_catalog(tiny_params(tmp_path))
    with pytest.raises(Exception, match="cat"):
        run(build_pipelines(["image"])["ingestion"], catalog)


def test_wrong_parameter_type_names_the_key(raw_root) -> None:
    params = tiny_params(raw_root)
    params["multitask"]["steps"] = "many"
    pipes = build_pipelines(["image", "audio", "time_series"])
    catalog = memory_catalog(params)
    for name in ("ingestion", "tokenization", "pretrain_unimodal", "pretrain_paired"):
        run(pipes[name], catalog)
    with pytest.raises(TypeError, match="trainer parameter 'steps' must be int, got 'many'"):
        run(pipes["multitask"], catalog)


def test_class_missing_from_train_is_an_error(tmp_path) -> None:
    from PIL import Image

    for split, classes in (("train", ["cat"]), ("test", ["cat", "dog"])):
        for c in classes:
            (tmp_path / "image" / split / c).mkdir(parents=True)
            Image.new("L", (8, 8), 128).save(tmp_path / "image" / split / c / "a.png")
    catalog = memory_catalog(tiny_params(tmp_path))
    with pytest.raises(Exception, match=r"image: classes \['dog'\] occur in the test split but not in train"):
        run(build_pipelines(["image"])["ingestion"], catalog)

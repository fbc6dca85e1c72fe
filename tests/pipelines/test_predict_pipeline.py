"""The predict and export pipelines: in memory, and as real `kedro run`s in a copy of the project."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from omnivec2_pipelines.params_schema import check_used_blocks
from omnivec2_pipelines.pipelines import predict
from omnivec2_pipelines.pipelines.nested import run_nested
from tests.inference.tiny_checkpoint import MODALITIES, tiny_data, train_checkpoint
from tests.tiny import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_pipeline")
    tables, bundles = tiny_data(root / "raw")
    return root, tables, bundles, train_checkpoint(bundles, root / "ckpt")


def _block(trained, **over) -> dict:
    root, _, _, ckpt = trained
    return {"modality": "image", "task": "classification", "path": str(root / "raw/image/test"),
            "checkpoint": str(ckpt), "batch_size": 16, "on_error": "raise", "device": "cpu", **over}


def test_predict_in_memory_reports_counts_and_the_accuracy_of_a_labelled_layout(trained) -> None:
    from omnivec2_pipelines.inference import Predictor
    from omnivec2_pipelines.tasks import get_task_kind

    params = {"predict": _block(trained)}
    pipe = predict.create_pipelines(list(MODALITIES), params)["predict"]
    out = run_nested(pipe, params, {})
    table, arrays, report = (out[f"predict.image.classification.{k}"] for k in ("predictions", "arrays", "report"))
    n = len(list((trained[0] / "raw/image/test").rglob("*.png")))
    assert len(table) == n and report["inputs"] == report["read"] == report["predicted"] == n
    assert report["skipped"] == 0 and report["labels"] == "folder names"
    pred = Predictor.from_checkpoint(trained[3], "cpu").predict("image", "classification", params["predict"]["path"])
    spec = pred.spec
    y = np.asarray([spec.class_names.index(i.split("/")[0]) for i in pred.ids])
    assert report["metrics"] == get_task_kind("classification").compute_metrics(spec, y, pred.raw)
    np.testing.assert_allclose(arrays["probabilities"], table[[f"p_{c}" for c in spec.class_names]].to_numpy())
    assert list(arrays["id"]) == table["id"].tolist()


def test_regression_without_labels_reports_no_metrics(trained) -> None:
    params = {"predict": _block(trained, modality="infrared", task="regression",
                                path=str(trained[0] / "raw/infrared/spectra.csv"))}
    out = run_nested(predict.create_pipelines(list(MODALITIES), params)["predict"], params, {})
    report = out["predict.infrared.regression.report"]
    assert report["metrics"] is None and report["predicted"] == len(trained[1]["infrared"])
    assert list(out["predict.infrared.regression.predictions"].columns) == ["id", "value"]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("on_error", "ignore", "predict.on_error must be one of"), ("batch_size", 0, "predict.batch_size"),
    ("modality", "sound", "predict.modality must be one of"), ("bacth_size", 8, "predict.bacth_size")])
def test_bad_predict_parameters_are_named(trained, key, value, message) -> None:
    params = {"predict": _block(trained, **{key: value})}
    with pytest.raises(ValueError, match=message):
        check_used_blocks(params, predict.create_pipelines(list(MODALITIES), params)["predict"])


def test_a_pair_the_checkpoint_lacks_is_named(trained) -> None:
    params = {"predict": _block(trained, task="segmentation")}
    with pytest.raises(ValueError, match=r"predict.modality / predict.task \(image.segmentation\)"):
        run_nested(predict.create_pipelines(list(MODALITIES), params)["predict"], params, {})


@pytest.mark.slow
def test_kedro_run_predict_and_export_in_a_project_copy(trained, tmp_path, monkeypatch) -> None:
    from omnivec2_pipelines.io import ArrayBundleDataset
    from tests.project_copy import copy_project, run_cmd

    monkeypatch.delenv("KEDRO_ENV", raising=False)
    data_root, _, bundles, ckpt = trained
    root = copy_project(tmp_path / "project")
    (root / "conf/small").mkdir()
    (root / "conf/small/parameters.yml").write_text(yaml.safe_dump(
        {"modalities": list(MODALITIES), "model": TINY["model"]}))
    shutil.copytree(ckpt, root / "data/06_models/multitask")  # the default predict.checkpoint
    for m, b in bundles.items():
        ArrayBundleDataset(str(root / f"data/05_model_input/tokenized/{m}")).save(b)
    inputs = tmp_path / "inputs"
    shutil.copytree(data_root / "raw/image/test", inputs)
    (inputs / "3" / "broken.png").write_bytes(b"\x89PNG truncated")
    n_good = len(list(inputs.rglob("*.png"))) - 1

    with pytest.raises(AssertionError, match="broken.png"):
        run_cmd(["kedro", "run", "--env", "small", "--pipelines", "predict", "--params", f"predict.path={inputs}"],
                root)
    run_cmd(["kedro", "run", "--env", "small", "--pipelines", "predict", "--params",
             f"predict.path={inputs},predict.on_error=skip"], root)
    report = json.loads((root / "data/08_reporting/predict/image.classification.json").read_text())
    assert (report["inputs"], report["skipped"], report["predicted"]) == (n_good + 1, 1, n_good)
    assert report["skipped_inputs"][0]["input"] == "3/broken.png" and report["skipped_inputs"][0]["reason"]
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    table = pd.read_parquet(root / "data/07_model_output/predictions/image.classification.parquet")
    assert len(table) == n_good and {"id", "prediction", "probability"} <= set(table.columns)
    with np.load(root / "data/07_model_output/predictions/image.classification.npz") as f:
        assert f["probabilities"].shape[0] == n_good

    run_cmd(["kedro", "run", "--env", "small", "--pipelines", "export"], root)
    exported = json.loads((root / "data/08_reporting/export.json").read_text())
    for fmt in ("torch_export", "onnx"):
        assert sorted(exported["summary"][fmt]["ok"]) == ["image.classification", "infrared.regression"], exported
    for name in ("image.classification", "infrared.regression"):
        for suffix in (".pt2", ".onnx", ".json"):
            assert (root / "data/06_models/export" / f"{name}{suffix}").is_file()


@pytest.mark.parametrize(("over", "message"), [({"formats": ["tflite"]}, "export.formats must be"),
                                              ({"tasks": ["image"]}, "export.tasks must be"),
                                              ({"example": 4}, "unknown parameter 'export.example'")])
def test_bad_export_parameters_are_named(over, message) -> None:
    block = {"checkpoint": "data/06_models/multitask", "tasks": "all", "formats": ["onnx"], "examples": 8,
             "out_dir": "data/06_models/export", **over}
    pipe = predict.create_pipelines(list(MODALITIES))["export"]
    with pytest.raises(ValueError, match=message):
        check_used_blocks({"export": block}, pipe)


def test_the_project_parameters_pass_their_checks() -> None:
    from tests.tiny import project_params

    params = project_params()
    for name in ("predict", "export"):
        check_used_blocks(params, predict.create_pipelines(params["modalities"], params)[name])

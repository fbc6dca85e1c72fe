"""Predictor: raw inputs (files, folders, in-memory objects) → the predictions evaluation makes on the same rows."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from omnivec2_pipelines.formats.base import DataError
from omnivec2_pipelines.modalities.base import TaskSpec
from omnivec2_pipelines.tasks import task_kinds
from omnivec2_pipelines.tasks.base import softmax
from tests.inference.tiny_checkpoint import tiny_data, train_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predictor")
    tables, bundles = tiny_data(root / "raw")
    return root / "raw", tables, bundles, train_checkpoint(bundles, root / "ckpt")


@pytest.fixture(scope="module")
def predictor(trained):
    from omnivec2_pipelines.inference import Predictor

    return Predictor.from_checkpoint(trained[3], device="cpu", batch_size=16)


def _test_files(table: pd.DataFrame) -> list[str]:
    """The test split's files, in the bundle's row order (paths relative to the data root)."""
    return table.loc[table["split"] == "test", "source_file"].tolist()


def test_import_is_lazy() -> None:
    import subprocess

    code = ("import sys, omnivec2_pipelines.inference as i; assert 'torch' not in sys.modules; "
            "i.Predictor; assert 'torch' in sys.modules; assert 'kedro' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_png_files_give_class_names_and_probabilities_equal_to_evaluation(trained, predictor) -> None:
    from omnivec2_pipelines.training.evaluation import predict

    raw, tables, bundles, _ = trained
    files = _test_files(tables["image"])
    pred = predictor.predict("image", "classification", [str(raw / "image" / f) for f in files])
    names = bundles["image"].tasks["classification"].class_names
    assert len(pred) == len(files) and set(pred.prediction) <= set(names)
    assert pred.probabilities.shape == (len(files), len(names))
    np.testing.assert_allclose(pred.probabilities.sum(1), 1.0, atol=1e-5)
    x = bundles["image"].get("test", "x")
    logits = predict(predictor.model, "image", "classification", x, batch_size=16, device="cpu")
    np.testing.assert_array_equal(predictor.read("image", "classification", [str(raw / "image" / f) for f in files])[1],
                                  x)  # preprocess = the pipeline's arrays, bit for bit
    np.testing.assert_allclose(pred.probabilities, softmax(logits), atol=1e-6)
    assert list(pred.prediction) == [names[i] for i in logits.argmax(1)]
    frame = pred.to_frame()
    assert list(frame.columns[:3]) == ["id", "prediction", "probability"]
    assert [f"p_{n}" for n in names] == list(frame.columns[3:])


def test_a_folder_and_in_memory_objects_give_the_same_predictions(trained, predictor, monkeypatch) -> None:
    from omnivec2_pipelines.inference import predictor as module

    raw, tables, _, _ = trained
    folder = predictor.predict("image", "classification", raw / "image" / "test")
    monkeypatch.setattr(module, "READ_CHUNK", 7)  # read in chunks while the model runs: the same result
    threads = torch.get_num_threads()
    chunked = predictor.predict("image", "classification", str(raw / "image" / "test"))
    assert torch.get_num_threads() == threads  # restored
    assert chunked.ids == folder.ids
    np.testing.assert_allclose(chunked.probabilities, folder.probabilities, atol=1e-6)
    files = sorted(p.relative_to(raw / "image" / "test").as_posix() for p in (raw / "image" / "test").rglob("*.png"))
    assert folder.ids == files  # ids: paths relative to the folder
    by_id = dict(zip(folder.ids, folder.probabilities))
    pil = [Image.open(raw / "image" / "test" / f) for f in files[:5]]
    arrays = [np.asarray(im) for im in pil]
    for objects in (pil, arrays):
        got = predictor.predict("image", "classification", objects)
        assert got.ids == [str(i) for i in range(5)]
        np.testing.assert_allclose(got.probabilities, np.stack([by_id[f] for f in files[:5]]), atol=1e-6)


def test_regression_values_are_in_the_targets_units(trained, predictor) -> None:
    from omnivec2_pipelines.training.evaluation import predict

    raw, tables, bundles, _ = trained
    csv = raw / "infrared" / "spectra.csv"
    pred = predictor.predict("infrared", "regression", csv)
    assert pred.probabilities is None and pred.values.shape == (len(tables["infrared"]), 1)
    scale = bundles["infrared"].meta["tasks_scale"]["regression"]
    test_ids = [f"spectra.csv/{s}" for s in tables["infrared"].loc[tables["infrared"]["split"] == "test", "sample_id"]]
    by_id = dict(zip(pred.ids, pred.values[:, 0]))
    out = predict(predictor.model, "infrared", "regression", bundles["infrared"].get("test", "x"), 16, "cpu")
    np.testing.assert_allclose([by_id[i] for i in test_ids], out[:, 0] * scale["std"] + scale["mean"], rtol=1e-5)
    assert 0 < np.mean(pred.values) < 100  # fat %, not z-scores
    frame = pred.to_frame()
    assert list(frame.columns) == ["id", "value"] and len(frame) == len(pred)


def test_bad_inputs_are_skipped_with_reasons_or_raise(trained, predictor, tmp_path, monkeypatch) -> None:
    from omnivec2_pipelines.inference import predictor as module

    raw = trained[0]
    folder = tmp_path / "inputs"
    (folder / "a").mkdir(parents=True)
    for f in sorted((raw / "image" / "test").rglob("*.png"))[:3]:
        (folder / "a" / f.name).write_bytes(f.read_bytes())
    (folder / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="broken.png|notes.txt"):
        predictor.predict("image", "classification", folder)
    for chunk in (1024, 2):
        monkeypatch.setattr(module, "READ_CHUNK", chunk)
        pred = predictor.predict("image", "classification", folder, on_error="skip")
        assert len(pred) == 3 and all(i.startswith("a/") for i in pred.ids)
        assert sorted(name for name, _ in pred.skipped) == ["a/broken.png", "notes.txt"]
        assert all(reason for _, reason in pred.skipped)
    arrays = [np.zeros((28, 28), np.uint8), np.zeros((28, 28), np.float64), np.full((28, 28), 9, np.uint8)]
    pred = predictor.predict("image", "classification", arrays, on_error="skip")  # objects: one at a time
    assert pred.ids == ["0", "2"] and [name for name, _ in pred.skipped] == ["1"]
    with pytest.raises(DataError, match="skipped"):
        predictor.predict("image", "classification", [str(folder / "notes.txt")], on_error="skip")
    with pytest.raises(ValueError, match="on_error"):
        predictor.predict("image", "classification", folder, on_error="ignore")


def test_unknown_pairs_and_checkpoints_are_named(predictor, tmp_path) -> None:
    from omnivec2_pipelines.inference import Predictor

    with pytest.raises(KeyError, match=r"no head for image.segmentation.*image.classification"):
        predictor.predict("image", "segmentation", [])
    with pytest.raises(KeyError, match="no data meta of modality 'audio'"):
        predictor.predict("audio", "classification", [])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Predictor.from_checkpoint(tmp_path / "nowhere")
    assert predictor.tasks() == [("image", "classification"), ("infrared", "regression")]


@pytest.mark.parametrize("kind", sorted(task_kinds()))
def test_every_kind_formats_its_outputs(kind) -> None:
    rng = np.random.default_rng(0)
    k = task_kinds()[kind]
    dense = {"dense_regression": (8, 8), "segmentation": (16,)}.get(kind, ())
    spec = TaskSpec("t", kind, "x", "y.t", 3, dense or (3,), ("a", "b", "c") if k.sample_labels or kind ==
                    "segmentation" else ())
    out = rng.normal(size=(4, *dense, 3) if kind == "segmentation" else (4, *(dense or (3,)))).astype(np.float32)
    outputs = k.format_predictions(spec, out, {"mean": 10.0, "std": 2.0})
    assert all(len(a) == 4 for a in outputs.values())
    if "probabilities" in outputs:
        np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, atol=1e-5)
    else:
        np.testing.assert_allclose(outputs["values"], out.reshape(outputs["values"].shape) * 2.0 + 10.0, rtol=1e-5)
    cols = k.prediction_columns(spec, outputs)
    assert (cols == {}) == k.dense_output
    assert all(len(c) == 4 for c in cols.values())

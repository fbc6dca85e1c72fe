"""Project datasets: round trips, and atomic writes that never leave a partial file."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from kedro_datasets.pandas import CSVDataset

from omnivec2_pipelines.io import ArrayBundleDataset, AtomicDataset
from omnivec2_pipelines.modalities.base import ArrayBundle


def test_atomic_dataset_round_trip_and_describe(tmp_path) -> None:
    ds = AtomicDataset({"type": "pandas.CSVDataset", "save_args": {"index": False}}, str(tmp_path / "t.csv"))
    assert not ds.exists()
    df = pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5]})
    ds.save(df)
    assert ds.exists() and ds.load().equals(df)
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]  # no temporary left behind


def test_crash_during_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "metrics.csv"
    ds = AtomicDataset({"type": "pandas.CSVDataset", "save_args": {"index": False}}, str(path))
    ds.save(pd.DataFrame({"a": [1]}))
    good = path.read_bytes()

    def crash(self, data):  # writes half a file, then dies
        with open(self._filepath, "w") as f:
            f.write("a\\n1")
        raise OSError("disk full")

    monkeypatch.setattr(CSVDataset, "save", crash)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save(pd.DataFrame({"a": [2, 3]}))
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["metrics.csv"]
    path.unlink()
    with pytest.raises(DatasetError):
        ds.save(pd.DataFrame({"a": [2]}))
    assert os.listdir(tmp_path) == []  # nothing rather than a partial file


def test_atomic_dataset_config_errors(tmp_path) -> None:
    with pytest.raises(DatasetError, match="give 'filepath' at the top level"):
        AtomicDataset({"type": "json.JSONDataset", "filepath": "x.json"}, str(tmp_path / "y.json"))


def test_array_bundle_round_trip_and_missing_file(tmp_path) -> None:
    bundle = ArrayBundle({"train.x": np.arange(6, dtype=np.float32).reshape(2, 3),
                          "train.y.classification": np.array([0, 1])}, {"modality": "m", "splits": {"train": 2}})
    ds = ArrayBundleDataset(str(tmp_path / "m"))
    assert not ds.exists()
    ds.save(bundle)
    assert ds.exists()
    back = ds.load()
    assert back.meta == bundle.meta and np.array_equal(np.asarray(back.get("train", "x")), bundle.get("train", "x"))
    with pytest.raises(DatasetError, match="run the tokenization pipeline first"):
        ArrayBundleDataset(str(tmp_path / "none")).load()
    with pytest.raises(DatasetError, match="shard_mb must be a positive number"):
        ArrayBundleDataset(str(tmp_path / "m"), shard_mb=0)


def test_atomic_dataset_keeps_kedro_viz_previews(tmp_path) -> None:
    import inspect

    ds = AtomicDataset({"type": "json.JSONDataset"}, str(tmp_path / "metrics.json"))
    ds.save({"image.classification.accuracy": 0.9})
    ann = inspect.signature(ds.preview).return_annotation  # what kedro-viz reads as the preview type
    assert getattr(ann, "__name__", str(ann)) == "JSONPreview"
    assert json.loads(ds.preview()) == {"image.classification.accuracy": 0.9}

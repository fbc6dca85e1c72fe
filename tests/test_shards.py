"""Sharded bundles: round trips, lazy row reads, pickling for workers, bad directories."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from omnivec2_pipelines.shards import ShardedArray, load_bundle, save_bundle


def _arrays(n: int = 50) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"train.x": rng.normal(size=(n, 3, 4)).astype(np.float32), "train.y.classification": np.arange(n),
            "train.mask": rng.random((n, 5)) > 0.5, "test.x": rng.normal(size=(7, 3, 4)).astype(np.float32),
            "test.y.classification": np.arange(7), "stats": np.array(2.5)}


def test_round_trip_in_several_shards(tmp_path) -> None:
    arrays = _arrays()
    save_bundle(arrays, {"modality": "m"}, tmp_path / "b", shard_mb=200 / 2**20)  # ~200 bytes per shard
    back, meta = load_bundle(tmp_path / "b")
    assert meta == {"modality": "m"} and set(back) == set(arrays)
    x = back["train.x"]
    assert isinstance(x, ShardedArray) and len(x.parts) > 5 and x.shape == (50, 3, 4) and x.dtype == np.float32
    for name, a in arrays.items():
        assert np.array_equal(np.asarray(back[name]), a), name
    idx = np.array([49, 0, 17, 17, -1])
    assert np.array_equal(x[idx], arrays["train.x"][idx])
    assert np.array_equal(x[3:40:7], arrays["train.x"][3:40:7]) and np.array_equal(x[5], arrays["train.x"][5])
    assert np.array_equal(x[2:4, 1], arrays["train.x"][2:4, 1])
    index = json.loads((tmp_path / "b" / "index.json").read_text())
    # arrays of one split with the same rows are cut at the same rows: a shard holds whole samples
    assert [p["rows"] for p in index["arrays"]["train.x"]["parts"]] == \
           [p["rows"] for p in index["arrays"]["train.y.classification"]["parts"]]
    with pytest.raises(IndexError, match="train.x: row index out of range for 50 rows"):
        x[np.array([50])]


def test_only_the_rows_asked_for_are_mapped(tmp_path) -> None:
    save_bundle(_arrays(), {}, tmp_path / "b", shard_mb=200 / 2**20)
    x = load_bundle(tmp_path / "b")[0]["train.x"]
    x[np.array([0, 1])]
    assert sum(m is not None for m in x._maps) == 1  # the other shards were never opened


def test_pickles_as_file_locations(tmp_path) -> None:
    arrays = _arrays(2000)
    save_bundle(arrays, {}, tmp_path / "b", shard_mb=0.01)
    x = load_bundle(tmp_path / "b")[0]["train.x"]
    x[np.arange(100)]  # maps some shards
    blob = pickle.dumps(x)
    assert len(blob) < arrays["train.x"].nbytes / 4  # the rows stay on disk
    assert np.array_equal(pickle.loads(blob)[np.arange(10)], arrays["train.x"][:10])


def test_empty_split_and_digest(tmp_path) -> None:
    arrays = {"train.x": np.zeros((0, 2), np.float32), "test.x": np.ones((3, 2), np.float32)}
    save_bundle(arrays, {}, tmp_path / "a")
    save_bundle({**arrays, "test.x": np.full((3, 2), 2, np.float32)}, {}, tmp_path / "b")
    a, b = load_bundle(tmp_path / "a")[0], load_bundle(tmp_path / "b")[0]
    assert a["train.x"].shape == (0, 2) and np.asarray(a["train.x"]).shape == (0, 2)
    assert a["test.x"].digest != b["test.x"].digest and a["train.x"].digest == b["train.x"].digest


def test_bad_directories_and_a_failed_write(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="not a sharded bundle"):
        load_bundle(tmp_path)
    save_bundle(_arrays(), {"v": 1}, tmp_path / "b", shard_mb=200 / 2**20)
    (tmp_path / "b" / "part-002-00001.safetensors").unlink()
    with pytest.raises(ValueError, match="shard part-002-00001.safetensors of array .* is missing"):
        load_bundle(tmp_path / "b")
    save_bundle(_arrays(), {"v": 1}, tmp_path / "c")
    import safetensors.numpy

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_bundle(_arrays(), {"v": 2}, tmp_path / "c")
    assert load_bundle(tmp_path / "c")[1] == {"v": 1}  # the previous bundle is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]  # no temporary left behind
    with pytest.raises(ValueError, match="shard_mb must be > 0"):
        save_bundle(_arrays(), {}, tmp_path / "d", shard_mb=0)

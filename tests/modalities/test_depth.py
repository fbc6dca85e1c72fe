"""Tests of the depth modality (paired RGB/depth reader, stereo_motorcycle tiles, dense targets)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.depth import DepthModality

DEP = DepthModality()
TOK = {"size": [8, 8], "patch_size": [4, 4]}


def _rgb(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _pair(root: Path, split: str, sid: str, h: int, w: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Write one pair; returns the depth in metres the reader should produce."""
    _rgb(root / split / "rgb" / f"{sid}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (root / split / "depth").mkdir(parents=True, exist_ok=True)
    if kind == "png16":
        mm = rng.integers(500, 10000, (h, w)).astype(np.uint16)
        Image.fromarray(mm).save(root / split / "depth" / f"{sid}.png")
        return mm.astype(np.float32) * np.float32(0.001)
    if kind == "png8":
        v = rng.integers(0, 256, (h, w)).astype(np.uint8)
        Image.fromarray(v).save(root / split / "depth" / f"{sid}.png")
        return v.astype(np.float32)
    d = rng.uniform(0.5, 8.0, (h, w, 1) if kind == "npy3" else (h, w)).astype(np.float64)
    np.save(root / split / "depth" / f"{sid}.npy", d)
    return d.reshape(h, w).astype(np.float32)


def _tree(root: Path, with_val: bool = False) -> tuple[Path, dict[str, np.ndarray]]:
    """Pairs of unequal sizes, mixing 16-bit PNG, 8-bit PNG and float .npy depth maps."""
    rng = np.random.default_rng(1)
    kinds = ["png16", "png8", "npy", "npy3"]
    truth = {}
    for split, n in (("train", 6), ("test", 2)) + ((("val", 2),) if with_val else ()):
        for i in range(n):
            h, w = 6 + i, 10 - i
            truth[f"{split}/s{i}"] = _pair(root, split, f"s{i}", h, w, kinds[i % 4], rng)
    return root, truth


def _read(root: Path, **kw) -> pd.DataFrame:
    return DEP.read({"format": "paired", "path": str(root), **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_data_real_tiles_no_leakage(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    params = {"tile": 32, "cell": 64, "stride": 16, "val_fraction": 0.1, "test_fraction": 0.2, "seed": 0}
    man = DEP.make_sample_data(a, params)
    assert "real" in man["source"] and "stereo_motorcycle" in man["source"] and man["classes"] == []
    assert man["tiles"] == {"train": 486, "val": 72, "test": 135} and man["files"] == 2 * 693
    files = _files(a)
    assert len(files) == man["files"]
    assert sorted(p.name for p in a.iterdir()) == ["test", "train", "val"]
    assert all(sorted(p.name for p in (a / s).iterdir()) == ["depth", "rgb"] for s in ("train", "val", "test"))
    cells: dict[tuple[int, int], set[str]] = {}
    for k in files:
        split, kind, name = k.split("/")
        y, x = (int(v) for v in re.fullmatch(r"y(\d+)_x(\d+)\.(png|npy)", name).groups()[:2])
        assert (kind == "rgb") == name.endswith(".png")
        cells.setdefault((y // 64, x // 64), set()).add(split)
        assert y // 64 == (y + 31) // 64 and x // 64 == (x + 31) // 64  # tile stays in its block
    assert all(len(s) == 1 for s in cells.values())  # every block belongs to one split: no shared pixels
    d = np.load(a / "test" / "depth" / next(iter(sorted(p.name for p in (a / "test/depth").iterdir()))))
    assert d.shape == (32, 32) and d.dtype == np.float32 and np.isfinite(d).all() and d.min() > 0
    (b / "stale").mkdir(parents=True)
    DEP.make_sample_data(b, params)
    assert _files(b) == files
    assert not list(tmp_path.glob(".*"))


def test_read_tree_mixed_depth_formats(tmp_path: Path) -> None:
    root, truth = _tree(tmp_path / "dep")
    t = _read(root, val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert t["sample_id"].is_unique and len(t) == 8 and set(t["split"]) == {"train", "test"}
    assert (t["label"] == -1).all() and (t["label_name"] == "").all()
    for row in t.itertuples(index=False):
        h, w = truth[row.sample_id].shape
        assert (row.height, row.width) == (h, w)
        np.testing.assert_allclose(np.asarray(row.depth).reshape(h, w), truth[row.sample_id], rtol=1e-6)
        with Image.open(root / row.source_file) as img:
            np.testing.assert_array_equal(np.asarray(row.rgb).reshape(h, w, 3), np.asarray(img))
    row = t[t["sample_id"] == "train/s2"].iloc[0]
    assert (row["source_file"], row["depth_file"]) == ("train/rgb/s2.png", "train/depth/s2.npy")
    scaled = _read(root, val_fraction=0.0, depth_scale_uint16=1.0)  # 16-bit values kept as stored
    r0 = scaled[scaled["sample_id"] == "train/s0"].iloc[0]
    np.testing.assert_allclose(np.asarray(r0["depth"]), truth["train/s0"].reshape(-1) * 1000, rtol=1e-5)
    with_val = _read(root, val_fraction=0.5, seed=0)
    assert (with_val["split"] == "val").sum() == 3
    assert _read(root, val_fraction=0.5, seed=0)["split"].tolist() == with_val["split"].tolist()
    explicit = _read(_tree(tmp_path / "v", with_val=True)[0])
    assert (explicit["split"] == "val").sum() == 2 and explicit["sample_id"].str.startswith("val/").sum() == 2


def test_user_path_round_trip_and_tokenize(tmp_path: Path) -> None:
    root, truth = _tree(tmp_path / "dep")
    table = _read(root, val_fraction=0.0)
    table.to_parquet(tmp_path / "t.parquet")
    b = DEP.tokenize(pd.read_parquet(tmp_path / "t.parquet"), TOK)
    ref = DEP.tokenize(table, TOK)
    for k in ref.arrays:
        np.testing.assert_array_equal(b.arrays[k], ref.arrays[k])
    x, y = b.get("train", "x"), b.get("train", "y.depth")
    assert x.shape == (6, 3, 8, 8) and x.dtype == np.float32
    assert y.shape == (6, 1, 8, 8) and y.dtype == np.float32
    assert b.get("test", "x").shape == (2, 3, 8, 8) and b.get("test", "y.depth").shape == (2, 1, 8, 8)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    np.testing.assert_allclose([y.mean(), y.std()], [0.0, 1.0], atol=1e-4)
    m = b.meta
    assert m["modality"] == "depth" and m["pretrain_input_key"] == "x" and m["splits"] == {"train": 6, "test": 2}
    assert m["tokenizer"] == {"kind": "patch2d", "in_channels": 3, "input_size": [8, 8], "patch_size": [4, 4]}
    task = b.tasks["depth"]
    assert (task.kind, task.input_key, task.target_key, task.out_dim, task.out_shape) == (
        "dense_regression", "x", "y.depth", 1, (1, 8, 8))
    scale = m["tasks_scale"]["depth"]
    # test targets use the train mean/std: undo them and compare with a direct resize of the raw depth
    test_rows = table[table["split"] == "test"].reset_index(drop=True)
    r = test_rows.iloc[1]
    raw = Image.fromarray(truth[r["sample_id"]]).resize((8, 8), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(b.get("test", "y.depth")[1, 0] * scale["std"] + scale["mean"], np.asarray(raw),
                               rtol=1e-4, atol=1e-4)
    img = Image.fromarray(np.asarray(r["rgb"], dtype=np.uint8).reshape(r["height"], r["width"], 3))
    raw_x = np.asarray(img.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32).transpose(2, 0, 1) / 255
    norm = m["normalization"]
    expect = (raw_x - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]
    np.testing.assert_allclose(b.get("test", "x")[1], expect, atol=1e-5)
    assert DEP.baseline_features(x, m).shape == (6, 3 * 64)


def test_tokenize_bad_params(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "dep")[0], val_fraction=0.0)
    with pytest.raises(DataError, match=r"depth\.tokenization\.patch_size"):
        DEP.tokenize(table, {"size": [8, 8], "patch_size": [3, 4]})
    with pytest.raises(DataError, match=r"depth\.tokenization\.size"):
        DEP.tokenize(table, {"size": [8, -8], "patch_size": [4, 4]})
    with pytest.raises(DataError, match="train"):
        DEP.tokenize(table[table["split"] == "test"], TOK)
    bad = table.copy()
    bad.loc[0, "height"] = 99
    with pytest.raises(DataError, match=r"train/rgb/s0\.png: rgb has"):
        DEP.tokenize(bad, TOK)


@pytest.mark.parametrize("case", ["no_path", "format", "no_test", "empty_folder", "no_depth_dir",
                                  "rgb_without_depth", "depth_without_rgb", "size_mismatch",
                                  "corrupt_png", "truncated_npy", "gray_rgb", "rgb_depth_png",
                                  "npy_shape", "nan_depth", "negative_depth", "two_depths", "stray_file"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root, _ = _tree(tmp_path / "dep")
    src = {"format": "paired", "path": str(root)}
    rng = np.random.default_rng(5)
    bad_file, replaced = None, False
    if case == "no_path":
        src["path"], expect = str(tmp_path / "nowhere"), r"nowhere does not exist"
    elif case == "format":
        src["format"], expect = "nyu_mat", r"format='nyu_mat' is not supported"
    elif case == "no_test":
        import shutil

        shutil.rmtree(root / "test")
        expect = r"missing split folder\(s\) \['test'\]"
    elif case == "empty_folder":
        (root / "val" / "rgb").mkdir(parents=True)
        (root / "val" / "depth").mkdir()
        expect = r"dep/val: split has no files"
    elif case == "no_depth_dir":
        (root / "val" / "rgb").mkdir(parents=True)
        expect = r"val/depth: folder missing"
    elif case == "rgb_without_depth":
        bad_file = root / "train/rgb/extra.png"
        _rgb(bad_file, rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        expect = r"rgb/extra\.png: RGB image has no depth map"
    elif case == "depth_without_rgb":
        bad_file = root / "train/depth/lonely.npy"
        np.save(bad_file, np.ones((4, 4), np.float32))
        expect = r"depth/lonely\.npy: depth map has no RGB image"
    elif case == "size_mismatch":
        (root / "train/depth/s2.npy").unlink()
        np.save(root / "train/depth/s2.npy", np.ones((3, 3), np.float32))
        bad_file, replaced = root / "train/rgb/s2.png", True
        expect = r"depth/s2\.npy: depth map is 3x3 but s2\.png is 8x8"
    elif case == "corrupt_png":
        bad_file, replaced = root / "train/rgb/s1.png", True
        data = bad_file.read_bytes()
        bad_file.write_bytes(data[: len(data) // 2])
        expect = r"rgb/s1\.png: unreadable or corrupt image"
    elif case == "truncated_npy":
        p = root / "train/depth/s2.npy"
        p.write_bytes(p.read_bytes()[:100])
        bad_file, replaced = root / "train/rgb/s2.png", True
        expect = r"depth/s2\.npy: unreadable or corrupt \.npy"
    elif case == "gray_rgb":
        bad_file, replaced = root / "train/rgb/s3.png", True
        Image.fromarray(rng.integers(0, 256, (9, 7), dtype=np.uint8)).save(bad_file)
        expect = r"rgb/s3\.png: RGB image has mode 'L'"
    elif case == "rgb_depth_png":
        bad_file, replaced = root / "train/rgb/s1.png", True
        Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).save(root / "train/depth/s1.png")
        expect = r"depth/s1\.png: depth PNG has mode 'RGB'"
    elif case == "npy_shape":
        np.save(root / "train/depth/s2.npy", np.ones((8, 8, 2), np.float32))
        bad_file, replaced = root / "train/rgb/s2.png", True
        expect = r"depth/s2\.npy: depth array has shape \(8, 8, 2\)"
    elif case == "nan_depth":
        d = np.ones((8, 8), np.float32)
        d[2, 3] = np.nan
        np.save(root / "train/depth/s2.npy", d)
        bad_file, replaced = root / "train/rgb/s2.png", True
        expect = r"depth/s2\.npy: depth map has 1 NaN/inf"
    elif case == "negative_depth":
        np.save(root / "train/depth/s2.npy", -np.ones((8, 8), np.float32))
        bad_file, replaced = root / "train/rgb/s2.png", True
        expect = r"depth/s2\.npy: depth map has negative values"
    elif case == "two_depths":
        np.save(root / "train/depth/s0.npy", np.ones((6, 10), np.float32))
        bad_file, replaced = root / "train/depth/s0.npy", True
        expect = r"depth/s0\.npy: several depth files for id 's0'"
    else:  # stray_file
        (root / "train" / "notes.txt").write_text("hi")
        expect = r"train/notes\.txt: unexpected entry"
    with pytest.raises(DataError, match=expect):
        DEP.read(src)
    if bad_file is not None:  # per-pair problems are skipped and reported with on_error: skip
        t = DEP.read({**src, "on_error": "skip", "val_fraction": 0.0})
        assert len(t) == 8 - replaced
        rep = t.attrs["ingestion_errors"]
        assert rep["skipped"] == 1 and sum(rep["by_reason"].values()) == 1
        assert re.search(expect, rep["files"][0]["message"])
        reason = {"rgb_without_depth": "missing", "depth_without_rgb": "missing", "size_mismatch": "shape",
                  "corrupt_png": "corrupt", "truncated_npy": "corrupt", "gray_rgb": "channels",
                  "rgb_depth_png": "channels", "npy_shape": "shape", "nan_depth": "nan",
                  "negative_depth": "invalid", "two_depths": "invalid"}[case]
        assert rep["by_reason"] == {reason: 1}


def test_all_pairs_skipped_still_raises(tmp_path: Path) -> None:
    root = tmp_path / "dep"
    for split in ("train", "test"):
        (root / split / "rgb").mkdir(parents=True)
        (root / split / "depth").mkdir()
        (root / split / "rgb" / "a.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="no readable rgb/depth pairs"):
        DEP.read({"format": "paired", "path": str(root), "on_error": "skip"})
    with pytest.raises(DataError, match=r"depth\.source\.depth_scale_uint16"):
        DEP.read({"format": "paired", "path": str(root), "depth_scale_uint16": 0})


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, columns, dtypes, index, rgb/depth arrays and error report."""
    pd.testing.assert_frame_equal(a.drop(columns=["rgb", "depth"]), b.drop(columns=["rgb", "depth"]),
                                  check_index_type=True)
    assert isinstance(a.index, pd.RangeIndex) and isinstance(b.index, pd.RangeIndex)
    for col in ("rgb", "depth"):
        for x, y in zip(a[col], b[col]):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
    assert a.attrs == b.attrs


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_read_chunks_are_bounded_and_concatenate_to_read(tmp_path: Path, on_error: str) -> None:
    root, _ = _tree(tmp_path / "d")
    if on_error == "skip":
        (root / "train" / "depth" / "s1.png").write_bytes(b"garbage" * 10)
        (root / "test" / "rgb" / "s1.png").write_bytes(b"garbage" * 10)
    src = {"format": "paired", "path": str(root), "on_error": on_error, "val_fraction": 0.5, "seed": 3}
    whole = DEP.read(src)
    for batch in (1, 3, 5, 100):
        chunks = list(DEP.read_chunks(src, batch))
        assert [len(c) for c in chunks[:-1]] == [batch] * (len(chunks) - 1) and 1 <= len(chunks[-1]) <= batch
        assert all(c.attrs["ingestion_errors"] == whole.attrs["ingestion_errors"] for c in chunks)
        table = pd.concat(chunks)
        table.attrs = chunks[-1].attrs
        _assert_same_table(table, whole)
        _assert_same_table(DEP.read({**src, "batch_files": batch}), whole)
    n_skipped = 2 if on_error == "skip" else 0
    assert whole.attrs["ingestion_errors"]["skipped"] == n_skipped and len(whole) == 8 - n_skipped
    # the random val split is computed once, over all chunks: half of the train pairs
    assert (whole["split"] == "val").sum() == (2 if on_error == "skip" else 3)


def test_read_chunks_raises_before_its_last_chunk(tmp_path: Path) -> None:
    """A bad pair in a later batch raises before the generator is exhausted (no complete table)."""
    root, _ = _tree(tmp_path / "d")
    (root / "train" / "rgb" / "s4.png").write_bytes(b"garbage" * 10)  # 5th of 8 pairs: second batch of three
    chunks = DEP.read_chunks({"format": "paired", "path": str(root)}, 3)
    assert len(next(chunks)) == 3
    with pytest.raises(DataError, match=r"s4\.png: unreadable or corrupt image"):
        list(chunks)


def test_read_chunks_bad_pair_wins_over_a_data_set_error(tmp_path: Path) -> None:
    """With on_error: raise, a bad pair raises its own error even when a layout or val error follows."""
    root, _ = _tree(tmp_path / "d")
    (root / "train" / "rgb" / "s5.png").write_bytes(b"garbage" * 10)
    src = {"format": "paired", "path": str(root)}
    with pytest.raises(DataError, match=r"s5\.png: unreadable or corrupt image"):
        list(DEP.read_chunks({**src, "val_fraction": 1.5}, 2))
    (root / "test" / "notes.txt").write_text("stray")
    with pytest.raises(DataError, match=r"s5\.png: unreadable or corrupt image"):
        list(DEP.read_chunks(src, 2))
    with pytest.raises(DataError, match=r"notes\.txt: unexpected entry in split folder"):
        list(DEP.read_chunks({**src, "on_error": "skip"}, 2))


@pytest.mark.parametrize("value", [0, -3, 2.5, "512", True, None])
def test_bad_batch_files_names_the_parameter(tmp_path: Path, value) -> None:
    src = {"format": "paired", "path": str(_tree(tmp_path / "d")[0])}
    with pytest.raises(DataError, match=r"depth\.source\.batch_files must be a positive int .*got"):
        list(DEP.read_chunks(src, value))
    with pytest.raises(DataError, match=r"depth\.source\.batch_files must be a positive int"):
        DEP.read({**src, "batch_files": value})

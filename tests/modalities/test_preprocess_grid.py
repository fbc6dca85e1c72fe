"""``preprocess``/``read_inputs`` of the grid-like modalities (image, xray, infrared, depth, video,
hyperspectral): the fitted tokenization of a bundle applied to new rows equals the tokenized arrays bit for
bit, raw files and in-memory objects decode as ingestion decodes them, and bad inputs raise naming them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omnivec2_pipelines.modalities import DataError, get_modality
from tests.tiny import tiny_params, tiny_tables_and_bundles

MODALITIES = ("image", "xray", "infrared", "depth", "video", "hyperspectral")
#: Columns preprocess must not need.
LABEL_COLUMNS = ["label", "label_name", "split"]


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory) -> dict:
    """Tiny embedded data of the six modalities: raw root, params, canonical tables and bundles."""
    root = tmp_path_factory.mktemp("grid_raw")
    params = tiny_params(root)
    tables, bundles = tiny_tables_and_bundles(root, MODALITIES, params)
    return {"root": root, "params": params, "tables": tables, "bundles": bundles}


def _input_keys(bundle) -> set[str]:
    return {t.input_key for t in bundle.tasks.values()}


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def _test_rows(data: dict, m: str) -> pd.DataFrame:
    table = data["tables"][m]
    return table[table["split"] == "test"]


@pytest.mark.parametrize("m", MODALITIES)
def test_preprocess_equals_tokenized_splits(grid_data: dict, m: str) -> None:
    bundle, table = grid_data["bundles"][m], grid_data["tables"][m]
    assert _input_keys(bundle) == {"x"}
    for split in bundle.meta["splits"]:
        rows = table[table["split"] == split].drop(columns=LABEL_COLUMNS)
        out = get_modality(m).preprocess(rows, bundle.meta)
        assert set(out) == {"x"}
        _assert_same(out["x"], bundle.get(split, "x"))


@pytest.mark.parametrize("m", ["image", "xray", "video"])
def test_read_inputs_of_class_folder_files(grid_data: dict, m: str) -> None:
    """The raw test folder of an ImageFolder/clip tree: ids relative to it, sorted, as ingestion decodes it."""
    rows = get_modality(m).read_inputs(grid_data["root"] / m / "test")
    assert list(rows["id"]) == sorted(rows["id"], key=lambda i: Path(i).parts)
    test = _test_rows(grid_data, m)
    order = np.argsort(test["source_file"].to_numpy())
    assert ["test/" + i for i in rows["id"]] == list(test["source_file"].to_numpy()[order])
    out = get_modality(m).preprocess(rows, grid_data["bundles"][m].meta)
    _assert_same(out["x"], grid_data["bundles"][m].get("test", "x")[order])


def test_read_inputs_depth_rgb_folder(grid_data: dict) -> None:
    rows = get_modality("depth").read_inputs(grid_data["root"] / "depth" / "test" / "rgb")
    test = _test_rows(grid_data, "depth")
    assert ["test/rgb/" + i for i in rows["id"]] == list(test["source_file"])  # listing order = reading order
    out = get_modality("depth").preprocess(rows, grid_data["bundles"]["depth"].meta)
    _assert_same(out["x"], grid_data["bundles"]["depth"].get("test", "x"))


def test_read_inputs_spectra_csv(grid_data: dict) -> None:
    path = grid_data["root"] / "infrared" / "spectra.csv"
    rows = get_modality("infrared").read_inputs(path)  # every row of the file, target/split ignored
    assert len(rows) == len(grid_data["tables"]["infrared"])
    assert list(rows["id"]) == ["spectra.csv/" + s for s in grid_data["tables"]["infrared"]["sample_id"]]
    test = _test_rows(grid_data, "infrared")
    picked = rows.set_index("sample_id").loc[test["sample_id"]].reset_index()
    out = get_modality("infrared").preprocess(picked, grid_data["bundles"]["infrared"].meta)
    _assert_same(out["x"], grid_data["bundles"]["infrared"].get("test", "x"))


def test_read_inputs_hyperspectral_cube(grid_data: dict) -> None:
    """Every pixel of the cube file (row-major), picked by sample id, equals the test split."""
    root = grid_data["root"] / "hyperspectral"
    rows = get_modality("hyperspectral").read_inputs(root / "cube.mat")
    bundle = grid_data["bundles"]["hyperspectral"]
    assert rows["id"].iloc[1] == "cube.mat/r0000_c0001"
    test = _test_rows(grid_data, "hyperspectral")
    picked = rows.set_index("sample_id").loc[test["sample_id"]].reset_index()
    _assert_same(get_modality("hyperspectral").preprocess(picked, bundle.meta)["x"], bundle.get("test", "x"))


def test_in_memory_images_and_frames(grid_data: dict) -> None:
    for m in ("image", "xray"):
        test = _test_rows(grid_data, m)
        files = [grid_data["root"] / m / f for f in test["source_file"]]
        arrays = [np.asarray(Image.open(f)) for f in files if f.suffix == ".png"][:3]
        objects = [arrays[0], Image.fromarray(arrays[1]), arrays[2][:, :, None]]
        rows = get_modality(m).read_inputs(objects)
        assert list(rows["id"]) == ["0", "1", "2"]
        from_files = get_modality(m).read_inputs([f for f in files if f.suffix == ".png"][:3])
        meta = grid_data["bundles"][m].meta
        _assert_same(get_modality(m).preprocess(rows, meta)["x"], get_modality(m).preprocess(from_files, meta)["x"])


def test_in_memory_xray_high_depth_like_a_16bit_file(grid_data: dict, tmp_path: Path) -> None:
    """A uint16 array decodes as a 16-bit PNG file does (own min/max to 0..255)."""
    arr = (np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * 97) % 4096
    Image.fromarray(arr).save(tmp_path / "a.png")
    xray = get_modality("xray")
    mem, disk = xray.read_inputs(arr), xray.read_inputs(tmp_path / "a.png")
    assert disk["id"].tolist() == ["a.png"] and mem["id"].tolist() == ["0"]
    assert np.array_equal(mem["pixels"].iloc[0], disk["pixels"].iloc[0])


def test_in_memory_spectra_depth_video_cube(grid_data: dict) -> None:
    bundles, root = grid_data["bundles"], grid_data["root"]
    test = _test_rows(grid_data, "infrared")
    rows = get_modality("infrared").read_inputs(list(test["values"]))  # 1-D arrays, no grid
    _assert_same(get_modality("infrared").preprocess(rows, bundles["infrared"].meta)["x"],
                 bundles["infrared"].get("test", "x"))

    test = _test_rows(grid_data, "depth")
    rgb = [np.asarray(Image.open(root / "depth" / f)) for f in test["source_file"]]
    rows = get_modality("depth").read_inputs(rgb)
    _assert_same(get_modality("depth").preprocess(rows, bundles["depth"].meta)["x"], bundles["depth"].get("test", "x"))

    test = _test_rows(grid_data, "video")
    clips = [np.asarray(r.frames).reshape(r.n_frames, r.height, r.width, r.channels)
             for r in test.itertuples()]
    rows = get_modality("video").read_inputs(clips)
    assert (rows["fps"] == 0.0).all()
    _assert_same(get_modality("video").preprocess(rows, bundles["video"].meta)["x"], bundles["video"].get("test", "x"))

    from scipy.io import loadmat

    cube = loadmat(str(root / "hyperspectral" / "cube.mat"))
    cube = next(v for k, v in cube.items() if not k.startswith("__"))
    test = _test_rows(grid_data, "hyperspectral")
    pixels = list(zip(test["row"].tolist(), test["col"].tolist()))
    rows = get_modality("hyperspectral").read_inputs({"cube": cube, "pixels": pixels, "patch": 7})  # larger: cropped
    assert list(rows["sample_id"]) == list(test["sample_id"])
    _assert_same(get_modality("hyperspectral").preprocess(rows, bundles["hyperspectral"].meta)["x"],
                 bundles["hyperspectral"].get("test", "x"))


def _frames_tree(root: Path) -> Path:
    """Thermal frames: 8-bit and 16-bit grayscale PNGs of two classes."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cold", "hot"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
            Image.fromarray(rng.integers(0, 60000, (9, 9), dtype=np.uint16)).save(root / split / cls / "w.png")
    return root


def test_infrared_thermal_frames(tmp_path: Path) -> None:
    ir = get_modality("infrared")
    root = _frames_tree(tmp_path / "frames")
    table = ir.read({"format": "imagefolder", "path": str(root), "val_fraction": 0.0})
    bundle = ir.tokenize(table, {"image": {"size": [8, 8], "patch_size": [4, 4]}})
    rows = ir.read_inputs(root / "test")
    _assert_same(ir.preprocess(rows, bundle.meta)["x"], bundle.get("test", "x"))
    arrays = [np.asarray(Image.open(root / "test" / i)) for i in rows["id"]]  # uint8 and uint16 arrays
    _assert_same(ir.preprocess(ir.read_inputs(arrays), bundle.meta)["x"], bundle.get("test", "x"))
    with pytest.raises(DataError, match="tokenizer kind 'patch2d'"):
        ir.preprocess(ir.read_inputs(np.zeros(100)), bundle.meta)  # a spectrum for a frames bundle
    with pytest.raises(DataError, match="mix thermal frames"):
        ir.read_inputs([np.zeros((4, 4), np.uint8), np.zeros(100)])


@pytest.mark.parametrize("m", MODALITIES)
def test_bad_inputs_name_the_input(grid_data: dict, m: str, tmp_path: Path) -> None:
    mod = get_modality(m)
    with pytest.raises(DataError, match="no such file"):
        mod.read_inputs(tmp_path / "missing.png")
    with pytest.raises(DataError, match="got int"):
        mod.read_inputs(5)
    with pytest.raises(DataError, match="input 0: got dict"):
        mod.read_inputs([{"a": 1}])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt: not a file with extension"):
        mod.read_inputs(tmp_path)
    with pytest.raises(DataError, match=r"bundle meta is for .*'image'"):
        other = "xray" if m == "image" else "image"
        mod.preprocess(_test_rows(grid_data, m), grid_data["bundles"][other].meta)


def test_bad_objects_and_rows(grid_data: dict) -> None:
    bundles = grid_data["bundles"]
    with pytest.raises(DataError, match="input 0: array has dtype float64; expected uint8"):
        get_modality("image").read_inputs(np.zeros((4, 4)))
    rgb = get_modality("image").read_inputs(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="input 0: 3 channel.*in_channels=1"):
        get_modality("image").preprocess(rgb, bundles["image"].meta)
    with pytest.raises(DataError, match="colour image"):
        get_modality("xray").read_inputs(np.dstack([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8),
                                                     np.zeros((4, 4), np.uint8)]))
    with pytest.raises(DataError, match="input 0: array of dtype uint8 and shape \\(4, 4\\)"):
        get_modality("depth").read_inputs(np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="input 0: clip has shape \\(4, 4, 3\\)"):
        get_modality("video").read_inputs(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="not on the bundle's grid"):
        rows = get_modality("infrared").read_inputs(np.ones(7))
        get_modality("infrared").preprocess(rows, bundles["infrared"].meta)
    with pytest.raises(DataError, match="cube has shape \\(4, 4\\)"):
        get_modality("hyperspectral").read_inputs(np.zeros((4, 4)))
    hs = get_modality("hyperspectral").read_inputs({"cube": np.ones((4, 4, 48)), "patch": 3})
    with pytest.raises(DataError, match="odd patch_size >= 5"):
        get_modality("hyperspectral").preprocess(hs, bundles["hyperspectral"].meta)
    with pytest.raises(DataError, match="pixels\\[0\\]=\\(9, 0\\)"):
        get_modality("hyperspectral").read_inputs({"cube": np.ones((4, 4, 48)), "pixels": [(9, 0)]})

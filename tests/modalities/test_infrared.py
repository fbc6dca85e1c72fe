"""Tests of the infrared modality (Tecator spectra CSV, thermal ImageFolder, both tokenizations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.infrared import InfraredModality
from omnivec2_pipelines.sample_data.infrared import parse_regression_ts, tecator_dir

IR = InfraredModality()
SPEC_TOK = {"spectra": {"length": 100, "patch_size": 5}}
IMG_TOK = {"image": {"size": [8, 8], "patch_size": [4, 4]}}


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _thermal(root: Path) -> Path:
    """Tiny GENERATED thermal set: 'person' frames have a warm blob, 'empty' frames do not."""
    rng = np.random.default_rng(2)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("empty", "person"):
            for i in range(n):
                h, w = 10 + i, 12 - i
                frame = 60 + rng.normal(0, 5, (h, w))
                if cls == "person":
                    frame[2:7, 3:6] += 120
                _png(root / split / cls / f"{i}.png", frame.clip(0, 255).astype(np.uint8))
    return root


def _spectra_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, 7)
    amount = rng.uniform(0, 10, n)
    x = 1.0 + rng.uniform(-0.2, 0.2, (n, 1)) + amount[:, None] * np.exp(-((grid - 0.5) ** 2) / 0.02) * 0.1
    return x, amount


def _read_csv(root: Path, **kw) -> pd.DataFrame:
    return IR.read({"format": "spectra_csv", "path": str(root), **kw})


def test_sample_data_is_real_tecator_and_deterministic(tmp_path: Path) -> None:
    man = IR.make_sample_data(tmp_path / "a", {})
    assert "Tecator" in man["source"] and "(real)" in man["source"] and man["spectra"] == 215
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["spectra.csv"]
    data = (tmp_path / "a" / "spectra.csv").read_bytes()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "stale.csv").write_text("x")
    IR.make_sample_data(tmp_path / "b", {})
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["spectra.csv"]
    assert (tmp_path / "b" / "spectra.csv").read_bytes() == data
    lines = data.decode().splitlines()
    header = lines[0].split(",")
    assert header[:4] == ["sample_id", "split", "target", "850.00"] and header[-1] == "1050.00"
    vals, targets = parse_regression_ts(tecator_dir() / "Tecator_TRAIN.ts")
    assert lines[1].split(",") == ["tecator_train_0000", "train", targets[0], *vals[0]]  # exact copy
    t = _read_csv(tmp_path / "a", val_fraction=0.0)
    assert t["split"].value_counts().to_dict() == {"train": 172, "test": 43}
    assert (t["label"] == -1).all() and (t["label_name"] == "").all() and (t["length"] == 100).all()
    assert t["target"].between(0, 100).all()


def test_read_spectra_csv_index_columns_and_random_split(tmp_path: Path) -> None:
    x, amount = _spectra_rows(20)
    cols = [f"w_{i}" for i in range(7)]
    order = [3, 0, 6, 1, 5, 2, 4]  # columns out of order on disk
    lines = ["target," + ",".join(cols[i] for i in order)]
    lines += [f"{a}," + ",".join(str(r[i]) for i in order) for r, a in zip(x, amount)]
    _csv(tmp_path / "s" / "spectra.csv", "\n".join(lines) + "\n\n")  # trailing blank line ignored
    t = _read_csv(tmp_path / "s", val_fraction=0.0, test_fraction=0.25, seed=3)
    assert len(t) == 20 and t["split"].value_counts().to_dict() == {"train": 15, "test": 5}
    np.testing.assert_allclose(np.stack(t["values"]), x)  # re-ordered by column index
    np.testing.assert_allclose(t["target"], amount)
    assert t["wavelength_unit"].iloc[0] == "index" and list(t["wavelengths"].iloc[0]) == list(range(7))
    assert t["sample_id"].iloc[0] == "spectra/000002" and t["source_line"].iloc[0] == 2
    again = _read_csv(tmp_path / "s", val_fraction=0.0, test_fraction=0.25, seed=3)
    assert (again["split"] == t["split"]).all()


def test_user_csv_classification_round_trip(tmp_path: Path) -> None:
    """A user CSV overrides the default: classes, counts and lengths come from the file."""
    x, amount = _spectra_rows(30, seed=1)
    classes = np.where(amount > 5, "rich", "lean")
    split = ["test" if i % 5 == 0 else "train" for i in range(30)]
    grid = [f"{w:.1f}" for w in np.linspace(4000, 400, 7)]  # mid-IR, decreasing wavenumbers on disk
    lines = ["sample_id,polymer,split," + ",".join(grid)]
    lines += [f"s{i},{c},{s}," + ",".join(map(str, r)) for i, (r, c, s) in enumerate(zip(x, classes, split))]
    path = _csv(tmp_path / "user.csv", "\n".join(lines) + "\n")
    table = IR.read({"format": "spectra_csv", "path": str(path), "target": "polymer",
                     "task": "classification", "val_fraction": 0.2})
    np.testing.assert_allclose(np.stack(table["values"]), x[:, ::-1])  # sorted by wavelength
    table.to_parquet(tmp_path / "t.parquet")
    b = IR.tokenize(pd.read_parquet(tmp_path / "t.parquet"), {"spectra": {"length": 12, "patch_size": 4}})
    assert b.tasks["classification"].class_names == ("lean", "rich")
    assert b.meta["splits"] == {"train": sum(table["split"] == "train"), "val": sum(table["split"] == "val"),
                                "test": 6}
    assert b.get("train", "x").shape == (b.meta["splits"]["train"], 1, 12)
    assert b.meta["tokenizer"] == {"kind": "time_patch", "in_channels": 1, "length": 12, "patch_size": 4}
    assert b.meta["wavelengths"][0] == 400.0 and b.meta["wavelengths"][-1] == 4000.0
    assert "tasks_scale" not in b.meta


def test_tokenize_spectra_regression_normalisation(tmp_path: Path) -> None:
    IR.make_sample_data(tmp_path / "a", {})
    table = _read_csv(tmp_path / "a")
    b = IR.tokenize(table, SPEC_TOK)
    x, y = b.get("train", "x"), b.get("train", "y.regression")
    assert x.shape == (b.meta["splits"]["train"], 1, 100) and x.dtype == np.float32
    assert y.shape == (len(x), 1) and y.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-4)
    task = b.tasks["regression"]
    assert (task.kind, task.out_dim, task.out_shape, task.target_key) == ("regression", 1, (1,), "y.regression")
    scale = b.meta["tasks_scale"]["regression"]
    train_t = table[table["split"] == "train"]["target"].to_numpy()
    assert scale["mean"] == pytest.approx(train_t.mean()) and scale["std"] == pytest.approx(train_t.std())
    test_t = table[table["split"] == "test"]["target"].to_numpy()
    np.testing.assert_allclose(b.get("test", "y.regression")[:, 0] * scale["std"] + scale["mean"], test_t, rtol=1e-5)
    # test spectra use train statistics: undo them and compare with SNV of the raw spectrum
    raw = np.asarray(table[table["split"] == "test"]["values"].iloc[0])
    snv = (raw - raw.mean()) / raw.std()
    norm = b.meta["normalization"]
    np.testing.assert_allclose(b.get("test", "x")[0, 0] * np.array(norm["std"]) + np.array(norm["mean"]), snv,
                               atol=1e-4)
    assert b.meta["tokenizer"] == {"kind": "time_patch", "in_channels": 1, "length": 100, "patch_size": 5}
    # the spectra carry the fat signal: a linear model beats the mean predictor by far
    from sklearn.linear_model import Ridge

    pred = Ridge(alpha=1.0).fit(x[:, 0], y[:, 0]).predict(b.get("test", "x")[:, 0])
    assert np.sqrt(np.mean((pred - b.get("test", "y.regression")[:, 0]) ** 2)) < 0.35
    raw_b = IR.tokenize(table, {"spectra": {"length": 50, "patch_size": 5, "snv": False}})
    assert raw_b.get("test", "x").shape[2] == 50 and raw_b.meta["normalization"]["snv"] is False


def test_thermal_imagefolder_read_tokenize(tmp_path: Path) -> None:
    root = _thermal(tmp_path / "th")
    deep = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 1000)
    Image.fromarray(deep).save(root / "train" / "person" / "radiometric.tif")
    t = IR.read({"format": "imagefolder", "path": str(root), "val_fraction": 0.0})
    assert len(t) == 13 and (t["channels"] == 1).all() and set(t["file_format"]) == {"png", "tif"}
    assert dict(zip(t["label_name"], t["label"])) == {"empty": 0, "person": 1}
    row = t[t["sample_id"] == "train/person/radiometric"].iloc[0]
    px = np.asarray(row["pixels"]).reshape(5, 6)
    assert px[0, 0] == 0 and px[-1, -1] == 255  # 16-bit frame scaled by its min/max
    b = IR.tokenize(t, IMG_TOK)
    assert b.get("train", "x").shape == (9, 1, 8, 8) and b.get("test", "x").shape == (4, 1, 8, 8)
    assert b.meta["tokenizer"] == {"kind": "patch2d", "in_channels": 1, "input_size": [8, 8], "patch_size": [4, 4]}
    assert b.tasks["classification"].class_names == ("empty", "person") and b.meta["modality"] == "infrared"
    np.testing.assert_allclose(b.get("train", "x").mean(), 0.0, atol=1e-5)


def test_tokenize_bad_params(tmp_path: Path) -> None:
    IR.make_sample_data(tmp_path / "a", {})
    spectra = _read_csv(tmp_path / "a")
    frames = IR.read({"format": "imagefolder", "path": str(_thermal(tmp_path / "th"))})
    with pytest.raises(DataError, match=r"infrared\.tokenization\.spectra\.length"):
        IR.tokenize(spectra, {"spectra": {"length": 0, "patch_size": 5}})
    with pytest.raises(DataError, match=r"infrared\.tokenization\.spectra\.patch_size"):
        IR.tokenize(spectra, {"spectra": {"length": 10, "patch_size": 11}})
    with pytest.raises(DataError, match=r"infrared\.tokenization\.spectra\.snv"):
        IR.tokenize(spectra, {"spectra": {"length": 10, "patch_size": 5, "snv": "yes"}})
    with pytest.raises(DataError, match=r"infrared\.tokenization\.spectra must be a mapping"):
        IR.tokenize(spectra, IMG_TOK)
    with pytest.raises(DataError, match=r"infrared\.tokenization\.image\.patch_size"):
        IR.tokenize(frames, {"image": {"size": [8, 8], "patch_size": [3, 3]}})
    with pytest.raises(DataError, match=r"infrared\.tokenization\.image must be a mapping"):
        IR.tokenize(frames, SPEC_TOK)
    with pytest.raises(DataError, match="train"):
        IR.tokenize(spectra[spectra["split"] == "test"], SPEC_TOK)


GOOD = "sample_id,split,target,1.0,2.0,3.0\na,train,1.5,0.1,0.2,0.3\nb,test,2.5,0.3,0.2,0.1\nc,train,0.5,0.2,0.2,0.2\n"


@pytest.mark.parametrize("case", ["no_path", "format", "empty_csv", "no_csv", "nan", "fields", "text",
                                  "no_target_col", "bad_column", "no_test", "dup_id", "empty_target"])
def test_read_bad_spectra(tmp_path: Path, case: str) -> None:
    root = tmp_path / "s"
    text = GOOD
    expect = {"no_path": "nowhere does not exist",
              "format": r"format='jcamp' is not supported",
              "empty_csv": r"spectra\.csv: CSV is empty",
              "no_csv": r"spectra\.csv: spectra CSV not found",
              "nan": r"spectra\.csv:3: NaN/inf spectrum value in column '2\.0'",
              "fields": r"spectra\.csv:2: row has 5 fields, the header has 6",
              "text": r"spectra\.csv:4: non-numeric spectrum value 'abc'",
              "no_target_col": r"spectra\.csv: no target column 'fat'",
              "bad_column": r"spectra\.csv: column 'operator' is neither a wavelength",
              "no_test": r"spectra\.csv: no 'test' rows",
              "dup_id": r"sample_id 'a' appears more than once",
              "empty_target": r"spectra\.csv:3: empty target column"}[case]
    src = {"format": "spectra_csv", "path": str(root)}
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "format":
        src["format"] = "jcamp"
    elif case == "empty_csv":
        text = "\n\n"
    elif case == "nan":
        text = GOOD.replace("b,test,2.5,0.3,0.2", "b,test,2.5,0.3,nan")
    elif case == "fields":
        text = GOOD.replace("a,train,1.5,0.1,0.2,0.3", "a,train,1.5,0.1,0.2")
    elif case == "text":
        text = GOOD.replace("c,train,0.5,0.2", "c,train,0.5,abc")
    elif case == "no_target_col":
        src["target"] = "fat"
    elif case == "bad_column":
        text = GOOD.replace("3.0\n", "operator\n")
    elif case == "no_test":
        text = GOOD.replace("b,test", "b,train")
    elif case == "dup_id":
        text = GOOD.replace("c,train", "a,train")
    elif case == "empty_target":
        text = GOOD.replace("b,test,2.5", "b,test,")
    if case == "no_csv":
        root.mkdir()
        _csv(root / "other.csv", GOOD)
    elif case != "no_path":
        _csv(root / "spectra.csv", text)
    with pytest.raises(DataError, match=expect):
        IR.read(src)


def test_spectra_skip_policy_counts_rows(tmp_path: Path) -> None:
    text = GOOD.replace("b,test,2.5,0.3,0.2", "b,test,2.5,0.3,inf") + "d,test,1.0,0.1,0.1,0.1\ne,train,x,1,1,1\n"
    _csv(tmp_path / "s" / "spectra.csv", text)
    t = _read_csv(tmp_path / "s", on_error="skip", val_fraction=0.0)
    rep = t.attrs["ingestion_errors"]
    assert rep["skipped"] == 2 and rep["by_reason"] == {"nan": 1, "invalid": 1}
    assert [f["file"].rsplit("/", 1)[-1] for f in rep["files"]] == ["spectra.csv:3", "spectra.csv:6"]
    assert list(t["sample_id"]) == ["a", "c", "d"]


@pytest.mark.parametrize("case", ["rgb", "truncated", "empty_class", "no_test", "not_image"])
def test_read_bad_frames(tmp_path: Path, case: str) -> None:
    root = _thermal(tmp_path / "th")
    expect = {"rgb": r"palette\.png: colour image \(3 different channels\) in a 1-channel",
              "truncated": r"person/1\.png: unreadable or corrupt",
              "empty_class": r"test/dog: class folder is empty",
              "no_test": r"missing split folder\(s\) \['test'\]",
              "not_image": r"notes\.txt: not a file with extension"}[case]
    if case == "rgb":
        _png(root / "train" / "person" / "palette.png",
             np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8))
    elif case == "truncated":
        p = root / "train" / "person" / "1.png"
        p.write_bytes(p.read_bytes()[:50])
    elif case == "empty_class":
        (root / "test" / "dog").mkdir()
    elif case == "no_test":
        import shutil

        shutil.rmtree(root / "test")
    elif case == "not_image":
        (root / "train" / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=expect):
        IR.read({"format": "imagefolder", "path": str(root)})
    if case in ("rgb", "truncated"):
        t = IR.read({"format": "imagefolder", "path": str(root), "on_error": "skip", "val_fraction": 0.0})
        rep = t.attrs["ingestion_errors"]
        assert rep["skipped"] == 1 and rep["by_reason"] == {"channels" if case == "rgb" else "corrupt": 1}
        assert len(t) == 12 - (case == "truncated")

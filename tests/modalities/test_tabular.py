"""Tests of the tabular modality (mixed-column reader, diabetes sample data, column tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.tabular import TabularModality

TAB = TabularModality()


def _frame(n: int = 24, seed: int = 0) -> pd.DataFrame:
    """Mixed table: numeric, text, bool and an int code column, a numeric and a text target."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(10.0, 2.0, n).round(3)
    color = np.array(["red", "green", "blue"])[np.arange(n) % 3]
    flag = (np.arange(n) % 2 == 0)
    zone = (np.arange(n) % 4) + 1  # int codes, categorical only when listed
    y = (3 * x1 + np.where(color == "red", 5.0, 0.0)).round(3)
    kind = np.where(x1 > 10, "high", "low")
    split = np.where(np.arange(n) % 6 == 5, "test", "train")
    return pd.DataFrame({"id": np.arange(n) + 100, "x1": x1, "color": color, "flag": flag,
                         "zone": zone, "y": y, "kind": kind, "split": split})


def _write(path: Path, frame: pd.DataFrame, fmt: str = "csv") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def _read(path: Path, fmt: str = "csv", **kw) -> pd.DataFrame:
    kw.setdefault("target", "y")
    kw.setdefault("drop_columns", ["id", "kind"])
    return TAB.read({"format": fmt, "path": str(path), **kw})


def test_sample_data_real_diabetes_deterministic(tmp_path: Path) -> None:
    man = TAB.make_sample_data(tmp_path / "a", {"test_fraction": 0.2, "seed": 0})
    assert man["source"] == "sklearn.datasets.load_diabetes(scaled=False) (real)"
    assert man["rows"] == {"train": 354, "test": 88} and man["files"] == 1
    (tmp_path / "b" / "old").mkdir(parents=True)
    TAB.make_sample_data(tmp_path / "b", {"test_fraction": 0.2, "seed": 0})
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["diabetes.csv"]
    data = (tmp_path / "a" / "diabetes.csv").read_bytes()
    assert data == (tmp_path / "b" / "diabetes.csv").read_bytes()
    frame = pd.read_csv(tmp_path / "a" / "diabetes.csv")
    assert list(frame.columns) == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
                                   "progression", "split"]
    assert set(frame["sex"]) == {"sex_1", "sex_2"} and len(frame) == 442
    from sklearn.datasets import load_diabetes

    np.testing.assert_allclose(frame["progression"], load_diabetes().target)
    t = TAB.read({"format": "csv", "path": str(tmp_path / "a"), "target": "progression"})
    b = TAB.tokenize(t, {})
    assert b.meta["columns"]["categorical"] == ["sex"] and len(b.meta["columns"]["numeric"]) == 9
    assert b.get("train", "x").shape == (319, 10) and b.tasks["regression"].kind == "regression"


def test_read_mixed_columns(tmp_path: Path) -> None:
    t = _read(_write(tmp_path / "d" / "data.csv", _frame()), categorical=["zone"], val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert t["sample_id"].is_unique and t["sample_id"].iloc[0] == "data/000001"
    assert [c for c in t.columns if c.startswith("feature.")] == [
        "feature.x1", "feature.color", "feature.flag", "feature.zone"]
    assert t["feature.x1"].dtype == np.float64
    assert t["feature.flag"].tolist()[:2] == ["True", "False"]  # bool -> categorical text
    assert t["feature.zone"].tolist()[:4] == ["1", "2", "3", "4"]  # listed -> categorical
    assert (t["label"] == -1).all() and (t["label_name"] == "").all()
    assert t["target.y"].dtype == np.float64 and t.groupby("split").size().to_dict() == {
        "test": 4, "train": 20}
    t.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert TAB.tokenize(back, {}).meta == TAB.tokenize(t, {}).meta


def test_user_path_round_trip_parquet_classification(tmp_path: Path) -> None:
    frame = _frame().drop(columns=["split"])
    path = _write(tmp_path / "user" / "mine.parquet", frame, "parquet")
    t = TAB.read({"format": "parquet", "path": str(path), "target": "kind", "drop_columns": ["id", "y"],
                  "val_fraction": 0.0, "test_fraction": 0.25, "seed": 1})
    assert dict(zip(t["label_name"], t["label"])) == {"high": 0, "low": 1}
    counts = frame["kind"].value_counts()
    assert t[t["split"] == "test"].groupby("label_name").size().to_dict() == {
        k: int(round(v * 0.25)) for k, v in counts.items()}
    b = TAB.tokenize(t, {})
    spec = b.tasks["classification"]
    assert spec.class_names == ("high", "low") and spec.out_dim == 2
    assert b.get("train", "x").shape == (18, 4) and b.get("test", "y.classification").dtype == np.int64
    assert b.meta["tokenizer"] == {"kind": "tabular_columns", "n_numeric": 2, "cardinalities": [4, 3]}
    # a numeric target read as classes when asked
    t2 = TAB.read({"format": "parquet", "path": str(path), "target": "zone", "task": "classification",
                   "drop_columns": ["id"], "val_fraction": 0.0})
    assert sorted(set(t2["label_name"])) == ["1", "2", "3", "4"]
    with pytest.raises(DataError, match=r"task='regression'"):
        TAB.read({"format": "parquet", "path": str(path), "target": "kind", "task": "regression"})


def test_tokenize_train_statistics_codes_and_target(tmp_path: Path) -> None:
    frame = _frame()
    frame.loc[23, "color"] = "purple"  # a test row (index 23 -> split test) with an unseen colour
    t = _read(_write(tmp_path / "d.csv", frame), val_fraction=0.0, drop_columns=["id", "kind", "zone"])
    b = TAB.tokenize(t, {})
    m = b.meta
    assert m["columns"] == {"numeric": ["x1"], "categorical": ["color", "flag"]}
    assert m["tokenizer"] == {"kind": "tabular_columns", "n_numeric": 1, "cardinalities": [4, 3]}
    assert m["categories"] == {"color": ["blue", "green", "red"], "flag": ["False", "True"]}
    x, xt = b.get("train", "x"), b.get("test", "x")
    assert x.dtype == np.float32 and x.shape == (20, 3) and xt.shape == (4, 3)
    np.testing.assert_allclose(x[:, 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x[:, 0].std(), 1.0, atol=1e-4)
    train = frame[frame["split"] == "train"]
    np.testing.assert_allclose(m["normalization"]["mean"], [train["x1"].mean()])
    assert set(np.unique(x[:, 1])) == {1.0, 2.0, 3.0} and xt[-1, 1] == 0.0  # unseen -> 0
    y = b.get("train", "y.regression")
    assert y.shape == (20, 1) and y.dtype == np.float32
    sc = m["tasks_scale"]["regression"]
    np.testing.assert_allclose(y[:, 0] * sc["std"] + sc["mean"], train["y"], rtol=1e-5)
    spec = b.tasks["regression"]
    assert (spec.out_dim, spec.out_shape, spec.target_key) == (1, (1,), "y.regression")
    clipped = TAB.tokenize(t, {"clip": 0.5}).get("train", "x")
    assert np.abs(clipped[:, 0]).max() == pytest.approx(0.5)
    capped = TAB.tokenize(t, {"max_categories": 1})
    # train colours: red 8, green 8, blue 4 -> the tie goes to the name sorted first
    assert capped.meta["categories"]["color"] == ["green"] and capped.get("train", "x")[:, 1].max() == 1.0


def test_baseline_features_one_hot(tmp_path: Path) -> None:
    t = _read(_write(tmp_path / "d.csv", _frame()), val_fraction=0.0, drop_columns=["id", "kind", "zone"])
    b = TAB.tokenize(t, {})
    x = b.get("train", "x")
    f = TAB.baseline_features(x, b.meta)
    assert f.shape == (20, 1 + 4 + 3) and f.dtype == np.float32
    np.testing.assert_array_equal(f[:, 0], x[:, 0])
    np.testing.assert_array_equal(f[:, 1:5].argmax(1), x[:, 1])
    assert (f[:, 1:].sum(1) == 2).all()


@pytest.mark.parametrize("params, key", [
    ({"max_categories": 0}, "max_categories"),
    ({"clip": -1}, "clip"),
])
def test_bad_tokenize_params(tmp_path: Path, params: dict, key: str) -> None:
    t = _read(_write(tmp_path / "d.csv", _frame()), val_fraction=0.0)
    with pytest.raises(DataError, match=rf"tabular\.tokenization\.{key}"):
        TAB.tokenize(t, params)


def test_missing_target_path_format_empty_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", _frame())
    with pytest.raises(DataError, match=r"tabular\.source\.target is required"):
        TAB.read({"format": "csv", "path": str(path)})
    with pytest.raises(DataError, match=r"d\.csv: tabular\.source\.target column\(s\) \['nope'\]"):
        _read(path, target="nope")
    with pytest.raises(DataError, match=r"tabular\.source\.categorical column\(s\) \['zz'\]"):
        _read(path, categorical=["zz"])
    with pytest.raises(DataError, match="does not exist"):
        _read(tmp_path / "missing")
    with pytest.raises(DataError, match=r"tabular\.source\.format='xlsx'"):
        _read(path, "xlsx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder has no 'csv' table file"):
        _read(tmp_path / "empty")
    good = _write(tmp_path / "p" / "good.parquet", _frame(), "parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"cut\.parquet: unreadable or corrupt parquet") as e:
        _read(cut, "parquet")
    assert e.value.reason == "corrupt"
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,y\n1,2\n3,4\ncaf\xe9,5\n")
    with pytest.raises(DataError, match=r"latin\.csv: line 4: bytes are not valid UTF-8"):
        _read(latin, drop_columns=[])
    header_only = tmp_path / "h.csv"
    header_only.write_text("a,y\n")
    with pytest.raises(DataError, match=r"h\.csv: table has a header but no rows"):
        _read(header_only, drop_columns=[])


def test_nan_feature_names_file_row_column_or_skip(tmp_path: Path) -> None:
    frame = _frame().astype({"x1": object})
    frame.loc[2, "x1"] = np.nan
    frame.loc[4, "color"] = None
    frame.loc[6, "y"] = np.nan
    frame.loc[7, "x1"] = "oops"  # a typo in a numeric column
    frame.loc[8, "split"] = "later"
    path = _write(tmp_path / "nan.csv", frame)
    with pytest.raises(DataError, match=r"nan\.csv: row 3: column 'x1' is NaN/inf") as e:
        _read(path)
    assert e.value.reason == "nan"
    t = _read(path, on_error="skip", val_fraction=0.0)
    assert len(t) == 19 and t["feature.x1"].dtype == np.float64  # still a numeric column
    rep = t.attrs["ingestion_errors"]
    assert rep["by_reason"] == {"nan": 2, "missing": 1, "invalid": 2}
    assert [f["file"] for f in rep["files"]] == [f"{path}:row {i}" for i in (3, 5, 7, 8, 9)]
    assert "column 'color' is empty/NaN" in rep["files"][1]["message"]
    assert "target 'y' is missing" in rep["files"][2]["message"]
    assert "value 'oops' is not a number" in rep["files"][3]["message"]
    inf = _frame()
    inf.loc[0, "x1"] = np.inf
    with pytest.raises(DataError, match=r"row 1: column 'x1' is NaN/inf"):
        _read(_write(tmp_path / "inf.parquet", inf, "parquet"), "parquet")


def test_split_files_and_mismatched_columns(tmp_path: Path) -> None:
    frame = _frame().drop(columns=["split"])
    root = tmp_path / "s"
    _write(root / "train.csv", frame.iloc[:18])
    _write(root / "test.csv", frame.iloc[18:])
    t = _read(root, val_fraction=0.0)
    assert t.groupby("split").size().to_dict() == {"test": 6, "train": 18}
    assert t[t["split"] == "test"]["sample_id"].iloc[0] == "test/000001"
    _write(root / "test.csv", frame.iloc[18:].drop(columns=["color"]))
    with pytest.raises(DataError, match=r"test\.csv: feature columns .* differ") as e:
        _read(root)
    assert e.value.reason == "shape"

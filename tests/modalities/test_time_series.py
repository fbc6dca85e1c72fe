"""Tests of the time-series modality (.ts parser, bundled UCR sample data, tokenization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.modalities import DataError, get_modality
from omnivec2_pipelines.formats.sktime_data import bundled_ts_dir as _bundled_ts_dir
from omnivec2_pipelines.formats.ucr_ts import parse_ts

TS = get_modality("time_series")

HEADER = """# hand-written multivariate, unequal-length problem
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true walk run
@data
"""
TRAIN = HEADER + """1,2,3,4:10,20,30,40:walk
# a comment between series
5,6,7,8,9,10:0,0,0,1,1,1:run

0.5,1.5,2.5,3.5,4.5:-1,-2,-3,-4,-5:walk
"""
TEST = HEADER + """1,1,1,2,2,2,3:1,2,3,4,5,6,7:run
4,3,2,1:1,1,1,1:walk
"""
TOK = {"length": 8, "horizon": 2, "patch_size": 3}


def _toy(root: Path, train: str = TRAIN, test: str = TEST, name: str = "Toy") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}_TRAIN.ts").write_text(train)
    (root / f"{name}_TEST.ts").write_text(test)
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return TS.read({"format": "ucr_ts", "path": str(root), **kw})


def test_sample_data_copies_bundled_gunpoint(tmp_path: Path) -> None:
    man = TS.make_sample_data(tmp_path / "a", {})
    assert man["name"] == "GunPoint" and "(real)" in man["source"]
    assert man["series"] == 200 and man["classes"] == ["1", "2"]
    src = _bundled_ts_dir("GunPoint")
    for split in ("TRAIN", "TEST"):
        data = (tmp_path / "a" / f"GunPoint_{split}.ts").read_bytes()
        assert data == (src / f"GunPoint_{split}.ts").read_bytes()
    (tmp_path / "a" / "stale.ts").write_text("x")
    TS.make_sample_data(tmp_path / "a", {"name": "GunPoint"})
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["GunPoint_TEST.ts", "GunPoint_TRAIN.ts"]
    t = _read(tmp_path / "a", val_fraction=0.0)
    assert t.groupby("split").size().to_dict() == {"test": 150, "train": 50}
    assert (t["length"] == 150).all() and (t["n_channels"] == 1).all()
    with pytest.raises(DataError, match="NoSuchSet"):
        TS.make_sample_data(tmp_path / "b", {"name": "NoSuchSet"})
    assert not (tmp_path / "b").exists()


def test_read_multivariate_unequal_lengths(tmp_path: Path) -> None:
    t = _read(_toy(tmp_path / "toy"), val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert list(t["sample_id"]) == ["Toy_TRAIN/00000", "Toy_TRAIN/00001", "Toy_TRAIN/00002",
                                    "Toy_TEST/00000", "Toy_TEST/00001"]
    assert list(t["length"]) == [4, 6, 5, 7, 4] and (t["n_channels"] == 2).all()
    assert dict(zip(t["label_name"], t["label"])) == {"run": 0, "walk": 1}
    assert list(t["source_line"][:3]) == [10, 12, 14]
    np.testing.assert_array_equal(t["values"].iloc[0], [1, 2, 3, 4, 10, 20, 30, 40])  # channel-major
    assert t["source_file"].iloc[3] == "Toy_TEST.ts"
    t.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    np.testing.assert_array_equal(back["values"].iloc[1], t["values"].iloc[1])
    assert len(_read(tmp_path / "toy", name="Toy", val_fraction=0.5)) == 5


def test_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    head = "@problemName N\n@univariate true\n@classLabel true 10 2 1\n@data\n"
    root = _toy(tmp_path / "n", head + "1,2,3:10\n1,2:2\n4,5,6:1\n", head + "1,2:10\n", name="N")
    t = _read(root, val_fraction=0.0)
    assert dict(zip(t["label_name"], t["label"])) == {"1": 0, "2": 1, "10": 2}


def test_tokenize_shapes_normalisation_meta(tmp_path: Path) -> None:
    t = _read(_toy(tmp_path / "toy"), val_fraction=0.0)
    b = TS.tokenize(t, TOK)
    x, ctx, fut = b.get("train", "x"), b.get("train", "x_context"), b.get("train", "y.forecasting")
    assert x.shape == (3, 2, 8) and ctx.shape == (3, 2, 6) and fut.shape == (3, 2, 2)
    assert x.dtype == ctx.dtype == fut.dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([ctx, fut], axis=2), x)
    np.testing.assert_allclose(ctx.mean(axis=2), 0.0, atol=1e-5)
    np.testing.assert_allclose(ctx.std(axis=2), 1.0, atol=1e-4)
    # a linear ramp stays a linear ramp after resampling and normalisation
    ramp = x[0, 0]
    np.testing.assert_allclose(np.diff(ramp), np.diff(ramp)[0], atol=1e-5)
    # a constant context channel (test sample 1, channel 1) hits the std floor, not a division by 0
    assert np.isfinite(b.get("test", "x")).all() and np.allclose(b.get("test", "x")[1, 1], 0.0)
    y = b.get("test", "y.classification")
    assert y.dtype == np.int64 and y.tolist() == [0, 1]
    m = b.meta
    assert m["tokenizer"] == {"kind": "time_patch", "in_channels": 2, "length": 8, "patch_size": 3}
    assert m["splits"] == {"train": 3, "test": 2} and m["pretrain_input_key"] == "x"
    fc, cls = b.tasks["forecasting"], b.tasks["classification"]
    assert (fc.kind, fc.input_key, fc.target_key, fc.out_dim, fc.out_shape) == (
        "regression", "x_context", "y.forecasting", 4, (2, 2))
    assert (cls.kind, cls.input_key, cls.out_dim, cls.class_names) == (
        "classification", "x", 2, ("run", "walk"))


@pytest.mark.parametrize("params, key", [
    ({"length": 8, "horizon": 8, "patch_size": 3}, r"time_series\.tokenization\.horizon"),
    ({"length": 8, "horizon": 0, "patch_size": 3}, r"time_series\.tokenization\.horizon"),
    ({"length": 8, "horizon": 2, "patch_size": 7}, r"time_series\.tokenization\.patch_size"),
    ({"length": "8", "horizon": 2, "patch_size": 3}, r"time_series\.tokenization\.length"),
])
def test_tokenize_bad_params(tmp_path: Path, params: dict, key: str) -> None:
    t = _read(_toy(tmp_path / "toy"), val_fraction=0.0)
    with pytest.raises(DataError, match=key):
        TS.tokenize(t, params)


@pytest.mark.parametrize("line, expect", [
    ("1,?,3:1,2,3:walk", r"Toy_TRAIN\.ts:12: channel 0 has a missing value '\?'.*not supported"),
    ("1,NaN,3:1,2,3:walk", r"Toy_TRAIN\.ts:12: channel 0 has NaN"),
    ("1,x,3:1,2,3:walk", r"Toy_TRAIN\.ts:12: channel 0 has non-numeric value 'x'"),
    ("1,2,3:1,2:walk", r"Toy_TRAIN\.ts:12: channels of one series have different lengths"),
    ("1,2,3:1,2,3:jump", r"Toy_TRAIN\.ts:12: class label 'jump' is not declared"),
    ("1,2,3", r"Toy_TRAIN\.ts:12: malformed data line"),
    ("1,2,3:walk", r"Toy_TRAIN\.ts:12: series has 1 channel\(s\) but the header declares 2"),
    ("1,2,3:4,5,6:7,8,9:walk", r"Toy_TRAIN\.ts:12: series has 3 channel"),
])
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, expect: str) -> None:
    lines = TRAIN.splitlines()
    lines[11] = line  # line 12: the second series
    if "header declares" in expect:
        lines[9], lines[11] = line, lines[9]  # make it the first series
        expect = expect.replace(":12:", ":10:")
    root = _toy(tmp_path / "toy", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=expect):
        _read(root)


@pytest.mark.parametrize("case, expect", [
    ("no_test", r"missing \['Toy_TEST\.ts'\]"),
    ("two_pairs", r"found 2 .*\['Other', 'Toy'\]"),
    ("no_pairs", r"found 0 "),
    ("no_data", r"Toy_TRAIN\.ts: no @data line"),
    ("no_series", r"Toy_TEST\.ts: no series after @data"),
    ("timestamps", r"Toy_TRAIN\.ts:3: @timeStamps true is not supported"),
    ("no_labels", r"Toy_TRAIN\.ts:\d+: expected '@classLabel true"),
    ("channels_differ", r"Toy_TEST\.ts: series have 1 channel\(s\) but Toy_TRAIN\.ts has 2"),
    ("unequal_declared_equal", r"Toy_TRAIN\.ts:12: series length 6 differs from 4"),
    ("format", r"format='ts' is not supported"),
    ("regression", r"Toy_TRAIN\.ts:8: @targetLabel true \(regression \.ts\) is not supported"),
])
def test_bad_layouts(tmp_path: Path, case: str, expect: str) -> None:
    root = _toy(tmp_path / "toy")
    src = {"format": "ucr_ts", "path": str(root)}
    if case == "no_test":
        (root / "Toy_TEST.ts").unlink()
        src["name"] = "Toy"
    elif case == "two_pairs":
        _toy(root, name="Other")
    elif case == "no_pairs":
        (root / "Toy_TEST.ts").unlink()
    elif case == "no_data":
        (root / "Toy_TRAIN.ts").write_text(HEADER.replace("@data\n", ""))
    elif case == "no_series":
        (root / "Toy_TEST.ts").write_text(HEADER + "# nothing\n")
    elif case == "timestamps":
        (root / "Toy_TRAIN.ts").write_text(TRAIN.replace("@timeStamps false", "@timeStamps true"))
    elif case == "no_labels":
        (root / "Toy_TRAIN.ts").write_text(TRAIN.replace("@classLabel true walk run", "@classLabel false"))
    elif case == "channels_differ":
        head = HEADER.replace("@dimensions 2", "@dimensions 1")
        (root / "Toy_TEST.ts").write_text(head + "1,2,3:walk\n")
    elif case == "unequal_declared_equal":
        (root / "Toy_TRAIN.ts").write_text(TRAIN.replace("@equalLength false", "@equalLength true"))
    elif case == "format":
        src["format"] = "ts"
    elif case == "regression":
        (root / "Toy_TRAIN.ts").write_text(TRAIN.replace("@classLabel true walk run", "@targetLabel true"))
    with pytest.raises(DataError, match=expect):
        TS.read(src)


def test_parse_ts_gunpoint_header() -> None:
    ts = parse_ts(_bundled_ts_dir("GunPoint") / "GunPoint_TRAIN.ts")
    assert ts.header["problemname"] == "GunPoint" and ts.class_labels == ("1", "2")
    assert len(ts.series) == 50 and ts.series[0].shape == (1, 150)


def test_skip_policy_leaves_out_bad_lines(tmp_path: Path) -> None:
    lines = TRAIN.splitlines()
    lines[9] = "1,NaN,3,4:10,20,30,40:walk"  # line 10: NaN
    lines[13] = "0.5,1.5,2.5:-1,-2,-3,-4,-5:walk"  # line 14: unequal channel lengths
    train = "\n".join(lines) + "\n"
    test = TEST + "1,2,3:4,5\n"  # line 12: no class label after the last channel
    root = _toy(tmp_path / "toy", train, test)
    t = _read(root, on_error="skip", val_fraction=0.0)
    rep = t.attrs["ingestion_errors"]
    assert rep["on_error"] == "skip" and rep["skipped"] == 3
    assert rep["by_reason"] == {"nan": 1, "shape": 1, "invalid": 1}
    assert sorted(f["file"].rsplit("/", 1)[-1] for f in rep["files"]) == [
        "Toy_TEST.ts:12", "Toy_TRAIN.ts:10", "Toy_TRAIN.ts:14"]
    assert all("Toy_" in f["message"] for f in rep["files"])
    # the good series are kept with the ids they have without skipping (position among data lines)
    assert list(t["sample_id"]) == ["Toy_TRAIN/00001", "Toy_TEST/00000", "Toy_TEST/00001"]
    assert list(t["source_line"]) == [12, 10, 11]
    assert dict(zip(t["label_name"], t["label"])) == {"run": 0, "walk": 1}
    # the default still raises, naming file and line, with the reason attached
    with pytest.raises(DataError, match=r"Toy_TRAIN\.ts:10: channel 0 has NaN") as err:
        _read(root)
    assert err.value.reason == "nan"
    clean = _read(_toy(tmp_path / "clean"), val_fraction=0.0)
    assert clean.attrs["ingestion_errors"] == {"on_error": "raise", "skipped": 0, "by_reason": {},
                                               "files": []}


def test_skip_policy_channel_count_and_truncated_last_line(tmp_path: Path) -> None:
    train = TRAIN.rstrip("\n") + "\n1,2,3:4,5,6:7,8,9:walk\n"  # line 15: 3 channels, header says 2
    test = TEST.rstrip("\n") + "\n1,2,3,4:5,6"  # line 12 cut off without a line end
    t = _read(_toy(tmp_path / "toy", train, test), on_error="skip", val_fraction=0.0)
    rep = t.attrs["ingestion_errors"]
    assert rep["by_reason"] == {"channels": 1, "truncated": 1}
    assert {f["file"].rsplit("/", 1)[-1]: f["reason"] for f in rep["files"]} == {
        "Toy_TRAIN.ts:15": "channels", "Toy_TEST.ts:12": "truncated"}
    assert (t["split"] == "train").sum() == 3 and (t["split"] == "test").sum() == 2
    with pytest.raises(DataError, match=r"Toy_TEST\.ts:12: .*truncated file") as err:
        _read(_toy(tmp_path / "raise", TRAIN, test))
    assert err.value.reason == "truncated"


def test_skip_policy_whole_file_problems_still_raise(tmp_path: Path) -> None:
    all_bad = HEADER + "1,?,3:1,2,3:walk\n1,2:walk\n"
    with pytest.raises(DataError, match=r"Toy_TRAIN\.ts: all 2 series after @data were skipped"):
        _read(_toy(tmp_path / "bad", train=all_bad), on_error="skip")
    with pytest.raises(DataError, match=r"Toy_TEST\.ts: no series after @data"):
        _read(_toy(tmp_path / "empty", test=HEADER), on_error="skip")
    root = _toy(tmp_path / "no_test")
    (root / "Toy_TEST.ts").unlink()
    with pytest.raises(DataError, match=r"missing \['Toy_TEST\.ts'\]"):
        _read(root, name="Toy", on_error="skip")
    with pytest.raises(DataError, match=r"time_series\.source\.on_error='ignore'"):
        _read(_toy(tmp_path / "toy"), on_error="ignore")


def test_parse_ts_with_policy_directly(tmp_path: Path) -> None:
    from omnivec2_pipelines.modalities.base import ErrorPolicy

    path = _toy(tmp_path / "toy", TRAIN.replace("5,6,7,8,9,10:0,0,0,1,1,1:run", "5,6:0:run"))
    policy = ErrorPolicy({"on_error": "skip"}, "time_series")
    ts = parse_ts(path / "Toy_TRAIN.ts", policy)
    assert ts.lines == [10, 14] and ts.indices == [0, 2] and ts.labels == ["walk", "walk"]
    assert policy.report()["by_reason"] == {"shape": 1}
    with pytest.raises(DataError, match=r"Toy_TRAIN\.ts:12: channels of one series have different"):
        parse_ts(path / "Toy_TRAIN.ts")


def test_user_path_round_trip(tmp_path: Path) -> None:
    """A user data set overrides the default: classes, counts and channels come from it."""
    rng = np.random.default_rng(3)
    head = ("@problemName Waves\n@univariate false\n@dimensions 3\n@equalLength false\n"
            "@classLabel true flat sine saw\n@data\n")
    counts = {"TRAIN": 4, "TEST": 2}
    for split, n in counts.items():
        lines = []
        for i in range(n):
            for cls in ("flat", "sine", "saw"):
                t = np.arange(30 + 3 * i)
                base = {"flat": np.zeros(len(t)), "sine": np.sin(t / 3), "saw": (t % 7) / 7}[cls]
                x = base[None] + rng.normal(0, 0.01, (3, len(t)))
                lines.append(":".join(",".join(f"{v:.4f}" for v in ch) for ch in x) + f":{cls}")
        (tmp_path / "u").mkdir(exist_ok=True)
        (tmp_path / "u" / f"Waves_{split}.ts").write_text(head + "\n".join(lines) + "\n")
    table = TS.read({"format": "ucr_ts", "path": str(tmp_path / "u"), "val_fraction": 0.25, "seed": 1})
    assert table.groupby("split").size().to_dict() == {"train": 9, "val": 3, "test": 6}
    assert sorted(table["length"].unique().tolist()) == [30, 33, 36, 39] and (table["n_channels"] == 3).all()
    table.to_parquet(tmp_path / "t.parquet")
    b = TS.tokenize(pd.read_parquet(tmp_path / "t.parquet"), {"length": 24, "horizon": 4, "patch_size": 4})
    assert b.tasks["classification"].class_names == ("flat", "saw", "sine")
    assert b.tasks["classification"].out_dim == 3 and b.tasks["forecasting"].out_shape == (3, 4)
    assert b.meta["splits"] == {"train": 9, "val": 3, "test": 6}
    assert b.get("train", "x").shape == (9, 3, 24) and b.get("test", "y.forecasting").shape == (6, 3, 4)
    assert b.meta["tokenizer"] == {"kind": "time_patch", "in_channels": 3, "length": 24, "patch_size": 4}
    assert sorted(np.bincount(b.get("test", "y.classification")).tolist()) == [2, 2, 2]

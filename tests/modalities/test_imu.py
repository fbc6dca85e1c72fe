"""Tests of the IMU modality (.ts line-by-line reader, BasicMotions sample data, windowed tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.imu import ImuModality
from omnivec2_pipelines.formats.sktime_data import bundled_ts_dir as _bundled_ts_dir

IMU = ImuModality()
HEADER = """# toy wrist IMU: ax ay az gx gy gz
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 3
@equalLength false
@classLabel true sit jog
@data
"""
TRAIN = HEADER + """0,0,0,0:1,1,1,1:0,0.1,0,0.1:sit
0,3,-3,3,-3,3:1,2,0,2,0,2:0,1,-1,1,-1,1:jog

0.1,0,0.1,0,0:1,1,1,1,1:0,0,0,0,0:sit
2,-2,2,-2,2,-2,2:0,3,0,3,0,3,0:1,-1,1,-1,1,-1,1:jog
"""
TEST = HEADER + """0,0,0.2,0:1,1,1,1:0,0,0,0:sit
-3,3,-3,3,-3:2,0,2,0,2:1,-1,1,-1,1:jog
"""


def _toy(root: Path, train: str = TRAIN, test: str = TEST) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Toy_TRAIN.ts").write_text(train)
    (root / "Toy_TEST.ts").write_text(test)
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return IMU.read({"format": "ucr_ts", "path": str(root), **kw})


def test_sample_data_copies_bundled_basicmotions(tmp_path: Path) -> None:
    man = IMU.make_sample_data(tmp_path / "a", {})
    assert man["name"] == "BasicMotions" and "(real)" in man["source"] and man["series"] == 80
    assert man["classes"] == ["Badminton", "Running", "Standing", "Walking"]
    src = _bundled_ts_dir("BasicMotions")
    for split in ("TRAIN", "TEST"):
        assert (tmp_path / "a" / f"BasicMotions_{split}.ts").read_bytes() == \
            (src / f"BasicMotions_{split}.ts").read_bytes()
    (tmp_path / "a" / "stale.ts").write_text("x")
    IMU.make_sample_data(tmp_path / "a", {})
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["BasicMotions_TEST.ts", "BasicMotions_TRAIN.ts"]
    t = _read(tmp_path / "a", val_fraction=0.0)
    assert (t["n_channels"] == 6).all() and (t["length"] == 100).all()
    assert t["split"].value_counts().to_dict() == {"train": 40, "test": 40}


def test_read_toy_unequal_lengths(tmp_path: Path) -> None:
    t = _read(_toy(tmp_path / "toy"), val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert len(t) == 6 and t["sample_id"].is_unique
    assert dict(zip(t["label_name"], t["label"])) == {"jog": 0, "sit": 1}
    row = t[t["sample_id"] == "Toy_TRAIN/000014"].iloc[0]  # 4th series, on line 14
    assert (row["n_channels"], row["length"], row["source_line"], row["label_name"]) == (3, 7, 14, "jog")
    np.testing.assert_array_equal(np.asarray(row["values"]).reshape(3, 7)[1], [0, 3, 0, 3, 0, 3, 0])
    assert sorted(t["length"].unique().tolist()) == [4, 5, 6, 7]


def _toy_imu(root: Path, n_train: int = 6, n_test: int = 3, length: int = 40, seed: int = 0) -> Path:
    """Generated 6-channel IMU recordings: 'idle' (gravity + noise) vs 'wave' (oscillating gyro)."""
    rng = np.random.default_rng(seed)
    header = ("@problemName Wave\n@univariate false\n@dimensions 6\n@equalLength false\n"
              "@classLabel true idle wave\n@data\n")
    for split, n in (("TRAIN", n_train), ("TEST", n_test)):
        lines = []
        for i in range(n):
            for cls in ("idle", "wave"):
                t = np.arange(length + i)
                x = rng.normal(0, 0.05, (6, len(t)))
                x[2] += 9.81
                if cls == "wave":
                    x[3:] += 2.0 * np.sin(2 * np.pi * t / 8 + rng.uniform(0, 6))
                lines.append(":".join(",".join(f"{v:.4f}" for v in ch) for ch in x) + f":{cls}")
        root.mkdir(parents=True, exist_ok=True)
        (root / f"Wave_{split}.ts").write_text(header + "\n".join(lines) + "\n")
    return root


def test_user_path_round_trip_windows(tmp_path: Path) -> None:
    """A user data set overrides the default: classes, counts and channels come from it."""
    table = _read(_toy_imu(tmp_path / "w"), val_fraction=0.0)
    table.to_parquet(tmp_path / "t.parquet")
    b = IMU.tokenize(pd.read_parquet(tmp_path / "t.parquet"), {"length": 20, "patch_size": 5, "stride": 10})
    assert b.tasks["classification"].class_names == ("idle", "wave")
    assert b.meta["recordings"] == {"train": 12, "test": 6}
    # recording lengths 40..45 → starts 0,10,20 + one end-aligned window when the tail is missed
    n_win = sum(3 + ((n - 20) % 10 != 0) for n in table[table["split"] == "test"]["length"])
    assert b.get("test", "x").shape == (n_win, 6, 20) and b.meta["splits"]["test"] == n_win
    assert b.meta["tokenizer"] == {"kind": "time_patch", "in_channels": 6, "length": 20, "patch_size": 5}
    feats = IMU.baseline_features(b.get("train", "x"), b.meta)
    assert feats.shape == (len(b.get("train", "x")), 30) and feats.dtype == np.float32
    y = b.get("train", "y.classification")
    gyro_std = feats[:, 6 + 3]  # std of channel 3 (gyro x)
    assert gyro_std[y == 1].min() > gyro_std[y == 0].max()


def test_tokenize_shapes_normalisation_meta(tmp_path: Path) -> None:
    table = _read(_toy(tmp_path / "toy"), val_fraction=0.0)
    b = IMU.tokenize(table, {"length": 6, "patch_size": 4})
    x = b.get("train", "x")
    assert x.shape == (4, 3, 6) and x.dtype == np.float32 and b.get("test", "x").shape == (2, 3, 6)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1.0, atol=1e-4)
    norm = b.meta["normalization"]
    assert norm["kind"] == "channel" and len(norm["mean"]) == 3
    row = table[table["split"] == "test"].iloc[1]  # jog, 5 steps → resampled to 6
    raw = np.asarray(row["values"]).reshape(3, 5)
    res = np.stack([np.interp(np.linspace(0, 4, 6), np.arange(5), ch) for ch in raw])
    np.testing.assert_allclose(b.get("test", "x")[1], (res - np.array(norm["mean"])[:, None])
                               / np.array(norm["std"])[:, None], atol=1e-5)
    assert b.get("test", "y.classification").tolist() == [1, 0] and b.meta["splits"] == {"train": 4, "test": 2}
    assert set(b.tasks) == {"classification"} and b.meta["modality"] == "imu"
    # per-series normalisation and crop/pad: padding stays 0, real steps are z-scored per window
    s = IMU.tokenize(table, {"length": 6, "patch_size": 3, "normalize": "series", "fit": "crop_pad"})
    first = s.get("train", "x")[0]  # sit, 4 steps + 2 padding
    np.testing.assert_array_equal(first[:, 4:], 0.0)
    np.testing.assert_allclose(first[0, :4].mean(), 0.0, atol=1e-6)
    assert s.meta["windows"] == {"length": 6, "stride": None, "fit": "crop_pad"}


def test_tokenize_bad_params(tmp_path: Path) -> None:
    table = _read(_toy(tmp_path / "toy"), val_fraction=0.0)
    for params, key in (({"length": 0, "patch_size": 2}, "length"), ({"length": 4, "patch_size": 5}, "patch_size"),
                        ({"length": 4, "patch_size": 2, "stride": -1}, "stride"),
                        ({"length": 4, "patch_size": 2, "normalize": "global"}, "normalize"),
                        ({"length": 4, "patch_size": 2, "fit": "stretch"}, "fit")):
        with pytest.raises(DataError, match=rf"imu\.tokenization\.{key}"):
            IMU.tokenize(table, params)
    with pytest.raises(DataError, match="train"):
        IMU.tokenize(table[table["split"] == "test"], {"length": 4, "patch_size": 2})


@pytest.mark.parametrize("case", ["no_path", "format", "empty_folder", "channels", "nan", "missing",
                                  "truncated", "not_utf8", "header_channels", "train_test_channels"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = tmp_path / "toy"
    train, test = TRAIN, TEST
    src = {"format": "ucr_ts", "path": str(root)}
    expect = {"no_path": "nowhere does not exist",
              "format": r"format='csv' is not supported",
              "empty_folder": r"found 0 <Name>_TRAIN\.ts/<Name>_TEST\.ts pairs .*imu\.source\.name",
              "channels": r"Toy_TRAIN\.ts:11: series has 2 channel\(s\), expected 3",
              "nan": r"Toy_TEST\.ts:10: channel 0 has NaN",
              "missing": r"Toy_TRAIN\.ts:10: channel 2 has a missing value",
              "truncated": r"Toy_TEST\.ts:11: series has 1 channel\(s\), expected 3",
              "not_utf8": r"Toy_TRAIN\.ts: not UTF-8",
              "header_channels": r"@dimensions 3 but imu\.source\.n_channels=6",
              "train_test_channels": r"Toy_TEST\.ts: series have 2 channel\(s\) but Toy_TRAIN\.ts has 3"}[case]
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "format":
        src["format"] = "csv"
    elif case == "channels":
        train = TRAIN.replace("0,3,-3,3,-3,3:1,2,0,2,0,2:0,1,-1,1,-1,1:jog", "0,3,-3,3,-3,3:1,2,0,2,0,2:jog")
    elif case == "nan":
        test = TEST.replace("0,0,0.2,0:", "0,NaN,0.2,0:")
    elif case == "missing":
        train = TRAIN.replace("1,1,1,1:0,0.1,0,0.1:sit", "1,1,1,1:0,?,0,0.1:sit")
    elif case == "truncated":
        test = TEST[: TEST.index("2,0,2,0,2:") + 9]  # cut inside the last series
    elif case == "header_channels":
        src["n_channels"] = 6
    elif case == "train_test_channels":
        test = TEST.replace("@dimensions 3", "@dimensions 2").replace("0,0,0.2,0:1,1,1,1:0,0,0,0:sit",
                                                                      "0,0,0.2,0:1,1,1,1:sit")
        test = test.replace("-3,3,-3,3,-3:2,0,2,0,2:1,-1,1,-1,1:jog", "-3,3,-3,3,-3:2,0,2,0,2:jog")
    if case == "empty_folder":
        root.mkdir()
    elif case != "no_path":
        _toy(root, train, test)
        if case == "not_utf8":
            (root / "Toy_TRAIN.ts").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=expect):
        IMU.read(src)


def test_skip_policy_counts_bad_series(tmp_path: Path) -> None:
    train = TRAIN.replace("0,3,-3,3,-3,3:1,2,0,2,0,2:0,1,-1,1,-1,1:jog", "0,3,-3,3,-3,3:1,2,0,2,0,2:jog")
    train = train.replace("1,1,1,1:0,0.1,0,0.1:sit", "1,1,1,1:0,nan,0,0.1:sit")
    t = _read(_toy(tmp_path / "toy", train=train), on_error="skip", val_fraction=0.0)
    rep = t.attrs["ingestion_errors"]
    assert rep["skipped"] == 2 and rep["by_reason"] == {"nan": 1, "channels": 1}
    assert sorted(f["file"].rsplit("/", 1)[-1] for f in rep["files"]) == ["Toy_TRAIN.ts:10", "Toy_TRAIN.ts:11"]
    assert len(t) == 4 and set(t["source_line"][t["split"] == "train"]) == {13, 14}
    all_bad = "\n".join(ln if ln.startswith(("@", "#")) else "1,2:jog" for ln in TRAIN.splitlines() if ln)
    with pytest.raises(DataError, match=r"Toy_TRAIN\.ts: no readable series"):
        _read(_toy(tmp_path / "bad", train=all_bad), on_error="skip")

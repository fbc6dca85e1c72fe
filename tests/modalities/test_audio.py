"""Tests of the audio modality (ESC-50 reader, synthetic sample data, log-mel tokenization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from omnivec2_pipelines.modalities import DataError, get_modality
from omnivec2_pipelines.sample_data.audio import SAMPLE_CATEGORIES

AUD = get_modality("audio")
SAMPLE = {"sample_rate": 8000, "clip_seconds": 0.25, "clips_per_class_per_fold": 1, "seed": 0}
TOK = {"sample_rate": 8000, "clip_seconds": 0.25, "n_fft": 256, "hop_length": 64, "n_mels": 16,
       "patch_size": [4, 8]}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _esc(root: Path) -> Path:
    """Hand-written ESC-50 tree: unequal lengths, a stereo and a 16 kHz file, sparse targets."""
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    specs = [  # (fold, target, category, frames, channels, rate)
        (1, 7, "dog", 2000, 1, 8000), (1, 3, "rain", 1500, 2, 8000), (2, 7, "dog", 2500, 1, 8000),
        (2, 3, "rain", 900, 1, 16000), (3, 7, "dog", 1200, 1, 8000), (3, 3, "rain", 2100, 1, 8000),
        (1, 10, "wind", 1800, 1, 8000), (2, 10, "wind", 1700, 1, 8000), (3, 10, "wind", 1600, 1, 8000),
        (1, 7, "dog", 1000, 1, 8000), (1, 3, "rain", 1100, 1, 8000), (1, 10, "wind", 1300, 1, 8000),
    ]
    for i, (fold, target, cat, n, ch, sr) in enumerate(specs):
        name = f"{fold}-{i}-A-{target}.wav"
        sf.write(root / "audio" / name, (rng.standard_normal((n, ch)) * 0.1).astype(np.float32), sr,
                 subtype="PCM_16")
        rows.append({"filename": name, "fold": fold, "target": target, "category": cat})
    pd.DataFrame(rows).to_csv(root / "meta" / "esc50.csv", index=False)
    (root / "audio" / "unlisted.wav").write_bytes(b"not listed, ignored")
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return AUD.read({"format": "esc50", "path": str(root), "test_folds": [2], "val_folds": [3], **kw})


def test_sample_data_layout_and_determinism(tmp_path: Path) -> None:
    man = AUD.make_sample_data(tmp_path / "a", SAMPLE)
    assert "synthetic" in man["source"] and man["files"] == 5 * len(SAMPLE_CATEGORIES)
    assert man["classes"] == list(SAMPLE_CATEGORIES) and len(SAMPLE_CATEGORIES) >= 5
    meta = pd.read_csv(tmp_path / "a" / "meta" / "esc50.csv")
    assert list(meta.columns) == ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    assert sorted(meta["fold"].unique()) == [1, 2, 3, 4, 5]
    assert sorted(meta["target"].unique()) == list(range(len(SAMPLE_CATEGORIES)))
    r = meta.iloc[7]
    assert r["filename"] == f"{r['fold']}-{r['src_file']}-A-{r['target']}.wav"
    assert (meta["category"] == [SAMPLE_CATEGORIES[t] for t in meta["target"]]).all()
    info = sf.info(tmp_path / "a" / "audio" / r["filename"])
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (8000, 2000, 1, "PCM_16")
    AUD.make_sample_data(tmp_path / "b", SAMPLE)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    AUD.make_sample_data(tmp_path / "c", {**SAMPLE, "seed": 1})
    assert _files(tmp_path / "c") != files


def test_sample_events_are_shorter_than_clip(tmp_path: Path) -> None:
    AUD.make_sample_data(tmp_path / "a", {**SAMPLE, "clip_seconds": 1.0})
    t = AUD.read({"format": "esc50", "path": str(tmp_path / "a")})
    for wav in t["waveform"]:
        env = np.abs(np.asarray(wav))
        loud = env > 0.5 * env.max()
        assert loud.any() and np.flatnonzero(loud)[-1] - np.flatnonzero(loud)[0] < 0.9 * len(env)


def test_read_small_tree(tmp_path: Path) -> None:
    root = _esc(tmp_path / "esc")
    t = _read(root)
    assert len(t) == 12 and t["sample_id"].is_unique
    assert dict(zip(t["label_name"], t["label"])) == {"rain": 0, "dog": 1, "wind": 2}  # targets 3, 7, 10
    assert t.groupby("split").size().to_dict() == {"test": 3, "train": 6, "val": 3}
    stereo = t[t["sample_id"] == "1-1-A-3"].iloc[0]
    raw, _ = sf.read(root / "audio" / "1-1-A-3.wav", dtype="float32")
    np.testing.assert_allclose(stereo["waveform"], raw.mean(axis=1), atol=1e-6)
    assert stereo["num_frames"] == 1500 and stereo["source_file"] == "audio/1-1-A-3.wav"
    assert t[t["sample_id"] == "2-3-A-3"].iloc[0]["sample_rate"] == 16000
    assert "unlisted" not in " ".join(t["sample_id"])
    default = AUD.read({"format": "esc50", "path": str(root), "test_folds": [2], "val_fraction": 0.0})
    assert set(default["split"]) == {"train", "test"}


def test_tokenize_shapes_normalisation_meta(tmp_path: Path) -> None:
    table = _read(_esc(tmp_path / "esc"))
    table.to_parquet(tmp_path / "t.parquet")
    b = AUD.tokenize(pd.read_parquet(tmp_path / "t.parquet"), TOK)
    x = b.get("train", "x")
    frames = 2000 // 64 + 1  # 32 frames, center=True
    assert x.dtype == np.float32 and x.shape == (6, 1, 16, frames - frames % 8)
    assert b.get("test", "x").shape[0] == 3 and b.get("val", "x").shape[0] == 3
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3
    assert np.isfinite(b.get("test", "x")).all()
    y = b.get("test", "y.classification")
    assert y.dtype == np.int64 and sorted(y.tolist()) == [0, 1, 2]
    m = b.meta
    assert m["tokenizer"] == {"kind": "patch2d", "in_channels": 1, "input_size": [16, 32],
                              "patch_size": [4, 8], "aligned": False}  # time axis: no place-wise readout
    assert m["sample_rate"] == 8000 and m["splits"] == {"train": 6, "val": 3, "test": 3}
    assert b.tasks["classification"].class_names == ("rain", "dog", "wind")
    assert set(m["normalization"]) >= {"mean", "std"}
    with pytest.raises(DataError, match=r"audio\.tokenization\.patch_size"):
        AUD.tokenize(table, {**TOK, "patch_size": [5, 8]})
    with pytest.raises(DataError, match=r"audio\.tokenization\.n_fft"):
        AUD.tokenize(table, {**TOK, "n_fft": "big"})


def test_tokenize_resamples_other_rates(tmp_path: Path) -> None:
    table = _read(_esc(tmp_path / "esc"))
    sixteen = table[table["sample_rate"] == 16000]
    assert len(sixteen) == 1
    b = AUD.tokenize(table, TOK)
    same = AUD.tokenize(table, TOK)
    np.testing.assert_array_equal(b.get("test", "x"), same.get("test", "x"))  # deterministic
    # a 900-frame 16 kHz clip becomes 450 frames at 8 kHz: the tail of the 2000-sample crop is padding
    idx = list(table[table["split"] == "test"]["sample_id"]).index(sixteen.iloc[0]["sample_id"])
    spec = b.get("test", "x")[idx, 0]
    assert spec[:, -5:].std() < 1e-3 < spec[:, :5].std()


def _wav(root: Path, name: str, data: bytes | np.ndarray, subtype: str = "PCM_16") -> None:
    if isinstance(data, bytes):
        (root / "audio" / name).write_bytes(data)
    else:
        sf.write(root / "audio" / name, data, 8000, subtype=subtype)


@pytest.mark.parametrize("case", ["no_path", "no_csv", "csv_columns", "missing_file", "garbage",
                                  "empty", "nan", "no_test_fold"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = _esc(tmp_path / "esc")
    src = {"format": "esc50", "path": str(root), "test_folds": [2]}
    csv = root / "meta" / "esc50.csv"
    first = "1-0-A-7.wav"
    expect = {"no_path": r"nowhere does not exist", "no_csv": r"esc50\.csv: metadata CSV not found",
              "csv_columns": r"esc50\.csv: missing required column\(s\) \['category'\]",
              "missing_file": rf"{first}: listed in .* but missing",
              "garbage": rf"{first}: unreadable or corrupt", "empty": rf"{first}: audio has zero frames",
              "nan": rf"{first}: audio contains NaN", "no_test_fold": r"no rows for split 'test'"}[case]
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "no_csv":
        csv.unlink()
    elif case == "csv_columns":
        pd.read_csv(csv).drop(columns="category").to_csv(csv, index=False)
    elif case == "missing_file":
        (root / "audio" / first).unlink()
    elif case == "garbage":
        _wav(root, first, b"RIFF\x00\x01garbage" * 10)
    elif case == "empty":
        _wav(root, first, np.zeros(0, dtype=np.float32))
    elif case == "nan":
        _wav(root, first, np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), subtype="FLOAT")
    elif case == "no_test_fold":
        src["test_folds"] = [9]
    with pytest.raises(DataError, match=expect):
        AUD.read(src)


def test_skip_policy_leaves_out_bad_clips(tmp_path: Path) -> None:
    root = _esc(tmp_path / "esc")
    _wav(root, "1-0-A-7.wav", np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), subtype="FLOAT")
    (root / "audio" / "1-1-A-3.wav").unlink()  # listed but missing
    cut = root / "audio" / "3-4-A-7.wav"
    cut.write_bytes(cut.read_bytes()[:600])  # cut inside the sample data
    _wav(root, "2-7-A-10.wav", b"RIFF\x00\x01garbage" * 10)  # corrupt
    t = _read(root, on_error="skip")
    rep = t.attrs["ingestion_errors"]
    assert rep["on_error"] == "skip" and rep["skipped"] == 4
    assert rep["by_reason"] == {"nan": 1, "missing": 1, "truncated": 1, "corrupt": 1}
    assert sorted(Path(f["file"]).name for f in rep["files"]) == [
        "1-0-A-7.wav", "1-1-A-3.wav", "2-7-A-10.wav", "3-4-A-7.wav"]
    assert len(t) == 8 and not {"1-0-A-7", "1-1-A-3", "3-4-A-7", "2-7-A-10"} & set(t["sample_id"])
    assert dict(zip(t["label_name"], t["label"])) == {"rain": 0, "dog": 1, "wind": 2}
    # the default still raises, naming the bad file, with its reason
    rows = pd.read_csv(root / "meta" / "esc50.csv")
    bad_files = [f for f in rows["filename"] if Path(f).stem not in set(t["sample_id"])]
    for name, msg, reason in (("1-0-A-7.wav", "audio contains NaN", "nan"),
                              ("1-1-A-3.wav", "listed in .* but missing", "missing"),
                              ("3-4-A-7.wav", "truncated WAV file", "truncated"),
                              ("2-7-A-10.wav", "unreadable or corrupt", "corrupt")):
        others = [f for f in bad_files if f != name]
        rows[~rows["filename"].isin(others)].to_csv(root / "meta" / "esc50.csv", index=False)
        with pytest.raises(DataError, match=rf"{name}: {msg}") as err:
            _read(root)
        assert err.value.reason == reason
    clean = _read(_esc(tmp_path / "clean"))
    assert clean.attrs["ingestion_errors"]["skipped"] == 0


def test_skip_policy_relabels_and_whole_dataset_problems_raise(tmp_path: Path) -> None:
    root = _esc(tmp_path / "esc")
    for name in ("1-0-A-7.wav", "2-2-A-7.wav", "3-4-A-7.wav", "1-9-A-7.wav"):  # every dog clip
        _wav(root, name, b"garbage")
    t = _read(root, on_error="skip")
    assert t.attrs["ingestion_errors"]["by_reason"] == {"corrupt": 4}
    assert dict(zip(t["label_name"], t["label"])) == {"rain": 0, "wind": 1}  # labels stay 0..K-1
    assert set(t["target"]) == {3, 10}
    for name in ("2-3-A-3.wav", "2-7-A-10.wav"):  # the rest of test fold 2
        _wav(root, name, b"garbage")
    with pytest.raises(DataError, match=r"no readable 'test' clips left"):
        _read(root, on_error="skip")
    for p in (root / "audio").iterdir():
        p.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"all 12 listed clip\(s\) were skipped"):
        _read(root, on_error="skip")
    csv = root / "meta" / "esc50.csv"
    pd.read_csv(csv).drop(columns="fold").to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"esc50\.csv: missing required column\(s\) \['fold'\]"):
        _read(root, on_error="skip")
    with pytest.raises(DataError, match=r"audio\.source\.on_error='ignore'; expected 'raise' or 'skip'"):
        _read(_esc(tmp_path / "ok"), on_error="ignore")


def test_user_path_round_trip(tmp_path: Path) -> None:
    """A user data set overrides the default: classes, counts and lengths come from it."""
    root = tmp_path / "u"
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    rows, rng = [], np.random.default_rng(2)
    per_fold = {"bell": 2, "horn": 1}  # unequal class sizes, targets 20 and 40
    for fold in (1, 2, 3):
        for cat, target in (("bell", 20), ("horn", 40)):
            for i in range(per_fold[cat]):
                name = f"{fold}-{cat}{i}-A-{target}.wav"
                n = 3000 + 500 * i
                tone = np.sin(2 * np.pi * (440 if cat == "bell" else 150) * np.arange(n) / 8000)
                sf.write(root / "audio" / name, (0.3 * tone + rng.normal(0, 0.01, n)).astype(np.float32),
                         8000, subtype="PCM_16")
                rows.append({"filename": name, "fold": fold, "target": target, "category": cat})
    pd.DataFrame(rows).to_csv(root / "meta" / "esc50.csv", index=False)
    table = AUD.read({"format": "esc50", "path": str(root), "test_folds": [3], "val_fraction": 0.0})
    assert table.groupby(["split", "label_name"]).size().to_dict() == {
        ("test", "bell"): 2, ("test", "horn"): 1, ("train", "bell"): 4, ("train", "horn"): 2}
    assert sorted(table["num_frames"].unique().tolist()) == [3000, 3500]
    table.to_parquet(tmp_path / "t.parquet")
    b = AUD.tokenize(pd.read_parquet(tmp_path / "t.parquet"), TOK)
    task = b.tasks["classification"]
    assert task.class_names == ("bell", "horn") and task.out_dim == 2
    assert b.meta["splits"] == {"train": 6, "test": 3}
    assert b.get("train", "x").shape == (6, 1, 16, 32) and b.get("test", "x").shape == (3, 1, 16, 32)
    assert np.bincount(b.get("train", "y.classification")).tolist() == [4, 2]

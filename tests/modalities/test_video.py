"""Tests of the video modality (class-folder reader via PyAV, generated motion clips, tubelet tokenization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.video import VideoModality, load_video
from omnivec2_pipelines.sample_data.video import SAMPLE_CLASSES, write_video

VID = VideoModality()
TOK = {"n_frames": 4, "size": [8, 8], "tubelet": [2, 4, 4]}
SMALL = {"size": 16, "min_frames": 4, "max_frames": 6, "clips_per_class": 3, "test_fraction": 0.34, "seed": 3}


def _clip(rng: np.random.Generator, t: int, h: int, w: int, level: int | None = None) -> np.ndarray:
    """Smooth random clip (codec-friendly): a constant colour per frame plus a bright moving bar."""
    base = rng.integers(20, 200, size=3) if level is None else np.full(3, level)
    clip = np.empty((t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        clip[i] = base
        clip[i, :, (2 * i) % w] = 250
    return clip


def _tree(root: Path, with_val: bool = False) -> Path:
    """Two classes, mp4 and avi clips of different sizes and lengths."""
    rng = np.random.default_rng(1)
    splits = (("train", 3), ("test", 1)) + ((("val", 1),) if with_val else ())
    for split, n in splits:
        for cls in ("wave", "jump"):
            for i in range(n):
                d = root / split / cls
                d.mkdir(parents=True, exist_ok=True)
                h, w = (16, 24) if i % 2 else (8, 8)
                write_video(d / f"{i}.{'avi' if i == 1 else 'mp4'}", _clip(rng, 3 + 2 * i, h, w), fps=10)
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return VID.read({"format": "classfolders", "path": str(root), **kw})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_data_layout_deterministic_learnable(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    man = VID.make_sample_data(a, SMALL)
    assert "generated" in man["source"] and man["files"] == 18 and man["classes"] == list(SAMPLE_CLASSES)
    files = _files(a)
    assert len(files) == 18 and all(k.endswith(".mp4") for k in files)
    assert sorted(p.name for p in a.iterdir()) == ["test", "train"]
    for split, n in (("train", 2), ("test", 1)):
        assert sorted(p.name for p in (a / split).iterdir()) == list(SAMPLE_CLASSES)
        assert all(len(list((a / split / c).iterdir())) == n for c in SAMPLE_CLASSES)
    (b / "stale").mkdir(parents=True)
    VID.make_sample_data(b, SMALL)
    assert _files(b) == files  # same bytes, stale content replaced
    assert not list(tmp_path.glob(".*"))
    # the class is visible in the frames: a right-moving square's bright centroid moves right
    video, fps = load_video(next((a / "train" / "move_right").iterdir()))
    assert video.shape[1:] == (16, 16, 3) and 4 <= len(video) <= 6 and fps == 8.0
    g = video.astype(float).max(-1)
    xs = [np.nonzero(f > (f.max() + np.median(f)) / 2)[1].mean() for f in g]
    assert xs[-1] > xs[0] + 2


def test_read_tree_with_unequal_sizes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "vid")
    t = _read(root, val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert t["sample_id"].is_unique and len(t) == 8
    assert dict(zip(t["label_name"], t["label"])) == {"jump": 0, "wave": 1}
    assert set(t["split"]) == {"train", "test"} and (t["channels"] == 3).all()
    row = t[t["sample_id"] == "train/wave/1"].iloc[0]
    assert row["source_file"] == "train/wave/1.avi"
    assert (row["n_frames"], row["height"], row["width"], row["fps"]) == (5, 16, 24, 10.0)
    video, _ = load_video(root / "train/wave/1.avi")
    np.testing.assert_array_equal(np.asarray(row["frames"]).reshape(5, 16, 24, 3), video)
    assert t[t["sample_id"] == "train/jump/2"].iloc[0][["n_frames", "height", "width"]].tolist() == [7, 8, 8]
    assert t.attrs["ingestion_errors"]["skipped"] == 0
    with_val = _read(root, val_fraction=0.34, seed=0)
    assert with_val.groupby("label_name")["split"].apply(lambda s: (s == "val").sum()).tolist() == [1, 1]
    explicit = _read(_tree(tmp_path / "v", with_val=True))
    assert (explicit["split"] == "val").sum() == 2 and explicit["sample_id"].str.startswith("val/").sum() == 2


def test_user_path_round_trip(tmp_path: Path) -> None:
    """A user's own tree: classes, counts and shapes come from that data."""
    root = tmp_path / "mine"
    rng = np.random.default_rng(7)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("a_run", "b_sit", "c_fly"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                write_video(root / split / cls / f"c{i}.mp4", _clip(rng, 6, 12, 20), fps=25)
    b = VID.tokenize(_read(root, val_fraction=0.25, seed=1), {"n_frames": 6, "size": [12, 20], "tubelet": [3, 4, 4]})
    assert b.tasks["classification"].class_names == ("a_run", "b_sit", "c_fly")
    assert b.meta["splits"] == {"train": 9, "val": 3, "test": 6}
    assert b.get("train", "x").shape == (9, 3, 6, 12, 20)
    assert np.bincount(b.get("test", "y.classification")).tolist() == [2, 2, 2]


def test_tokenize_shapes_sampling_normalisation_meta(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "vid"), val_fraction=0.0)
    table.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    b, ref = VID.tokenize(back, TOK), VID.tokenize(table, TOK)
    for k in ref.arrays:
        np.testing.assert_array_equal(b.arrays[k], ref.arrays[k])
    x = b.get("train", "x")
    assert x.shape == (6, 3, 4, 8, 8) and x.dtype == np.float32 and b.get("test", "x").shape == (2, 3, 4, 8, 8)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3, 4)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2, 3, 4)), 1.0, atol=1e-4)
    y = b.get("train", "y.classification")
    assert y.dtype == np.int64 and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    m = b.meta
    assert m["modality"] == "video" and m["pretrain_input_key"] == "x" and m["splits"] == {"train": 6, "test": 2}
    assert m["tokenizer"] == {"kind": "tubelet", "in_channels": 3, "n_frames": 4, "input_size": [8, 8],
                              "tubelet": [2, 4, 4]}
    task = b.tasks["classification"]
    assert (task.kind, task.out_dim, task.class_names) == ("classification", 2, ("jump", "wave"))
    mean = np.array(m["normalization"]["mean"])[:, None, None, None]
    std = np.array(m["normalization"]["std"])[:, None, None, None]
    test_rows = table[table["split"] == "test"].reset_index(drop=True)
    # test clip 0 (3 frames of 8x8) is shorter than n_frames=4: its last frame is repeated
    r0 = test_rows.iloc[0]
    raw = np.asarray(r0["frames"], dtype=np.float32).reshape(r0["n_frames"], 8, 8, 3).transpose(3, 0, 1, 2) / 255
    expect = (raw[:, [0, 1, 2, 2]] - mean) / std  # train statistics applied to test
    np.testing.assert_allclose(b.get("test", "x")[0], expect, atol=1e-5)
    # a 7-frame clip sampled to 4 frames takes frames round(linspace(0, 6, 4)) = 0, 2, 4, 6
    long_row = table[table["n_frames"] == 7].iloc[0]
    part = table[table["split"] == "train"].reset_index(drop=True)
    i = int(np.flatnonzero(part["sample_id"] == long_row["sample_id"])[0])
    raw = np.asarray(long_row["frames"], dtype=np.float32).reshape(7, 8, 8, 3).transpose(3, 0, 1, 2) / 255
    np.testing.assert_allclose(b.get("train", "x")[i], (raw[:, [0, 2, 4, 6]] - mean) / std, atol=1e-5)
    # resized clips: bilinear to 8x8; grayscale gives one channel
    g = VID.tokenize(table, {**TOK, "grayscale": True})
    assert g.get("train", "x").shape == (6, 1, 4, 8, 8) and g.meta["tokenizer"]["in_channels"] == 1
    feats = VID.baseline_features(x, m)
    assert feats.shape == (6, 3 * 4 * 8 * 8) and feats.dtype == np.float32


def test_tokenize_bad_params_and_payload(tmp_path: Path) -> None:
    table = _read(_tree(tmp_path / "vid"), val_fraction=0.0)
    cases = [({**TOK, "tubelet": [3, 4, 4]}, r"video\.tokenization\.tubelet"),
             ({**TOK, "size": [8]}, r"video\.tokenization\.size"),
             ({**TOK, "n_frames": 0}, r"video\.tokenization\.n_frames"),
             ({**TOK, "grayscale": "yes"}, r"video\.tokenization\.grayscale")]
    for params, match in cases:
        with pytest.raises(DataError, match=match):
            VID.tokenize(table, params)
    with pytest.raises(DataError, match="train"):
        VID.tokenize(table[table["split"] == "test"], TOK)
    bad = table.copy()
    bad.loc[0, "n_frames"] = 99  # payload no longer matches its shape columns
    with pytest.raises(DataError, match=rf"{bad.loc[0, 'source_file']}: frames has"):
        VID.tokenize(bad, TOK)
    bad = table.copy()
    bad.loc[1, "channels"] = 1
    with pytest.raises(DataError, match=rf"{bad.loc[1, 'source_file']}: channels=1"):
        VID.tokenize(bad, TOK)


def _make_zero_frame_avi(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 8, 8, "yuv420p"
        c.start_encoding()


@pytest.mark.parametrize("case", ["no_path", "format", "no_test", "empty_root", "empty_class", "empty_split",
                                  "garbage", "truncated", "zero_frames", "not_video", "stray_file"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = _tree(tmp_path / "vid")
    src = {"format": "classfolders", "path": str(root)}
    bad_file = None
    expect = {"no_path": r"nowhere does not exist",
              "format": r"format='frames' is not supported",
              "no_test": r"missing split folder\(s\) \['test'\]",
              "empty_root": r"missing split folder\(s\) \['train', 'test'\]",
              "empty_class": r"test/bird: class folder is empty",
              "empty_split": r"vid/val: split folder is empty",
              "garbage": r"wave/0\.mp4: unreadable, corrupt or truncated",
              "truncated": r"jump/2\.mp4: .*truncated",
              "zero_frames": r"jump/z\.avi: video has zero decodable frames",
              "not_video": r"notes\.txt: not a video file",
              "stray_file": r"loose\.mp4: unexpected file"}[case]
    if case == "no_path":
        src["path"] = str(tmp_path / "nowhere")
    elif case == "format":
        src["format"] = "frames"
    elif case in ("no_test", "empty_root"):
        import shutil

        shutil.rmtree(root / "test")
        if case == "empty_root":
            shutil.rmtree(root / "train")
    elif case == "empty_class":
        (root / "test" / "bird").mkdir()
    elif case == "empty_split":
        (root / "val").mkdir()
    elif case == "garbage":
        bad_file = root / "train/wave/0.mp4"
        bad_file.write_bytes(b"not a video at all" * 20)
    elif case == "truncated":
        bad_file = root / "train/jump/2.mp4"
        data = bad_file.read_bytes()
        bad_file.write_bytes(data[: len(data) - 200])
    elif case == "zero_frames":
        bad_file = root / "train/jump/z.avi"
        _make_zero_frame_avi(bad_file)
    elif case == "not_video":
        bad_file = root / "train/jump/notes.txt"
        bad_file.write_text("hello")
    elif case == "stray_file":
        (root / "train" / "loose.mp4").write_bytes(b"x")
    with pytest.raises(DataError, match=expect):
        VID.read(src)
    if bad_file is not None:  # a per-file problem: skipped and reported with on_error: skip
        t = VID.read({**src, "on_error": "skip", "val_fraction": 0.0})
        rel = bad_file.relative_to(root).as_posix()
        assert rel not in set(t["source_file"]) and len(t) == 8 - (case in ("garbage", "truncated"))
        rep = t.attrs["ingestion_errors"]
        assert rep["skipped"] == 1 and rep["files"][0]["file"] == str(bad_file)
        reason = {"garbage": "corrupt", "truncated": "truncated", "zero_frames": "empty",
                  "not_video": "invalid"}[case]
        assert rep["by_reason"] == {reason: 1}


def test_all_files_skipped_still_raises(tmp_path: Path) -> None:
    root = tmp_path / "vid"
    for split in ("train", "test"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "a" / "x.mp4").write_bytes(b"junk")
    with pytest.raises(DataError, match="no readable clips"):
        VID.read({"format": "classfolders", "path": str(root), "on_error": "skip"})
    with pytest.raises(DataError, match="on_error"):
        VID.read({"format": "classfolders", "path": str(root), "on_error": "ignore"})


def test_load_video_matches_encoder_input(tmp_path: Path) -> None:
    clip = _clip(np.random.default_rng(0), 5, 16, 16, level=100)
    write_video(tmp_path / "c.mp4", clip, fps=12)
    video, fps = load_video(tmp_path / "c.mp4")
    assert video.shape == clip.shape and video.dtype == np.uint8 and fps == 12.0
    assert np.abs(video.astype(int) - clip).mean() < 12  # lossy codec, but close
    Image.fromarray(video[0]).save(tmp_path / "frame.png")  # decodes to plain RGB frames

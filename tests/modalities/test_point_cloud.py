"""Tests of the point-cloud modality (ModelNet and part-segmentation readers, generated sample
data, unit-sphere tokenization)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import trimesh

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.point_cloud import (
    PointCloudModality,
    farthest_point_indices,
    normalize_unit_sphere,
)
from omnivec2_pipelines.sample_data.point_cloud import SAMPLE_PARTS, SAMPLE_PRIMITIVES, SAMPLE_SHAPES, write_off

PC = PointCloudModality()
SAMPLE = {"shapes_per_class": 3, "points_per_shape": 48, "meshes_per_class": 3, "seed": 0}
TOK = {"n_points": 32, "n_groups": 8, "group_size": 8}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _txt(path: Path, pts: np.ndarray, labels: np.ndarray, extra: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = [pts] + [np.full((len(pts), 1), 1.0)] * extra + [labels[:, None]]
    np.savetxt(path, np.concatenate(cols, axis=1), fmt="%.6f")


def _seg_tree(root: Path, shapes: bool = True, extra: int = 0) -> Path:
    """Part-labelled clouds of unequal sizes; label = 0 below z=0, 1 above (+2 for 'mug')."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 1)):
        for shape in ("table", "mug"):
            for i in range(n):
                m = 20 + 7 * i + (5 if shape == "mug" else 0)
                pts = rng.normal(size=(m, 3))
                lab = (pts[:, 2] > 0).astype(int) + (2 if shape == "mug" else 0)
                folder = root / split / shape if shapes else root / split
                _txt(folder / f"{shape}_{i}.txt", pts, lab, extra)
    return root


def _modelnet_tree(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 2), ("test", 1)):
        for i in range(n):
            box = trimesh.creation.box(extents=[1.0 + i, 1.0, 0.5])
            (root / "box" / split).mkdir(parents=True, exist_ok=True)
            write_off(root / "box" / split / f"b{i}.off", box.vertices, box.faces)
            (root / "sphere" / split).mkdir(parents=True, exist_ok=True)
            trimesh.creation.icosphere(subdivisions=1).export(root / "sphere" / split / f"s{i}.ply")
        (root / "cloud" / split).mkdir(parents=True, exist_ok=True)
        np.savetxt(root / "cloud" / split / "c0.xyz", rng.normal(size=(17 + len(split), 3)), fmt="%.5f")
        trimesh.PointCloud(rng.normal(size=(11, 3))).export(root / "cloud" / split / "c1.ply")
    (root / "README.txt").write_text("ModelNet-like test tree\n")
    return root


def _read_seg(root: Path, **kw) -> pd.DataFrame:
    return PC.read({"format": "segmentation_txt", "path": str(root), **kw})


def _read_mn(root: Path, **kw) -> pd.DataFrame:
    return PC.read({"format": "modelnet", "path": str(root), **kw})


def test_sample_data_layout_deterministic_both_tasks(tmp_path: Path) -> None:
    man = PC.make_sample_data(tmp_path / "a", SAMPLE)
    assert "generated" in man["source"] and "trimesh" in man["source"]
    assert man["classes"] == list(SAMPLE_SHAPES) and man["part_classes"] == list(SAMPLE_PARTS)
    assert man["files"] == 3 * len(SAMPLE_SHAPES) + 3 * len(SAMPLE_PRIMITIVES)
    a = tmp_path / "a"
    assert sorted(p.name for p in a.iterdir()) == ["classes.txt", "modelnet", "test", "train"]
    assert (a / "classes.txt").read_text().split() == list(SAMPLE_PARTS)
    assert sorted(p.name for p in (a / "train").iterdir()) == sorted(SAMPLE_SHAPES)
    assert sorted(p.name for p in (a / "modelnet").iterdir()) == sorted(SAMPLE_PRIMITIVES)
    assert sorted(p.name for p in (a / "modelnet" / "torus").iterdir()) == ["test", "train"]
    rows = np.loadtxt(next((a / "train" / "table").iterdir()))
    assert rows.shape == (48, 4) and set(rows[:, 3].astype(int)) <= {SAMPLE_PARTS.index("table_top"),
                                                                      SAMPLE_PARTS.index("table_leg")}
    files = _files(a)
    PC.make_sample_data(tmp_path / "b", SAMPLE)
    assert _files(tmp_path / "b") == files
    PC.make_sample_data(tmp_path / "c", {**SAMPLE, "seed": 1})
    assert _files(tmp_path / "c") != files
    assert not list(tmp_path.glob(".*"))
    # the default source (segmentation_txt at the sample root) gives BOTH tasks
    b = PC.tokenize(_read_seg(a, val_fraction=0.0), TOK)
    assert set(b.tasks) == {"classification", "segmentation"}
    assert b.tasks["classification"].class_names == SAMPLE_SHAPES
    assert b.tasks["segmentation"].class_names == SAMPLE_PARTS and b.tasks["segmentation"].kind == "segmentation"
    assert b.meta["segmentation"]["part_names"] == list(SAMPLE_PARTS)
    # the ModelNet subfolder is the classification-only path
    mn = PC.tokenize(_read_mn(a / "modelnet", n_points=64, val_fraction=0.0), TOK)
    assert set(mn.tasks) == {"classification"} and mn.tasks["classification"].class_names == tuple(
        sorted(SAMPLE_PRIMITIVES))
    assert mn.get("train", "x").shape == (2 * len(SAMPLE_PRIMITIVES), 32, 3)


def test_read_segmentation_tree(tmp_path: Path) -> None:
    root = _seg_tree(tmp_path / "seg", extra=2)
    t = _read_seg(root, val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert len(t) == 8 and t["sample_id"].is_unique
    assert dict(zip(t["label_name"], t["label"])) == {"mug": 0, "table": 1}
    row = t[t["sample_id"] == "train/mug/mug_2"].iloc[0]
    assert row["n_points"] == 39 and row["source_file"] == "train/mug/mug_2.txt"
    raw = np.loadtxt(root / "train/mug/mug_2.txt")
    np.testing.assert_allclose(np.asarray(row["points"]).reshape(-1, 3), raw[:, :3], atol=1e-6)
    np.testing.assert_array_equal(row["point_labels"], raw[:, -1].astype(int))
    assert json.loads(row["part_names"]) == ["part_0", "part_1", "part_2", "part_3"]
    # classes.txt names the parts; label_column picks another column (column 3 holds 1)
    (root / "classes.txt").write_text("\n".join(f"p{i}" for i in range(4)) + "\n")
    t2 = _read_seg(root, val_fraction=0.0)
    assert json.loads(t2["part_names"].iloc[0]) == ["p0", "p1", "p2", "p3"]
    t3 = _read_seg(root, val_fraction=0.0, label_column=3)
    assert (np.concatenate(list(t3["point_labels"])) == 1).all()
    with pytest.raises(DataError, match=r"label_column=1 names a coordinate"):
        _read_seg(root, label_column=1)
    with pytest.raises(DataError, match=r"label_column=9 does not name a label column"):
        _read_seg(root, label_column=9)
    flat = _read_seg(_seg_tree(tmp_path / "flat", shapes=False), val_fraction=0.5)
    assert (flat["label"] == -1).all() and (flat["label_name"] == "").all()
    assert (flat["split"] == "val").sum() == 3


def test_read_modelnet_tree_and_sampling(tmp_path: Path) -> None:
    root = _modelnet_tree(tmp_path / "mn")
    t = _read_mn(root, n_points=100, val_fraction=0.0)
    assert dict(zip(t["label_name"], t["label"])) == {"box": 0, "cloud": 1, "sphere": 2}
    assert len(t) == 10 and "point_labels" not in t.columns
    n = dict(zip(t["sample_id"], t["n_points"]))
    assert n["box/train/b0"] == 100 and n["sphere/test/s0"] == 100  # meshes: sampled
    assert n["cloud/train/c0"] == 22 and n["cloud/test/c0"] == 21 and n["cloud/test/c1"] == 11  # as they are
    box = np.asarray(t[t["sample_id"] == "box/train/b1"].iloc[0]["points"]).reshape(-1, 3)
    assert np.allclose(np.abs(box).max(0), [1.0, 0.5, 0.25], atol=1e-6)  # on the 2 x 1 x 0.5 box
    again = _read_mn(root, n_points=100, val_fraction=0.0)
    for a, b in zip(t["points"], again["points"]):
        np.testing.assert_array_equal(a, b)  # seeded surface sampling
    other = _read_mn(root, n_points=100, val_fraction=0.0, seed=3)
    assert not np.array_equal(other["points"].iloc[0], t["points"].iloc[0])


def test_user_path_round_trip(tmp_path: Path) -> None:
    root = _seg_tree(tmp_path / "mine")
    table = _read_seg(root, val_fraction=0.0)
    table.to_parquet(tmp_path / "t.parquet")
    b = PC.tokenize(pd.read_parquet(tmp_path / "t.parquet"), TOK)
    ref = PC.tokenize(table, TOK)
    for k in ref.arrays:
        np.testing.assert_array_equal(b.arrays[k], ref.arrays[k])
    assert b.meta["splits"] == {"train": 6, "test": 2}
    assert b.tasks["classification"].class_names == ("mug", "table")
    assert b.tasks["segmentation"].out_dim == 4 and b.tasks["segmentation"].out_shape == (32,)
    assert b.get("train", "x").shape == (6, 32, 3) and b.get("test", "y.segmentation").shape == (2, 32)


def test_tokenize_shapes_normalisation_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    root = tmp_path / "lab"
    for split, sizes in (("train", (50, 20)), ("test", (40,))):
        for j, m in enumerate(sizes):
            idx = np.arange(m)
            pts = np.stack([idx * 0.1 + 3.0, rng.normal(size=m), rng.normal(size=m) * 2], axis=1)
            _txt(root / split / "thing" / f"{j}.txt", pts, idx % 3)
    table = _read_seg(root, val_fraction=0.0)
    b = PC.tokenize(table, TOK)
    x, y = b.get("train", "x"), b.get("train", "y.segmentation")
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (2, 32, 3) and y.shape == (2, 32)
    assert np.isclose(np.linalg.norm(x, axis=-1).max(), 1.0, atol=1e-6)
    for i, r in enumerate(table[table["split"] == "train"].itertuples()):
        ref = normalize_unit_sphere(np.asarray(r.points, dtype=np.float64).reshape(-1, 3))
        # every output point is an input point, with that point's own label
        match = [int(np.flatnonzero(np.isclose(ref[:, 0], px, atol=1e-6))[0]) for px in x[i, :, 0]]
        np.testing.assert_array_equal(y[i], np.asarray(r.point_labels)[match])
        if r.n_points > 32:  # FPS: distinct points, starting at the first
            assert len(set(match)) == 32 and match[0] == 0
            assert match == farthest_point_indices(ref[None], 32)[0].tolist()
        else:  # 20 points padded by cyclic repetition
            assert match == [k % 20 for k in range(32)]
    rnd = PC.tokenize(table, {**TOK, "subsample": "random", "seed": 1})
    np.testing.assert_array_equal(rnd.get("train", "x"), PC.tokenize(table, {**TOK, "subsample": "random",
                                                                            "seed": 1}).get("train", "x"))
    assert not np.array_equal(rnd.get("train", "x")[0], x[0])
    m = b.meta
    assert m["tokenizer"] == {"kind": "point_groups", "n_points": 32, "n_groups": 8, "group_size": 8,
                              "channels": [32, 64, 64]}
    assert m["pretrain_input_key"] == "x" and m["normalization"]["kind"] == "per_cloud_unit_sphere"
    assert set(b.tasks) == {"classification", "segmentation"}
    feats = PC.baseline_features(x, m)
    assert feats.shape[0] == 2 and np.isfinite(feats).all()


def test_tokenize_bad_params(tmp_path: Path) -> None:
    table = _read_seg(_seg_tree(tmp_path / "s"), val_fraction=0.0)
    for bad, key in (({"n_groups": 40}, "n_groups"), ({"group_size": 0}, "group_size"),
                     ({"n_points": "many"}, "n_points"), ({"subsample": "grid"}, "subsample"),
                     ({"channels": [8, 8]}, "channels")):
        with pytest.raises(DataError, match=rf"point_cloud\.tokenization\.{key}"):
            PC.tokenize(table, {**TOK, **bad})
    with pytest.raises(DataError, match="no 'train' rows"):
        PC.tokenize(table[table["split"] == "test"], TOK)


@pytest.mark.parametrize("case", ["no_path", "format", "empty_split", "no_test", "corrupt_txt", "columns",
                                  "nan", "degenerate", "label_range", "stray", "mixed", "truncated_off",
                                  "garbage_ply", "nan_off", "flat_mesh", "xyz_short"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    seg = _seg_tree(tmp_path / "seg")
    mn = _modelnet_tree(tmp_path / "mn")
    src = {"format": "segmentation_txt", "path": str(seg)}
    first = seg / "train" / "mug" / "mug_0.txt"
    off = mn / "box" / "train" / "b0.off"
    reason = None
    if case == "no_path":
        src["path"], expect = str(tmp_path / "nowhere"), "nowhere does not exist"
    elif case == "format":
        src["format"], expect = "pcd", "format='pcd' is not supported"
    elif case == "empty_split":
        (seg / "val").mkdir()
        expect, reason = "seg/val: split folder is empty", "empty"
    elif case == "no_test":
        import shutil
        shutil.rmtree(seg / "test")
        expect = r"missing split folder\(s\) \['test'\]"
    elif case == "corrupt_txt":
        first.write_text("0 0 0 1\n1 2 x 0\n")
        expect, reason = r"mug_0\.txt:2: non-numeric value 'x'", "corrupt"
    elif case == "columns":
        first.write_text("0 0 1\n1 2 3\n")
        expect, reason = r"mug_0\.txt:1: 3 column\(s\)", "shape"
    elif case == "nan":
        first.write_text("0 0 0 1\n1 nan 3 0\n")
        expect, reason = r"mug_0\.txt:2: NaN/inf coordinates", "nan"
    elif case == "degenerate":
        first.write_text("1 1 1 0\n1 1 1 1\n")
        expect, reason = r"mug_0\.txt: all 2 points are identical", "degenerate"
    elif case == "label_range":
        (seg / "classes.txt").write_text("a\nb\nc\nd\n")
        first.write_text("0 0 0 1\n1 2 3 7\n")
        expect, reason = r"mug_0\.txt:2: part label 7\.0 is not an integer in 0\.\.3", "invalid"
    elif case == "stray":
        (seg / "train" / "mug" / "notes.md").write_text("x")
        expect = r"notes\.md: not a \.txt point table"
    elif case == "mixed":
        _txt(seg / "train" / "loose.txt", np.eye(3), np.zeros(3, dtype=int))
        expect = r"loose\.txt: file next to shape folders"
    else:
        src = {"format": "modelnet", "path": str(mn)}
        if case == "truncated_off":
            off.write_text("\n".join(off.read_text().splitlines()[:6]) + "\n")
            expect, reason = r"b0\.off: OFF file declares 8 vertices \+ 12 faces but has only 4", "truncated"
        elif case == "garbage_ply":
            p = mn / "sphere" / "train" / "s0.ply"
            p.write_bytes(p.read_bytes()[:200])
            expect, reason = r"s0\.ply: unreadable or corrupt \.ply", "corrupt"
        elif case == "nan_off":
            lines = off.read_text().splitlines()
            lines[3] = "nan 0.5 0.5"
            off.write_text("\n".join(lines) + "\n")
            expect, reason = r"b0\.off: vertex 1 has NaN/inf", "nan"
        elif case == "flat_mesh":
            write_off(off, np.zeros((3, 3)), np.array([[0, 1, 2]]))
            expect, reason = r"b0\.off: mesh has zero surface area", "degenerate"
        elif case == "xyz_short":
            (mn / "cloud" / "train" / "c0.xyz").write_text("1 2 3\n4 5\n")
            expect, reason = r"c0\.xyz:2: 2 column\(s\)", "shape"
    with pytest.raises(DataError, match=expect) as info:
        PC.read(src)
    if reason:
        assert info.value.reason == reason
        if case == "empty_split":  # whole-dataset problems raise even with on_error: skip
            with pytest.raises(DataError, match=expect):
                PC.read({**src, "on_error": "skip"})
        else:  # per-file problems can be skipped instead
            t = PC.read({**src, "on_error": "skip"})
            rep = t.attrs["ingestion_errors"]
            assert rep["skipped"] == 1 and rep["by_reason"] == {reason: 1}
            assert rep["files"][0]["file"].endswith((".txt", ".off", ".ply", ".xyz"))
            assert len(t) == (7 if src["format"] == "segmentation_txt" else 9)

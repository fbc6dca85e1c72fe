"""Tests of the graph modality (TU reader, bundled MUTAG sample data, node-feature tokenization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.graph import GraphModality, laplacian_pe

GR = GraphModality()
TOK = {"max_nodes": 6, "lap_pe_dim": 2}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# 8 graphs, ids 1..8, of unequal sizes; label 5 = paths, label 2 = triangles (+ pendant nodes)
GRAPHS = [  # (label, n_nodes, edges (1-based within graph), node labels)
    (5, 3, [(1, 2), (2, 3)], [0, 1, 0]),
    (2, 3, [(1, 2), (2, 3), (3, 1)], [1, 1, 1]),
    (5, 4, [(1, 2), (2, 3), (3, 4)], [0, 1, 1, 0]),
    (2, 4, [(1, 2), (2, 3), (3, 1), (3, 4)], [1, 1, 1, 2]),
    (5, 5, [(1, 2), (2, 3), (3, 4), (4, 5)], [0, 1, 1, 1, 0]),
    (2, 5, [(1, 2), (2, 3), (3, 1), (3, 4), (4, 5)], [1, 1, 1, 2, 2]),
    (5, 2, [(1, 2)], [0, 0]),
    (2, 6, [(1, 2), (2, 3), (3, 1), (1, 4), (2, 5), (3, 6)], [1, 1, 1, 3, 3, 3]),
]


def _tu(root: Path, name: str = "TOY", attrs: bool = True, graphs=GRAPHS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    a, ind, nl, na, gl = [], [], [], [], []
    offset = 0
    for g, (label, n, edges, labels) in enumerate(graphs, start=1):
        for u, v in edges:  # both directions, as TU lists them
            a += [f"{u + offset}, {v + offset}", f"{v + offset}, {u + offset}"]
        ind += [str(g)] * n
        nl += [str(x) for x in labels]
        na += [f"{0.5 * i + g}, {float(n)}" for i in range(n)]
        gl.append(str(label))
        offset += n
    for suffix, lines in (("_A", a), ("_graph_indicator", ind), ("_graph_labels", gl), ("_node_labels", nl)):
        (root / f"{name}{suffix}.txt").write_text("\n".join(lines) + "\n")
    if attrs:
        (root / f"{name}_node_attributes.txt").write_text("\n".join(na) + "\n")
    return root


def _read(root: Path, **kw) -> pd.DataFrame:
    return GR.read({"format": "tu", "path": str(root), **kw})


def test_sample_data_is_real_mutag_and_deterministic(tmp_path: Path) -> None:
    man = GR.make_sample_data(tmp_path / "a", {})
    assert man["source"] == "TU MUTAG bundled with grakel (real)"
    assert man["graphs"] == 188 and man["classes"] == ["-1", "1"]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {"MUTAG_A.txt", "MUTAG_graph_indicator.txt", "MUTAG_graph_labels.txt",
            "MUTAG_node_labels.txt"} <= set(names)
    GR.make_sample_data(tmp_path / "b", {"name": "MUTAG"})
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    t = _read(tmp_path / "a")
    assert len(t) == 188 and t["n_nodes"].max() == 28 and t["n_nodes"].min() == 10
    assert dict(zip(t["label_name"], t["label"])) == {"-1": 0, "1": 1}
    sizes = t.groupby("split").size().to_dict()
    assert sizes["test"] == 38 and sizes["train"] + sizes["val"] == 150
    assert t.equals(_read(tmp_path / "a"))  # deterministic split
    b = GR.tokenize(t, {"max_nodes": 28, "lap_pe_dim": 8})
    assert b.get("train", "x").shape == (sizes["train"], 28, 7 + 8 + 2)
    assert b.meta["features"]["node_label_vocab"] == list(range(7))
    with pytest.raises(DataError, match="no bundled TU data set 'NOPE'"):
        GR.make_sample_data(tmp_path / "c", {"name": "NOPE"})


def test_read_small_tu_tree(tmp_path: Path) -> None:
    root = _tu(tmp_path / "toy")
    (root / "README.txt").write_text("ignored")
    t = _read(root, test_fraction=0.25, val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert len(t) == 8 and t["sample_id"].is_unique
    assert dict(zip(t["label_name"], t["label"])) == {"2": 0, "5": 1}
    assert t.groupby(["split", "label"]).size().to_dict() == {("test", 0): 1, ("test", 1): 1,
                                                             ("train", 0): 3, ("train", 1): 3}
    g = t[t["graph_id"] == 4].iloc[0]
    assert g["sample_id"] == "TOY/000004" and g["n_nodes"] == 4 and g["n_edges"] == 8
    assert sorted(map(tuple, np.asarray(g["edges"]).reshape(-1, 2).tolist()))[:3] == [(0, 1), (0, 2), (1, 0)]
    np.testing.assert_array_equal(g["node_labels"], [1, 1, 1, 2])
    assert g["n_node_attributes"] == 2
    np.testing.assert_allclose(np.asarray(g["node_attributes"]).reshape(4, 2)[:, 0], [4, 4.5, 5, 5.5])
    # an explicit split file wins
    (root / "split.txt").write_text("train\ntrain\nval\ntest\ntrain\ntrain\ntest\ntrain\n")
    s = _read(root, split_file="split.txt")
    assert s.set_index("graph_id")["split"].to_dict()[3] == "val"
    assert (s["split"] == "test").sum() == 2
    # name resolution
    _tu(root, name="OTHER")
    with pytest.raises(DataError, match=r"found 2 TU data sets \['OTHER', 'TOY'\]"):
        _read(root)
    assert len(_read(root, name="OTHER")) == 8


def _split_file(root: Path, test: set[int]) -> str:
    (root / "split.txt").write_text("".join("test\n" if g in test else "train\n" for g in range(1, 9)))
    return "split.txt"


def test_user_path_round_trip_and_tokenize(tmp_path: Path) -> None:
    root = _tu(tmp_path / "toy")
    table = _read(root, split_file=_split_file(root, {3, 4}), val_fraction=0.0)
    table.to_parquet(tmp_path / "t.parquet")
    b = GR.tokenize(pd.read_parquet(tmp_path / "t.parquet"), TOK)
    ref = GR.tokenize(table, TOK)
    for k in ref.arrays:
        np.testing.assert_array_equal(b.arrays[k], ref.arrays[k])
    train = table[table["split"] == "train"]
    vocab = sorted({int(v) for labs in train["node_labels"] for v in labs})
    v, a, k = len(vocab), 2, 2
    f = v + a + k + 2
    x = b.get("train", "x")
    assert x.dtype == np.float32 and x.shape == (6, 6, f) and b.get("test", "x").shape == (2, 6, f)
    assert b.tasks["classification"].class_names == ("2", "5") and b.meta["splits"] == {"train": 6, "test": 2}
    assert b.meta["tokenizer"] == {"kind": "graph_nodes", "n_features": f, "max_nodes": 6, "n_node_labels": v}
    assert b.meta["features"]["node_label_vocab"] == vocab
    n_nodes = train["n_nodes"].to_numpy()
    flag = x[..., -1]
    np.testing.assert_array_equal(flag.sum(1), n_nodes)
    for i, n in enumerate(n_nodes):
        assert (x[i, n:] == 0).all()  # padding rows all zero
        np.testing.assert_array_equal(x[i, :n, :v].argmax(1),
                                      [vocab.index(int(lab)) for lab in train["node_labels"].iloc[i]])
    # attributes standardised with train statistics
    attrs = np.concatenate([x[i, :n, v:v + a] for i, n in enumerate(n_nodes)])
    np.testing.assert_allclose(attrs.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(attrs.std(0), 1.0, atol=1e-4)
    # degree / max train degree
    deg = x[..., f - 2] * b.meta["normalization"]["max_degree"]
    g8 = list(train["graph_id"]).index(8)
    np.testing.assert_allclose(deg[g8, :6], [3, 3, 3, 1, 1, 1])
    feats = GR.baseline_features(x, b.meta)
    assert feats.shape == (6, 2 * (f - 1) + 2)
    np.testing.assert_allclose(feats[:, -2], n_nodes)
    np.testing.assert_allclose(feats[:, -1], train["n_edges"].to_numpy() / 2)


def test_tokenize_unseen_labels_truncation_and_params(tmp_path: Path) -> None:
    root = _tu(tmp_path / "toy", attrs=False)
    table = _read(root, split_file=_split_file(root, {7, 8}), val_fraction=0.0)  # only graph 8 has label 3
    b = GR.tokenize(table, TOK)
    assert b.meta["features"]["node_label_vocab"] == [0, 1, 2]
    assert b.meta["features"]["unseen_node_labels"] == {"train": 0, "test": 3}
    assert b.meta["features"]["columns"]["node_attributes"] == [3, 3]  # no attribute file
    x8 = b.get("test", "x")[list(table.loc[table["split"] == "test", "graph_id"]).index(8)]
    v = len(b.meta["features"]["node_label_vocab"])
    assert (x8[3:6, :v] == 0).all() and (x8[:3, :v].sum(1) == 1).all()
    with pytest.raises(DataError, match=r"graph TOY/000008 has 6 nodes, more than graph\.tokenization\.max_nodes=5"):
        GR.tokenize(table, {**TOK, "max_nodes": 5})
    cut = GR.tokenize(table, {**TOK, "max_nodes": 5, "truncate": True})
    assert cut.get("train", "x").shape[1] == 5 and cut.meta["features"]["truncated_graphs"] == 1
    for bad, key in (({"max_nodes": 0}, "max_nodes"), ({"lap_pe_dim": -1}, "lap_pe_dim"),
                     ({"truncate": "yes"}, "truncate")):
        with pytest.raises(DataError, match=rf"graph\.tokenization\.{key}"):
            GR.tokenize(table, {**TOK, **bad})
    with pytest.raises(DataError, match="no 'train' rows"):
        GR.tokenize(table[table["split"] == "test"], TOK)


def test_laplacian_pe_sign_fixed_eigenvectors() -> None:
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])  # path of 5 nodes
    pe = laplacian_pe(5, edges, 6)
    assert pe.shape == (5, 6) and (pe[:, 4:] == 0).all()  # only n - 1 = 4 non-trivial vectors
    a = np.zeros((5, 5))
    a[edges[:, 0], edges[:, 1]] = a[edges[:, 1], edges[:, 0]] = 1
    d = 1 / np.sqrt(a.sum(1))
    lap = np.eye(5) - d[:, None] * a * d[None]
    for j in range(4):
        vec = pe[:, j]
        lam = vec @ lap @ vec
        np.testing.assert_allclose(lap @ vec, lam * vec, atol=1e-8)
        assert vec[np.abs(vec).round(8).argmax()] > 0
    perm = laplacian_pe(5, edges[::-1][:, ::-1].copy(), 4)  # same graph, edges listed differently
    np.testing.assert_allclose(perm, pe[:, :4], atol=1e-10)
    assert (laplacian_pe(1, np.zeros((0, 2), dtype=int), 3) == 0).all()


def _write(root: Path, suffix: str, lines: list[str]) -> None:
    (root / f"TOY{suffix}.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", ["no_path", "format", "empty_folder", "malformed", "missing_node", "no_nodes",
                                  "nan_attr", "edgeless", "cross_graph", "label_count", "bad_split_file",
                                  "graph_id_range"])
def test_read_bad_inputs(tmp_path: Path, case: str) -> None:
    root = _tu(tmp_path / "toy")
    src = {"format": "tu", "path": str(root)}
    a = (root / "TOY_A.txt").read_text().splitlines()
    reason, skipped_left = None, 7
    if case == "no_path":
        src["path"], expect = str(tmp_path / "nowhere"), "nowhere does not exist"
    elif case == "format":
        src["format"], expect = "graphml", "format='graphml' is not supported"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        src["path"], expect = str(tmp_path / "empty"), r"found 0 TU data sets"
    elif case == "malformed":
        a[4] = "3; 4"
        _write(root, "_A", a)
        expect = r"TOY_A\.txt:5: malformed line '3; 4'"
    elif case == "missing_node":
        a[0] = "1, 99"
        _write(root, "_A", a)
        expect, reason = r"TOY_A\.txt:1: edge \(1, 99\) points at a missing node", "missing"
    elif case == "no_nodes":  # graph 9 is labelled but owns no node
        (root / "TOY_graph_labels.txt").write_text((root / "TOY_graph_labels.txt").read_text() + "5\n")
        expect, reason, skipped_left = r"graph 9 has no nodes", "empty", 8
    elif case == "nan_attr":
        lines = (root / "TOY_node_attributes.txt").read_text().splitlines()
        lines[1] = "nan, 3.0"
        _write(root, "_node_attributes", lines)
        expect, reason = r"TOY_node_attributes\.txt:2: NaN/inf attribute of node 2", "nan"
    elif case == "edgeless":
        _write(root, "_A", [ln for ln in a if not {int(t) for t in ln.split(",")} & {1, 2, 3}])
        expect, reason = r"TOY_A\.txt: graph 1 \(3 nodes\) has no edges; set graph\.source\.allow_edgeless", \
            "degenerate"
    elif case == "cross_graph":
        a[0] = "1, 4"
        _write(root, "_A", a)
        expect = r"TOY_A\.txt:1: edge \(1, 4\) joins graph 1 and graph 2"
    elif case == "label_count":
        _write(root, "_node_labels", ["0"] * 5)
        expect = r"TOY_node_labels\.txt: 5 lines but TOY_graph_indicator\.txt lists 32 nodes"
    elif case == "bad_split_file":
        (root / "s.txt").write_text("train\n" * 7 + "holdout\n")
        src["split_file"], expect = "s.txt", r"s\.txt:8: split 'holdout'"
    elif case == "graph_id_range":
        ind = (root / "TOY_graph_indicator.txt").read_text().splitlines()
        ind[-1] = "12"
        _write(root, "_graph_indicator", ind)
        expect = r"TOY_graph_indicator\.txt:32: graph id 12 is outside 1\.\.8"
    with pytest.raises(DataError, match=expect) as info:
        GR.read(src)
    if reason:
        assert info.value.reason == reason
        t = GR.read({**src, "on_error": "skip", "test_fraction": 0.25})
        rep = t.attrs["ingestion_errors"]
        assert rep["skipped"] == 1 and rep["by_reason"] == {reason: 1} and len(t) == skipped_left
        assert "TOY_A.txt (graph" in rep["files"][0]["file"]
        if case == "edgeless":
            assert len(GR.read({**src, "allow_edgeless": True})) == 8
    else:  # structural problems raise even with on_error: skip
        with pytest.raises(DataError, match=expect):
            GR.read({**src, "on_error": "skip"})

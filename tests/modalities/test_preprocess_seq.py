"""``preprocess``/``read_inputs`` of the sequence, table, graph and point-cloud modalities (audio, text, tabular,
time_series, imu, graph, point_cloud): the fitted tokenization of a bundle applied to new rows equals the
bundle's arrays bit for bit, from canonical rows, raw files and in-memory objects."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from omnivec2_pipelines.modalities import DataError, get_modality
from omnivec2_pipelines.modalities.base import SPLITS
from tests.tiny import tiny_tables_and_bundles

MODALITIES = ("audio", "text", "tabular", "time_series", "imu", "graph", "point_cloud")
LABEL_COLUMNS = ["label", "label_name", "split"]


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory) -> dict:
    """Tiny embedded data of these modalities: raw root, canonical tables and bundles (meta through JSON)."""
    root = tmp_path_factory.mktemp("seq_raw")
    tables, bundles = tiny_tables_and_bundles(root, MODALITIES)
    for b in bundles.values():
        b.meta = json.loads(json.dumps(b.meta))  # as a saved bundle gives it back
    return {"root": root, "tables": tables, "bundles": bundles}


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)


def _test_rows(data: dict, m: str) -> pd.DataFrame:
    table = data["tables"][m]
    return table[table["split"] == "test"].reset_index(drop=True)


def _check_test(data: dict, m: str, rows: pd.DataFrame) -> None:
    """preprocess(rows) equals the bundle's test arrays for every model-input key."""
    bundle = data["bundles"][m]
    out = get_modality(m).preprocess(rows, bundle.meta)
    assert set(out) == {t.input_key for t in bundle.tasks.values()}
    for key, arr in out.items():
        _same(arr, bundle.get("test", key))


@pytest.mark.parametrize("m", MODALITIES)
def test_preprocess_of_table_rows_equals_every_split(seq_data: dict, m: str) -> None:
    table, bundle = seq_data["tables"][m], seq_data["bundles"][m]
    for split in SPLITS:
        rows = table[table["split"] == split].drop(columns=LABEL_COLUMNS)
        if not len(rows):
            continue
        out = get_modality(m).preprocess(rows, bundle.meta)
        assert set(out) == {t.input_key for t in bundle.tasks.values()}
        for key, arr in out.items():
            _same(arr, bundle.get(split, key))


def test_read_inputs_of_ts_files(seq_data: dict) -> None:
    """A UCR/UEA test file: every series, in file order, ids ``<file>/<position>``."""
    root = seq_data["root"]
    rows = get_modality("time_series").read_inputs(root / "time_series" / "GunPoint_TEST.ts")
    test = _test_rows(seq_data, "time_series")
    assert list(rows["id"]) == [f"GunPoint_TEST.ts/{int(s.split('/')[1])}" for s in test["sample_id"]]
    _check_test(seq_data, "time_series", rows)
    _check_test(seq_data, "imu", get_modality("imu").read_inputs(str(root / "imu" / "BasicMotions_TEST.ts")))


def test_read_inputs_of_table_files(seq_data: dict) -> None:
    """The whole CSV (labels and splits ignored); the test split's rows picked by position."""
    for m, file in (("text", "tweets.csv"), ("tabular", "diabetes.csv")):
        rows = get_modality(m).read_inputs(Path(seq_data["root"] / m / file))
        assert len(rows) == len(seq_data["tables"][m])
        test = _test_rows(seq_data, m)
        picked = rows.set_index("id").loc[[f"{file}/{r - 1}" for r in test["source_row"]]].reset_index()
        _check_test(seq_data, m, picked)


def test_read_inputs_of_audio_and_point_files(seq_data: dict) -> None:
    for m in ("audio", "point_cloud"):
        test = _test_rows(seq_data, m)
        files = [seq_data["root"] / m / f for f in test["source_file"]]
        rows = get_modality(m).read_inputs(files)
        assert list(rows["id"]) == [f.name for f in files]
        _check_test(seq_data, m, rows)


def test_read_inputs_of_a_tu_folder(seq_data: dict) -> None:
    """Every graph of the folder in graph-id order; the test graphs picked by position."""
    rows = get_modality("graph").read_inputs(seq_data["root"] / "graph")
    assert len(rows) == len(seq_data["tables"]["graph"])
    test = _test_rows(seq_data, "graph")
    _check_test(seq_data, "graph", rows.iloc[test["graph_id"].to_numpy() - 1].reset_index(drop=True))


def test_read_inputs_of_a_tu_folder_without_graph_labels(seq_data: dict, tmp_path: Path) -> None:
    src = seq_data["root"] / "graph"
    for suffix in ("_A.txt", "_graph_indicator.txt", "_node_labels.txt"):
        (tmp_path / f"MUTAG{suffix}").write_bytes((src / f"MUTAG{suffix}").read_bytes())
    rows = get_modality("graph").read_inputs(tmp_path)
    full = get_modality("graph").read_inputs(src)
    assert list(rows["n_nodes"]) == list(full["n_nodes"])
    meta = seq_data["bundles"]["graph"].meta
    _same(get_modality("graph").preprocess(rows, meta)["x"], get_modality("graph").preprocess(full, meta)["x"])


def test_in_memory_series_and_texts(seq_data: dict) -> None:
    for m in ("time_series", "imu"):
        test = _test_rows(seq_data, m)
        arrays = [np.asarray(r.values).reshape(r.n_channels, r.length) for r in test.itertuples()]
        rows = get_modality(m).read_inputs(arrays)
        assert list(rows["id"]) == [str(i) for i in range(len(arrays))]
        _check_test(seq_data, m, rows)
    one = get_modality("time_series").read_inputs(_test_rows(seq_data, "time_series")["values"].iloc[0])  # (T,)
    assert one["n_channels"].tolist() == [1] and one["id"].tolist() == ["0"]
    test = _test_rows(seq_data, "text")
    _check_test(seq_data, "text", get_modality("text").read_inputs(list(test["text"])))
    single = get_modality("text").read_inputs(test["text"].iloc[0])
    assert single["id"].tolist() == ["0"]


def test_in_memory_audio_clouds_tables_graphs(seq_data: dict) -> None:
    root = seq_data["root"]
    test = _test_rows(seq_data, "audio")
    clips = [sf.read(str(root / "audio" / f), dtype="float32") for f in test["source_file"]]
    _check_test(seq_data, "audio", get_modality("audio").read_inputs([(w, int(sr)) for w, sr in clips]))
    bare = get_modality("audio").read_inputs(clips[0][0])
    assert bare["sample_rate"].tolist() == [44100]  # the documented assumption for a bare array

    test = _test_rows(seq_data, "point_cloud")
    clouds = [np.asarray(p).reshape(-1, 3) for p in test["points"]]
    _check_test(seq_data, "point_cloud", get_modality("point_cloud").read_inputs(clouds))

    raw = pd.read_csv(root / "tabular" / "diabetes.csv")
    test = _test_rows(seq_data, "tabular")
    _check_test(seq_data, "tabular", get_modality("tabular").read_inputs(raw.iloc[test["source_row"] - 1]))

    test = _test_rows(seq_data, "graph")
    graphs = []
    for r in test.itertuples():
        g = nx.Graph()
        g.add_nodes_from((i, {"label": int(lab)}) for i, lab in enumerate(r.node_labels))
        g.add_edges_from(np.asarray(r.edges).reshape(-1, 2).tolist())
        graphs.append(g)
    _check_test(seq_data, "graph", get_modality("graph").read_inputs(graphs))


def test_tabular_categories_and_unseen_values(tmp_path: Path) -> None:
    """Categorical columns code with the train categories; a raw numeric cell of a categorical column
    reads as the reader writes it; an unseen category codes 0."""
    frame = pd.DataFrame({"colour": ["red", "blue", "red", "green", "blue", "red"] * 3,
                          "size": [1, 2, 1, 2, 1, 2] * 3, "w": np.arange(18, dtype=float),
                          "y": np.arange(18) % 2, "split": ["train"] * 12 + ["test"] * 6})
    frame.to_csv(tmp_path / "t.csv", index=False)
    tab = get_modality("tabular")
    table = tab.read({"format": "csv", "path": str(tmp_path / "t.csv"), "target": "y",
                      "categorical": ["size", "y"], "val_fraction": 0.0})
    bundle = tab.tokenize(table, {"max_categories": 2})
    rows = tab.read_inputs(tmp_path / "t.csv")
    _same(tab.preprocess(rows.iloc[12:], bundle.meta)["x"], bundle.get("test", "x"))
    new = tab.read_inputs(pd.DataFrame({"colour": ["purple"], "size": [2], "w": [3.0]}))
    x = tab.preprocess(new, bundle.meta)["x"]
    assert x[0, 1] == 0.0 and x[0, 2] == bundle.meta["categories"]["size"].index("2") + 1
    with pytest.raises(DataError, match="no column 'feature.w'"):
        tab.preprocess(tab.read_inputs(pd.DataFrame({"colour": ["red"], "size": [1]})), bundle.meta)
    with pytest.raises(DataError, match="row 0 .*'w' value 'heavy' is not a finite number"):
        tab.preprocess(tab.read_inputs(pd.DataFrame({"colour": ["red"], "size": [1], "w": ["heavy"]})),
                       bundle.meta)


@pytest.mark.parametrize("m", MODALITIES)
def test_bad_inputs_name_the_input(seq_data: dict, m: str, tmp_path: Path) -> None:
    mod = get_modality(m)
    missing = tmp_path / "missing.ts"
    with pytest.raises(DataError, match="missing.ts: no such file"):
        mod.read_inputs(missing)
    with pytest.raises(DataError, match="got int"):
        mod.read_inputs(5)
    with pytest.raises(DataError, match=r"input 1: got dict"):
        mod.read_inputs([_good_object(m), {"a": 1}])
    other = "audio" if m != "audio" else "text"
    with pytest.raises(DataError, match=rf"bundle meta is for .*'{other}'"):
        mod.preprocess(_test_rows(seq_data, m), seq_data["bundles"][other].meta)


def _good_object(m: str):
    return {"audio": np.zeros(100, np.float32), "text": "a text", "tabular": pd.DataFrame({"a": [1]}),
            "time_series": np.zeros((1, 10)), "imu": np.zeros((6, 10)), "graph": nx.path_graph(3),
            "point_cloud": np.eye(3)}[m]


def test_bad_objects_and_channel_counts(seq_data: dict) -> None:
    with pytest.raises(DataError, match=r"input 0: got an array of shape \(2, 3, 4\)"):
        get_modality("time_series").read_inputs(np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match="NaN/inf"):
        get_modality("imu").read_inputs(np.full((6, 10), np.nan))
    rows = get_modality("imu").read_inputs(np.zeros((2, 60)))
    with pytest.raises(DataError, match="input 0: sample 0 has 2 channel.* tokenized with 6"):
        get_modality("imu").preprocess(rows, seq_data["bundles"]["imu"].meta)
    with pytest.raises(DataError, match=r"shape \(4, 2\)"):
        get_modality("point_cloud").read_inputs(np.zeros((4, 2)))
    with pytest.raises(DataError, match="all 4 points are identical"):
        get_modality("point_cloud").read_inputs(np.zeros((4, 3)))
    with pytest.raises(DataError, match="text input 0: text is empty"):
        get_modality("text").read_inputs("   ")
    with pytest.raises(DataError, match="sample rate 0"):
        get_modality("audio").read_inputs((np.zeros(10, np.float32), 0))
    with pytest.raises(DataError, match="not a file with extension"):
        get_modality("audio").read_inputs(seq_data["root"] / "audio" / "meta" / "esc50.csv")
    g = nx.path_graph(40)
    with pytest.raises(DataError, match="40 nodes, more than the bundle's max_nodes=28"):
        get_modality("graph").preprocess(get_modality("graph").read_inputs(g), seq_data["bundles"]["graph"].meta)
    g = nx.path_graph(3)
    g.nodes[0]["label"] = 1
    with pytest.raises(DataError, match="'label' is on 1 of 3 nodes"):
        get_modality("graph").read_inputs(g)
    with pytest.raises(DataError, match="found TU data sets"):
        get_modality("graph").read_inputs(seq_data["root"] / "audio")


def test_read_inputs_of_an_unlabelled_ts_file(seq_data: dict, tmp_path: Path) -> None:
    """``@classLabel false`` files (no target field) read as the labelled test file does."""
    src = (seq_data["root"] / "imu" / "BasicMotions_TEST.ts").read_text().splitlines()
    at = next(i for i, ln in enumerate(src) if ln.strip().lower() == "@data")
    head = [ln if not ln.lower().startswith("@classlabel") else "@classLabel false" for ln in src[:at + 1]]
    body = [ln.rsplit(":", 1)[0] for ln in src[at + 1:] if ln.strip()]
    (tmp_path / "raw.ts").write_text("\n".join(head + body) + "\n")
    rows = get_modality("imu").read_inputs(tmp_path / "raw.ts")
    assert len(rows) == len(_test_rows(seq_data, "imu"))
    _check_test(seq_data, "imu", rows)
    (tmp_path / "bad.ts").write_text("\n".join(head + [body[0] + ":Walking"]) + "\n")
    with pytest.raises(DataError, match=r"bad.ts:\d+: series has 7 channel\(s\), expected 6"):
        get_modality("imu").read_inputs(tmp_path / "bad.ts")

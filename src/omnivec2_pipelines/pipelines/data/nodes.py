"""Data nodes: write the sample data, read a source layout into a canonical table, tokenize it into arrays.

Each factory takes the modality and returns the node's function, named after the node
(``make_sample_data``, ``ingest``, ``tokenize``); :mod:`.pipeline` instantiates one per modality.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from omnivec2_pipelines.io.tables import check_whole_table, mark_chunks
from omnivec2_pipelines.modalities.base import (
    ArrayBundle,
    check_source,
    check_split_labels,
    get_modality,
    source_batch_files,
)

log = logging.getLogger(__name__)


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__name__ = fn.__qualname__ = name
    return fn


def sample_data_node(modality: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Node writing the embedded default data of ``modality`` to ``<modality>.sample_data.path``."""

    def make_sample_data(params: dict[str, Any]) -> dict[str, Any]:
        """Write the standard-layout sample data set; returns its manifest."""
        if not isinstance(params, dict) or "path" not in params:
            raise ValueError(f"{modality}.sample_data must be a mapping with a 'path' key, got {params!r}")
        manifest = get_modality(modality).make_sample_data(Path(params["path"]), params)
        log.info("sample data for %s written to %s: %s", modality, params["path"], manifest)
        return {"modality": modality, "path": str(params["path"]), **manifest}

    return _named(make_sample_data, "make_sample_data")


class _IngestionReport:
    """The ingestion report of a table read in chunks, cumulative: rows, per split, per class, errors.

    Also keeps the distinct (label, label_name, split) triples, enough for :func:`check_split_labels`.
    """

    def __init__(self, modality: str, source: dict[str, Any]) -> None:
        self.modality = modality
        self.source = {k: str(v) for k, v in source.items()}
        self.rows = 0
        self.per_split: Counter[Any] = Counter()
        self.per_class: Counter[Any] = Counter()
        self.errors: dict[str, Any] = {"on_error": source.get("on_error", "raise"), "skipped": 0,
                                       "by_reason": {}, "files": []}
        self._labels: list[pd.DataFrame] = []

    def add(self, chunk: pd.DataFrame) -> dict[str, Any]:
        """Count ``chunk`` in (its ``ingestion_errors`` are the errors so far) and return the report."""
        self.rows += len(chunk)
        self.per_split.update({k: int(v) for k, v in chunk["split"].value_counts().items()})
        self.per_class.update({k: int(v) for k, v in chunk.groupby("label_name").size().items()})
        self.errors = chunk.attrs.get("ingestion_errors", self.errors)
        cols = [c for c in ("label", "label_name", "split") if c in chunk]
        self._labels.append(chunk[cols].drop_duplicates())
        return self.report()

    def check_labels(self) -> None:
        """:func:`check_split_labels` over every chunk added."""
        check_split_labels(pd.concat(self._labels, ignore_index=True), self.modality)

    def report(self) -> dict[str, Any]:
        return {"modality": self.modality, "source": self.source, "rows": self.rows,
                "per_split": dict(sorted(self.per_split.items())),
                "per_class": dict(sorted(self.per_class.items())), "errors": self.errors}


def _saved_then_dropped(outputs: Iterable[tuple[Any, ...]]) -> Iterator[list[Any]]:
    """Yield each tuple of a generator node's outputs as a list, emptied (``None``s) once Kedro saved it.

    Kedro splits the outputs of a generator node with :func:`itertools.tee`, whose buffer keeps
    yielded items alive in blocks of 57, so every table chunk would stay in memory. The runner
    asks for the next item only after saving the current one, so emptying it then keeps memory
    bounded; a late reader would get ``None``, which Kedro refuses to save (never a silent loss).
    """
    for item in outputs:
        out = list(item)
        yield out
        out[:] = [None] * len(out)


def ingest_node(modality: str) -> Callable[[dict[str, Any]], Iterator[list[Any]]]:
    """Generator node reading ``<modality>.source`` into canonical table chunks plus the ingestion report.

    Yields ``[chunk, report]`` per chunk of at most ``<modality>.source.batch_files`` files; each
    chunk carries ``attrs["chunk"]`` (see :func:`~omnivec2_pipelines.io.tables.mark_chunks`) and
    ``report`` counts every chunk so far, so the last one saved is the full report. The labels
    are checked across chunks before the last chunk, which commits the table, is yielded. About
    three chunks are in memory at a time (the one being read, the next to save, the last saved).
    """

    def ingest(source: dict[str, Any]) -> Iterator[list[Any]]:
        """Read the source layout into a canonical table (in chunks) with a ``split`` column."""
        yield from _saved_then_dropped(_ingest(source))

    def _ingest(source: dict[str, Any]) -> Iterator[tuple[pd.DataFrame, dict[str, Any]]]:
        mod = get_modality(modality)
        check_source(source, mod)
        tally = _IngestionReport(modality, source)
        for chunk in mark_chunks(mod.read_chunks(source, source_batch_files(source, modality))):
            report = tally.add(chunk)
            if chunk.attrs["chunk"]["last"]:
                tally.check_labels()  # before the last chunk, which commits the table
                if report["errors"]["skipped"]:
                    log.warning("%s: skipped %d bad file(s) %s (see data/08_reporting/ingestion/%s.json)",
                                modality, report["errors"]["skipped"], report["errors"]["by_reason"], modality)
                log.info("ingested %s: %d rows %s", modality, report["rows"], report["per_split"])
            else:
                log.info("%s: read table chunk %d (%d rows so far)", modality, chunk.attrs["chunk"]["index"],
                         report["rows"])
            yield chunk, report

    return _named(ingest, "ingest")


def tokenize_node(modality: str) -> Callable[[pd.DataFrame, dict[str, Any]], ArrayBundle]:
    """Node turning the canonical table into model-ready arrays."""

    def tokenize(table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Deterministic preprocessing of ``modality`` into an :class:`ArrayBundle`."""
        bundle = get_modality(modality).tokenize(check_whole_table(table, f"{modality}.table"), params)
        log.info("tokenized %s: %s", modality,
                 {k: tuple(v.shape) for k, v in bundle.arrays.items() if k.endswith(".x")})
        return bundle

    return _named(tokenize, "tokenize")

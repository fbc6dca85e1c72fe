"""Kedro nodes: thin wrappers that hand parameters and datasets to the pure-torch code.

torch and scikit-learn are imported inside the training and evaluation nodes, so a run of the
data pipelines (and Kedro's start-up) never pays for them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from omnivec2_pipelines.io.tables import check_whole_table, mark_chunks
from omnivec2_pipelines.modalities.base import (
    ArrayBundle,
    check_source,
    check_split_labels,
    get_modality,
    source_batch_files,
)

if TYPE_CHECKING:
    from omnivec2_pipelines.training.checkpoint import Checkpoint
else:
    # Kedro resolves every node's annotations (typing.get_type_hints) when a run starts; importing the
    # real class would pull in torch, so at run time the name stands for "any object" (type checkers
    # still see the class above).
    Checkpoint = Any

log = logging.getLogger(__name__)


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__name__ = fn.__qualname__ = name
    return fn


def sample_data_node(modality: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Node writing the embedded default data of ``modality`` to ``sample_data.<modality>.path``."""

    def make_sample_data(params: dict[str, Any]) -> dict[str, Any]:
        """Write the standard-layout sample data set; returns its manifest."""
        if not isinstance(params, dict) or "path" not in params:
            raise ValueError(f"sample_data.{modality} must be a mapping with a 'path' key, got {params!r}")
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


def pretrain_unimodal(model_params: dict[str, Any], stage_params: dict[str, Any], trainer_params: dict[str, Any],
                      **bundles: ArrayBundle) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 1: unimodal masked pretraining of a fresh model on every enabled modality."""
    from omnivec2_pipelines.training import stages

    return stages.pretrain_unimodal(bundles, model_params, stage_params, trainer_params)


def pretrain_paired(init: Checkpoint, stage_params: dict[str, Any], trainer_params: dict[str, Any],
                    **bundles: ArrayBundle) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 2: paired masked pretraining, starting from the stage-1 checkpoint."""
    from omnivec2_pipelines.training import stages

    return stages.pretrain_paired(init, bundles, stage_params, trainer_params)


def multitask(init: Checkpoint, stage_params: dict[str, Any], trainer_params: dict[str, Any],
              **bundles: ArrayBundle) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 3: multimodal multitask training, starting from the stage-2 checkpoint."""
    from omnivec2_pipelines.training import stages

    return stages.multitask(init, bundles, stage_params, trainer_params)


def evaluate_node(ckpt: Checkpoint, params: dict[str, Any], trainer_params: dict[str, Any],
                  **bundles: ArrayBundle) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-task held-out metrics beside a classical baseline (one flat JSON object), plus details
    (confusion matrices) for the report."""
    allowed = {"split", "batch_size", "baselines"}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} under 'evaluation'; allowed: {sorted(allowed)}")
    from omnivec2_pipelines.training.evaluation import evaluate

    details: dict[str, Any] = {}
    metrics = evaluate(ckpt.model, bundles, params.get("split", "test"), params.get("batch_size", 256),
                       trainer_params.get("device", "auto"), params.get("baselines", True),
                       trainer_params.get("seed", 0), details)
    for k, v in metrics.items():
        log.info("%s = %.4f", k, v)
    return metrics, details


def report_node(metrics: dict[str, float], details: dict[str, Any], params: dict[str, Any],
                **histories: pd.DataFrame) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The human report: Markdown metrics table, loss-curve figures, confusion-matrix figures."""
    from omnivec2_pipelines import reporting

    hist = {k.removeprefix("loss_"): v for k, v in histories.items()}
    return (reporting.markdown_report(metrics, hist, params.get("split", "test"), details),
            reporting.loss_figures(hist), reporting.confusion_figures(details))


def sweep_node(sweep: dict[str, Any], parameters: dict[str, Any], unimodal: Checkpoint, paired: Checkpoint,
               **bundles: ArrayBundle) -> tuple[pd.DataFrame, dict[str, Any], Any]:
    """Optuna study over one training stage, each trial running the real stage + evaluation nodes.

    Validates the whole sweep (search space keys and ranges, storage URL, objective metric) before
    any trial runs. Returns the trials table, the best parameters (nested, for conf/local/) and the
    optimisation-history figure.
    """
    import copy

    from omnivec2_pipelines import sweep as sw
    from omnivec2_pipelines.pipelines.registry_helpers import build_pipelines

    spec = sw.SweepSpec.from_params(sweep)
    tasks = (parameters.get("multitask") or {}).get("tasks", "all")
    sw.validate(spec, parameters, sw.available_metrics(bundles, tasks))
    previous = {"pretrain_paired": ("pretrain_unimodal_checkpoint", unimodal),
                "multitask": ("pretrain_paired_checkpoint", paired)}.get(spec.stage)

    def inputs() -> dict[str, Any]:
        data: dict[str, Any] = {f"{m}.tokenized": b for m, b in bundles.items()}
        if previous is not None:
            data[previous[0]] = copy.deepcopy(previous[1])  # every trial starts from the same weights
        return data

    study = sw.run_sweep(spec, parameters, build_pipelines(sorted(bundles)), inputs)
    trials, best, figure = sw.study_outputs(study)
    log.info("sweep: %d trials; best %s = %s with %s", len(trials), spec.objective,
             study.best_value if best else None, best)
    return trials, best, {"sweep_history.png": figure}


def study_node(study: dict[str, Any], parameters: dict[str, Any],
               **bundles: ArrayBundle) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The study: every declared variant of the recipe x every seed, through the real stage and
    evaluation pipelines, compared per task beside the classical baseline.

    Returns ``study.json``'s document, the Markdown table ``study.md`` and one figure per task.
    """
    from omnivec2_pipelines.pipelines.registry_helpers import build_pipelines
    from omnivec2_pipelines.study import run_study

    return run_study(study, parameters, bundles, build_pipelines(sorted(bundles)))

"""Kedro nodes: thin wrappers that hand parameters and datasets to the pure-torch code."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from omnivec2_pipelines.modalities.base import ArrayBundle, check_source, check_split_labels, get_modality
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.checkpoint import Checkpoint
from omnivec2_pipelines.training.evaluation import evaluate

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


def ingest_node(modality: str) -> Callable[[dict[str, Any]], tuple[pd.DataFrame, dict[str, Any]]]:
    """Node reading ``<modality>.source`` into the canonical table plus an ingestion report."""

    def ingest(source: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Read the source layout into a canonical table with a ``split`` column."""
        mod = get_modality(modality)
        check_source(source, mod)
        table = mod.read(source)
        check_split_labels(table, modality)
        report = {"modality": modality, "source": {k: str(v) for k, v in source.items()}, "rows": len(table),
                  "per_split": table["split"].value_counts().sort_index().to_dict(),
                  "per_class": table.groupby("label_name").size().sort_index().to_dict(),
                  "errors": table.attrs.get("ingestion_errors", {"on_error": source.get("on_error", "raise"),
                                                                 "skipped": 0, "by_reason": {}, "files": []})}
        if report["errors"]["skipped"]:
            log.warning("%s: skipped %d bad file(s) %s (see data/08_reporting/ingestion/%s.json)", modality,
                        report["errors"]["skipped"], report["errors"]["by_reason"], modality)
        log.info("ingested %s: %d rows %s", modality, len(table), report["per_split"])
        return table, report

    return _named(ingest, "ingest")


def tokenize_node(modality: str) -> Callable[[pd.DataFrame, dict[str, Any]], ArrayBundle]:
    """Node turning the canonical table into model-ready arrays."""

    def tokenize(table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Deterministic preprocessing of ``modality`` into an :class:`ArrayBundle`."""
        bundle = get_modality(modality).tokenize(table, params)
        log.info("tokenized %s: %s", modality,
                 {k: tuple(v.shape) for k, v in bundle.arrays.items() if k.endswith(".x")})
        return bundle

    return _named(tokenize, "tokenize")


def pretrain_unimodal(model_params: dict[str, Any], stage_params: dict[str, Any], trainer_params: dict[str, Any],
                      **bundles: ArrayBundle) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 1: unimodal masked pretraining of a fresh model on every enabled modality."""
    return stages.pretrain_unimodal(bundles, model_params, stage_params, trainer_params)


def pretrain_paired(init: Checkpoint, stage_params: dict[str, Any], trainer_params: dict[str, Any],
                    **bundles: ArrayBundle) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 2: paired masked pretraining, starting from the stage-1 checkpoint."""
    return stages.pretrain_paired(init, bundles, stage_params, trainer_params)


def multitask(init: Checkpoint, stage_params: dict[str, Any], trainer_params: dict[str, Any],
              **bundles: ArrayBundle) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 3: multimodal multitask training, starting from the stage-2 checkpoint."""
    return stages.multitask(init, bundles, stage_params, trainer_params)


def evaluate_node(ckpt: Checkpoint, params: dict[str, Any], trainer_params: dict[str, Any],
                  **bundles: ArrayBundle) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-task held-out metrics beside a classical baseline (one flat JSON object), plus details
    (confusion matrices) for the report."""
    allowed = {"split", "batch_size", "baselines"}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} under 'evaluation'; allowed: {sorted(allowed)}")
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
    return (reporting.markdown_report(metrics, hist, params.get("split", "test")),
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

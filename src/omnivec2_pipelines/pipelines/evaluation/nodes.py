"""Evaluation nodes: linear probes of every stage's checkpoint, held-out metrics beside a classical baseline,
and the human report.

torch, scikit-learn and matplotlib are imported when a node runs.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.params_schema import EVALUATION_KEYS, bootstrap_resamples
from omnivec2_pipelines.pipelines.common import Checkpoint

log = logging.getLogger(__name__)
#: Keyword prefix of the stage checkpoints the probe node reads (``ckpt__multitask``).
PROBE_PREFIX = "ckpt__"


def _check_keys(params: dict[str, Any]) -> None:
    unknown = set(params) - set(EVALUATION_KEYS)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} under 'evaluation'; "
                         f"allowed: {sorted(EVALUATION_KEYS)}")


def probe_node(params: dict[str, Any], trainer_params: dict[str, Any], **inputs: Any) -> dict[str, float]:
    """Frozen-feature linear probes of the stage checkpoints the pipeline reads (``evaluation.probe``'s stages of
    this run's lineage, keyword ``ckpt__<stage>``), on every task: ``"<modality>.<task>.probe.<stage>.<metric>"``
    (fitted on train, scored on ``evaluation.split``)."""
    _check_keys(params)
    from omnivec2_pipelines.training.probe import linear_probe

    models = {k.removeprefix(PROBE_PREFIX): v.model for k, v in inputs.items() if k.startswith(PROBE_PREFIX)}
    bundles = {k: v for k, v in inputs.items() if not k.startswith(PROBE_PREFIX)}
    if not models:
        return {}
    metrics = linear_probe(models, bundles, params.get("split", "test"), params.get("batch_size", 256),
                           trainer_params.get("device", "auto"), trainer_params.get("seed", 0))
    for k, v in metrics.items():
        log.info("%s = %.4f", k, v)
    return metrics


def evaluate_node(ckpt: Checkpoint, params: dict[str, Any], trainer_params: dict[str, Any],
                  probe_metrics: dict[str, float], **bundles: ArrayBundle) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-task held-out metrics beside a classical baseline (with the paired-bootstrap interval of their
    difference, ``evaluation.bootstrap``), with the probes' metrics (one flat JSON object), plus details
    (confusion matrices) for the report."""
    _check_keys(params)
    from omnivec2_pipelines.training.evaluation import evaluate

    details: dict[str, Any] = {}
    metrics = evaluate(ckpt.model, bundles, params.get("split", "test"), params.get("batch_size", 256),
                       trainer_params.get("device", "auto"), params.get("baselines", True),
                       trainer_params.get("seed", 0), details, bootstrap_resamples(params))
    for k, v in metrics.items():
        log.info("%s = %.4f", k, v)
    return {**metrics, **probe_metrics}, details


def keep_run_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The run's metrics unchanged, for ``run_metrics`` (versioned: one copy per run id; ``metrics`` holds
    the latest, at the path DVC compares across experiments)."""
    return metrics


def report_node(metrics: dict[str, float], details: dict[str, Any], params: dict[str, Any],
                **histories: pd.DataFrame) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The human report: Markdown metrics and probe tables, loss-curve figures, confusion-matrix figures."""
    from omnivec2_pipelines import reporting

    hist = {k.removeprefix("loss_"): v for k, v in histories.items()}
    return (reporting.markdown_report(metrics, hist, params.get("split", "test"), details),
            reporting.loss_figures(hist), reporting.confusion_figures(details))

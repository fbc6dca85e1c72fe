"""Evaluation nodes: held-out metrics beside a classical baseline, and the human report.

torch, scikit-learn and matplotlib are imported when a node runs.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.pipelines.common import Checkpoint

log = logging.getLogger(__name__)


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

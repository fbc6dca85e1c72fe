"""Prediction and export nodes: thin calls into :mod:`omnivec2_pipelines.inference.runs` (torch loads when a
node runs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.modalities.base import ArrayBundle


def predict_node(predict: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, Any]]:
    """Predict ``predict.task`` of ``predict.modality`` for the inputs under ``predict.path`` with the
    checkpoint ``predict.checkpoint``; returns the prediction table, its arrays and the report."""
    from omnivec2_pipelines.inference.runs import predict_inputs

    return predict_inputs(predict)


def export_node(export: dict[str, Any], **bundles: ArrayBundle) -> dict[str, Any]:
    """Export every (modality, task) of ``export.tasks`` to ``export.out_dir`` (torch.export + ONNX, with the
    parity check on rows of each modality's tokenized data); returns the report."""
    from omnivec2_pipelines.inference.runs import export_tasks

    return export_tasks(export, bundles)

"""The study pipeline (``study`` parameters): variants of the recipe x seeds, compared per task."""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.common import quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.study import nodes


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``study``: ``study.json``'s document, the Markdown table and one figure per task."""
    inputs = {"study": "params:study", "parameters": "parameters", **tokenized_inputs(modalities)}
    return {"study": Pipeline([quiet_node(nodes.study_node, inputs, ["study_results", "study_report", "study_figures"],
                                          name="study", tags=["gpu", "study"])])}

"""The transfer pipeline (``transfer`` parameters): leave one modality out, fine-tune on it, compare with scratch."""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.common import quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.transfer import nodes


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``transfer``: ``transfer.json``'s document, the Markdown report and one figure per held-out task."""
    inputs = {"transfer": "params:transfer", "parameters": "parameters", **tokenized_inputs(modalities)}
    return {"transfer": Pipeline([quiet_node(nodes.transfer_node, inputs,
                                             ["transfer_results", "transfer_report", "transfer_figures"],
                                             name="transfer", tags=["gpu", "transfer"])])}

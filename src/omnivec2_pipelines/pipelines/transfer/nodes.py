"""The transfer node: the method trained without each held-out modality, then fine-tuned on it.

The transfer's code, and torch with it, is imported when the node runs.
"""

from __future__ import annotations

from typing import Any

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.pipelines import evaluation, training


def _pipelines_for(modalities: list[str]) -> dict[str, Any]:
    return {**training.create_pipelines(modalities), **evaluation.create_pipelines(modalities)}


def transfer_node(transfer: dict[str, Any], parameters: dict[str, Any],
                  **bundles: ArrayBundle) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Leave-one-modality-out transfer: for each of ``transfer.hold_out``, the stages on the other modalities,
    then the label-efficiency curve on it from that checkpoint and from scratch.

    Returns ``transfer.json``'s document, the Markdown report and one figure per held-out task.
    """
    from omnivec2_pipelines.transfer import run_transfer

    return run_transfer(transfer, parameters, bundles, _pipelines_for)

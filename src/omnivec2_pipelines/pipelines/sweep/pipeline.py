"""The sweep pipeline: an Optuna study over one training stage (``sweep`` parameters)."""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.common import quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.sweep import nodes


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``sweep``: the trials table, the best parameters and the optimisation-history figure."""
    inputs = {"sweep": "params:sweep", "parameters": "parameters", "unimodal": "pretrain_unimodal_checkpoint",
              "paired": "pretrain_paired_checkpoint", **tokenized_inputs(modalities)}
    return {"sweep": Pipeline([quiet_node(nodes.sweep_node, inputs,
                                          ["sweep_trials", "sweep_best_params", "sweep_history"],
                                          name="sweep", tags=["gpu", "sweep"])])}

"""The evaluation pipeline: the final checkpoint on every tokenized modality's held-out split, then the report."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from omnivec2_pipelines.params_schema import STAGES
from omnivec2_pipelines.pipelines.common import quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.evaluation import nodes


def create_pipelines(modalities: list[str]) -> dict[str, Pipeline]:
    """``evaluation``: ``evaluate`` (metrics beside the baselines), then ``report`` (Markdown + figures)."""
    inputs = {"ckpt": "multitask_checkpoint", "params": "params:evaluation", "trainer_params": "params:trainer",
              **tokenized_inputs(modalities)}
    report_inputs = {"metrics": "metrics", "details": "evaluation_details", "params": "params:evaluation",
                     **{f"loss_{s}": f"{s}_loss_history" for s in STAGES}}
    return {"evaluation": Pipeline([
        quiet_node(nodes.evaluate_node, inputs, ["metrics", "evaluation_details"], name="evaluate",
                   tags=["evaluation"]),
        quiet_node(nodes.report_node, report_inputs, ["evaluation_report", "loss_curves", "confusion_matrices"],
                   name="report", tags=["evaluation"]),
    ])}

"""The training pipelines: one per stage, reading every tokenized modality (and the previous stage's checkpoint),
the stage's block and the keys of every modality's block that the stage uses (``<modality>.mask_ratio``, ...)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from omnivec2_pipelines.params_schema import STAGE_MODALITY_KEYS, STAGES
from omnivec2_pipelines.pipelines.common import modality_param_inputs, quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.training import nodes


def stage_pipeline(stage: str, modalities: list[str]) -> Pipeline:
    """A training stage: all tokenized modalities (+ previous checkpoint) → checkpoint + loss history."""
    inputs = {"stage_params": f"params:{stage}", "trainer_params": "params:trainer", **tokenized_inputs(modalities),
              **modality_param_inputs(modalities, STAGE_MODALITY_KEYS[stage])}
    if stage == STAGES[0]:
        inputs["model_params"] = "params:model"
    else:
        inputs["init"] = f"{STAGES[STAGES.index(stage) - 1]}_checkpoint"
    return Pipeline([quiet_node(getattr(nodes, stage), inputs, [f"{stage}_checkpoint", f"{stage}_loss_history"],
                                name=stage, tags=["gpu", "training"])])


def create_pipelines(modalities: list[str]) -> dict[str, Pipeline]:
    """``pretrain_unimodal``, ``pretrain_paired`` and ``multitask``, in the order they run."""
    return {stage: stage_pipeline(stage, modalities) for stage in STAGES}

"""The training pipelines: one per stage, reading every tokenized modality (and the previous stage's checkpoint),
the stage's block and the keys of every modality's block that the stage uses (``<modality>.mask_ratio``, ...).

A stage whose parameters name the checkpoint it starts from (``<stage>.init``, ``<stage>.resume_from`` or
``trainer.resume_from``) reads ``params:model`` instead of the previous stage's checkpoint, so it runs alone
(``kedro run --pipelines multitask --params multitask.init=...``) with no previous checkpoint on disk. Which
stages do is read from the run's parameters when the pipelines are built (see
:mod:`~omnivec2_pipelines.pipeline_registry`).
"""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.params_schema import STAGE_MODALITY_KEYS, STAGES
from omnivec2_pipelines.pipelines.common import modality_param_inputs, quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.training import nodes

def stage_pipeline(stage: str, modalities: list[str], named_start: bool = False) -> Pipeline:
    """A training stage: all tokenized modalities (+ previous checkpoint) → checkpoint + loss history.

    Args:
        stage: The stage.
        modalities: The enabled modalities.
        named_start: A parameter names the checkpoint the stage starts from: it reads ``params:model``
            (to check that checkpoint), not the previous stage's checkpoint.
    """
    inputs = {"stage_params": f"params:{stage}", "trainer_params": "params:trainer", **tokenized_inputs(modalities),
              **modality_param_inputs(modalities, STAGE_MODALITY_KEYS[stage])}
    if stage == STAGES[0] or named_start:
        inputs["model_params"] = "params:model"
    else:
        inputs["previous"] = f"{STAGES[STAGES.index(stage) - 1]}_checkpoint"
    return Pipeline([quiet_node(getattr(nodes, stage), inputs, [f"{stage}_checkpoint", f"{stage}_loss_history"],
                                name=stage, tags=["gpu", "training"])])


def named_starts(params: Mapping[str, Any]) -> set[str]:
    """The stages whose parameters name the checkpoint they start from (a bad value counts as none: the
    parameter checks before the run name it)."""
    from omnivec2_pipelines.training.params import stage_start

    out = set()
    for stage in STAGES:
        block = params.get(stage)
        try:
            if stage_start(stage, block if isinstance(block, Mapping) else {}, params.get("trainer") or {}):
                out.add(stage)
        except ValueError:
            pass
    return out


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``pretrain_unimodal``, ``pretrain_paired`` and ``multitask``, in the order they run.

    Args:
        modalities: The enabled modalities.
        params: The run's parameters, for :func:`named_starts` (None: none named).
    """
    starts = named_starts(params or {})
    return {stage: stage_pipeline(stage, modalities, stage in starts) for stage in STAGES}

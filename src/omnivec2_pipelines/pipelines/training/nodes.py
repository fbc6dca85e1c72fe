"""Training nodes: the three stages, each handing its parameters and the tokenized bundles to the pure-torch stage.

Besides the stage's block, a node reads the keys of every modality's block that its stage uses
(``params:image.mask_ratio`` as ``image__mask_ratio``, see :func:`~omnivec2_pipelines.pipelines.common.modality_param_inputs`).
Stages 2 and 3 read the previous stage's checkpoint as ``previous``, unless a parameter names the checkpoint
they start from (``<stage>.init``, ``resume_from``): they then read ``params:model`` instead, to check it.

torch is imported inside the nodes, so a run of the data pipelines (and Kedro's start-up) never pays for it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from omnivec2_pipelines.pipelines.common import Checkpoint, split_stage_inputs


def pretrain_unimodal(model_params: dict[str, Any], stage_params: dict[str, Any], trainer_params: dict[str, Any],
                      **inputs: Any) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 1: unimodal masked pretraining of a fresh model (or of ``init``) on every enabled modality."""
    from omnivec2_pipelines.training import stages

    bundles, modality_params = split_stage_inputs(inputs)
    return stages.pretrain_unimodal(bundles, model_params, stage_params, trainer_params, modality_params)


def pretrain_paired(stage_params: dict[str, Any], trainer_params: dict[str, Any], previous: Checkpoint | None = None,
                    model_params: dict[str, Any] | None = None, **inputs: Any) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 2: paired masked pretraining, starting from the stage-1 checkpoint (or ``init``)."""
    from omnivec2_pipelines.training import stages

    bundles, modality_params = split_stage_inputs(inputs)
    return stages.pretrain_paired(previous, bundles, stage_params, trainer_params, modality_params, model_params)


def multitask(stage_params: dict[str, Any], trainer_params: dict[str, Any], previous: Checkpoint | None = None,
              model_params: dict[str, Any] | None = None, **inputs: Any) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 3: multimodal multitask training, starting from the stage-2 checkpoint (or ``init``)."""
    from omnivec2_pipelines.training import stages

    bundles, modality_params = split_stage_inputs(inputs)
    return stages.multitask(previous, bundles, stage_params, trainer_params, modality_params, model_params)

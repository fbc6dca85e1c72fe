"""The sweep node: an Optuna study over one training stage, each trial running the real stage and evaluation pipelines.

Optuna and torch are imported when the node runs.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.pipelines import evaluation, training
from omnivec2_pipelines.pipelines.common import Checkpoint

log = logging.getLogger(__name__)


def sweep_node(sweep: dict[str, Any], parameters: dict[str, Any], unimodal: Checkpoint, paired: Checkpoint,
               **bundles: ArrayBundle) -> tuple[pd.DataFrame, dict[str, Any], Any]:
    """Optuna study over one training stage, each trial running the real stage + evaluation nodes.

    Validates the whole sweep (search space keys and ranges, storage URL, objective metric) before
    any trial runs. Returns the trials table, the best parameters (nested, for conf/local/) and the
    optimisation-history figure.
    """
    import copy

    from omnivec2_pipelines import sweep as sw

    spec = sw.SweepSpec.from_params(sweep)
    tasks = (parameters.get("multitask") or {}).get("tasks", "all")
    sw.validate(spec, parameters, sw.available_metrics(bundles, tasks))
    previous = {"pretrain_paired": ("pretrain_unimodal_checkpoint", unimodal),
                "multitask": ("pretrain_paired_checkpoint", paired)}.get(spec.stage)

    def inputs() -> dict[str, Any]:
        data: dict[str, Any] = {f"{m}.tokenized": b for m, b in bundles.items()}
        if previous is not None:
            data[previous[0]] = copy.deepcopy(previous[1])  # every trial starts from the same weights
        return data

    modalities = sorted(bundles)
    pipelines = {**training.create_pipelines(modalities), **evaluation.create_pipelines(modalities)}
    study = sw.run_sweep(spec, parameters, pipelines, inputs)
    trials, best, figure = sw.study_outputs(study)
    log.info("sweep: %d trials; best %s = %s with %s", len(trials), spec.objective,
             study.best_value if best else None, best)
    return trials, best, {"sweep_history.png": figure}

"""The evaluation pipeline: linear probes of every stage's checkpoint, the final checkpoint on every tokenized
modality's held-out split, then the report."""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.params_schema import STAGES, probe_stages
from omnivec2_pipelines.pipelines.common import quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.evaluation import nodes


def probed_stages(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The stages ``evaluation.probe`` names, of this run's lineage: a stage that starts from a named checkpoint
    (``<stage>.init`` / ``resume_from``) cuts the stages before it off (their checkpoints need not exist)."""
    from omnivec2_pipelines.pipelines.training.pipeline import named_starts

    try:
        wanted = probe_stages((params.get("evaluation") or {}).get("probe", True))
    except ValueError:  # the parameter checks before the run name it
        wanted = STAGES
    starts = named_starts(params)
    first = max((STAGES.index(s) for s in starts), default=0)
    return tuple(s for s in wanted if STAGES.index(s) >= first)


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``evaluation``: ``probe`` (frozen-feature linear probes of the stages' checkpoints), ``evaluate``
    (metrics beside the baselines, merged with the probes'), ``keep_run_metrics`` (a copy of them under the
    run id, in the versioned ``run_metrics``), then ``report`` (Markdown + figures).

    The sweep and the study run ``evaluate`` alone, giving it ``probe_metrics={}``.

    Args:
        modalities: The enabled modalities.
        params: The run's parameters, for :func:`probed_stages` (None: the defaults).
    """
    data = {"params": "params:evaluation", "trainer_params": "params:trainer", **tokenized_inputs(modalities)}
    probed = probed_stages(params or {})
    probe_inputs = {**data, **{f"{nodes.PROBE_PREFIX}{s}": f"{s}_checkpoint" for s in probed}}
    inputs = {**data, "ckpt": "multitask_checkpoint", "probe_metrics": "probe_metrics"}
    report_inputs = {"metrics": "metrics", "details": "evaluation_details", "params": "params:evaluation",
                     **{f"loss_{s}": f"{s}_loss_history" for s in STAGES}}
    return {"evaluation": Pipeline([
        quiet_node(nodes.probe_node, probe_inputs, "probe_metrics", name="probe", tags=["evaluation"]),
        quiet_node(nodes.evaluate_node, inputs, ["metrics", "evaluation_details"], name="evaluate",
                   tags=["evaluation"]),
        quiet_node(nodes.keep_run_metrics, "metrics", "run_metrics", name="keep_run_metrics", tags=["evaluation"]),
        quiet_node(nodes.report_node, report_inputs, ["evaluation_report", "loss_curves", "confusion_matrices"],
                   name="report", tags=["evaluation"]),
    ])}

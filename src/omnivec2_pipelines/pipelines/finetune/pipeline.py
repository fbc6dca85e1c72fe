"""The ``finetune`` pipeline: (optionally) ingest and tokenize new data sets, fine-tune a trained network, report.

Which modalities it reads, whether a modality's data is a new data set (``finetune.data.<m>``) and
whether it starts from the run's multitask checkpoint or from ``finetune.init`` shape the pipeline,
so they are read from the run's configuration, like the ``modalities`` list.
"""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.common import modality_param_inputs, quiet_node
from omnivec2_pipelines.pipelines.finetune import nodes


def data_nodes(m: str) -> Pipeline:
    """``finetune.<m>.ingest`` and ``finetune.<m>.tokenize``: the data set of ``finetune.data.<m>`` → arrays."""
    ns = f"finetune.{m}"
    return Pipeline([
        quiet_node(nodes.ingest_node(m), [f"params:{m}.source", f"params:finetune.data.{m}"],
                   [f"{ns}.table", f"{ns}.ingestion_report"], name=f"{ns}.ingest", tags=["ingestion", "finetune"]),
        quiet_node(nodes.tokenize_node(m), [f"{ns}.table", f"params:{m}.tokenization", f"params:finetune.data.{m}"],
                   f"{ns}.tokenized", name=f"{ns}.tokenize", tags=["tokenization", "finetune"]),
    ])


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``finetune``, for the run's ``modalities`` and its ``finetune`` block (``params["finetune"]``; none: the
    defaults)."""
    block = (params or {}).get("finetune")
    block = dict(block) if isinstance(block, Mapping) else {}
    data = dict(block.get("data") or {})
    given = block.get("modalities")
    mods = [given] if isinstance(given, str) else list(given or sorted({*modalities, *data}))
    inputs: dict[str, str] = {"finetune_params": "params:finetune", "trainer_params": "params:trainer",
                              **{m: f"finetune.{m}.tokenized" if m in data else f"{m}.tokenized" for m in mods},
                              **modality_param_inputs(mods, ("augment",))}
    if not block.get("init"):
        inputs["init"] = "multitask_checkpoint"
    pipe = sum((data_nodes(m) for m in sorted(data)), Pipeline([]))
    pipe += Pipeline([
        quiet_node(nodes.finetune_node, inputs, ["finetune_checkpoints", "finetune_loss_history", "finetune_results"],
                   name="finetune", tags=["gpu", "training", "finetune"]),
        quiet_node(nodes.finetune_report_node, "finetune_results", ["finetune_report", "finetune_figures"],
                   name="finetune_report", tags=["finetune"]),
    ])
    return {"finetune": pipe}

"""``predict`` (parameters ``predict``) and ``export`` (parameters ``export``).

The prediction's datasets are named after the (modality, task) of ``predict.modality`` / ``predict.task``
(``predict.<modality>.<task>.{predictions,arrays,report}``, catalog factories), so those two keys are
read from the run's configuration, like the ``modalities`` list.
"""

from __future__ import annotations

from typing import Any, Mapping

from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.common import quiet_node, tokenized_inputs
from omnivec2_pipelines.pipelines.predict import nodes

#: The (modality, task) predicted when the run's parameters name none.
DEFAULT_PAIR = ("image", "classification")


def _pair(params: Mapping[str, Any] | None) -> tuple[str, str]:
    block = (params or {}).get("predict")
    block = block if isinstance(block, Mapping) else {}
    m, t = block.get("modality", DEFAULT_PAIR[0]), block.get("task", DEFAULT_PAIR[1])
    return (m, t) if isinstance(m, str) and isinstance(t, str) else DEFAULT_PAIR


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``predict``: table + arrays + report of ``predict.<modality>.<task>``; ``export``: the serving models of
    a checkpoint and the report (example inputs from the enabled ``modalities``' tokenized data)."""
    m, t = _pair(params)
    ns = f"predict.{m}.{t}"
    predict = Pipeline([quiet_node(nodes.predict_node, "params:predict",
                                   [f"{ns}.predictions", f"{ns}.arrays", f"{ns}.report"],
                                   name="predict", tags=["predict"])])
    export = Pipeline([quiet_node(nodes.export_node, {"export": "params:export", **tokenized_inputs(modalities)},
                                  "export_report", name="export", tags=["export"])])
    return {"predict": predict, "export": export}

"""The data pipelines ``sample_data``, ``ingestion``, ``tokenization``: one template each, one namespace per modality.

A template is one node for one modality, under the namespace ``<modality>``: its datasets are
``<modality>.sample_manifest``, ``<modality>.table``, ``<modality>.ingestion_report`` and
``<modality>.tokenized``, its nodes ``<modality>.make_sample_data``, ``<modality>.ingest`` and
``<modality>.tokenize``.

Each reads its part of the modality's one parameter block (``conf/base/parameters_modalities/<modality>.yml``):
``params:sample_data``, ``params:source`` and ``params:tokenization``, which the namespace alone turns into
``params:<modality>.sample_data``, ``params:<modality>.source`` and ``params:<modality>.tokenization`` (no remapping).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from kedro.pipeline import Pipeline, node, pipeline

from omnivec2_pipelines.pipelines.data import nodes


def sample_data_template(m: str) -> Pipeline:
    """Embedded default data of ``m`` → its standard layout on disk (``<m>.sample_data.path``)."""
    return pipeline([node(nodes.sample_data_node(m), "params:sample_data", "sample_manifest",
                          name="make_sample_data")],
                    namespace=m)


def ingestion_template(m: str) -> Pipeline:
    """The source layout of ``m`` (``<m>.source``) → canonical table + ingestion report."""
    return pipeline([node(nodes.ingest_node(m), "params:source", ["table", "ingestion_report"],
                          name="ingest", tags=["ingestion"])],
                    namespace=m)


def tokenization_template(m: str) -> Pipeline:
    """The canonical table of ``m`` → model-ready arrays (``<m>.tokenization``)."""
    return pipeline([node(nodes.tokenize_node(m), ["table", "params:tokenization"], "tokenized",
                          name="tokenize", tags=["tokenization"])],
                    namespace=m)


#: Registered pipeline name -> its per-modality template.
TEMPLATES: dict[str, Callable[[str], Pipeline]] = {"sample_data": sample_data_template,
                                                   "ingestion": ingestion_template,
                                                   "tokenization": tokenization_template}


def create_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """``sample_data``, ``ingestion`` and ``tokenization``, each its template instantiated for every modality."""
    return {name: sum((template(m) for m in modalities), Pipeline([])) for name, template in TEMPLATES.items()}

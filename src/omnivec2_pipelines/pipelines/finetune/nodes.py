"""Fine-tuning nodes: read a new data set of a modality (ingestion + tokenization with ``finetune.data.<m>``
over the modality's own block), fine-tune, report. torch is imported when a node runs."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import pandas as pd

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.pipelines.common import Checkpoint, split_stage_inputs
from omnivec2_pipelines.pipelines.data import nodes as data_nodes

log = logging.getLogger(__name__)


def _override(base: dict[str, Any] | None, entry: dict[str, Any] | None, part: str) -> dict[str, Any]:
    """``<m>.<part>`` with the keys ``finetune.data.<m>.<part>`` gives on top."""
    return {**(base or {}), **((entry or {}).get(part) or {})}


def ingest_node(modality: str) -> Callable[..., Iterator[list[Any]]]:
    """The ingestion node of ``modality`` reading ``finetune.data.<modality>.source`` over ``<modality>.source``."""
    ingest = data_nodes.ingest_node(modality)

    def finetune_ingest(source: dict[str, Any], entry: dict[str, Any] | None) -> Iterator[list[Any]]:
        """Read the fine-tuning data set's layout into a canonical table (in chunks)."""
        yield from ingest(_override(source, entry, "source"))

    return finetune_ingest


def tokenize_node(modality: str) -> Callable[..., ArrayBundle]:
    """The tokenization node of ``modality`` with ``finetune.data.<modality>.tokenization`` over its own."""
    tokenize = data_nodes.tokenize_node(modality)

    def finetune_tokenize(table: pd.DataFrame, params: dict[str, Any], entry: dict[str, Any] | None) -> ArrayBundle:
        """Tokenize the fine-tuning data set (the checkpoint's tokenizer must fit a modality it knows)."""
        return tokenize(table, _override(params, entry, "tokenization"))

    return finetune_tokenize


def finetune_node(finetune_params: dict[str, Any], trainer_params: dict[str, Any], init: Checkpoint | None = None,
                  **inputs: Any) -> tuple[dict[str, Checkpoint], pd.DataFrame, dict[str, Any]]:
    """Fine-tune the checkpoint (``finetune.init``, else the run's multitask checkpoint) on every run the
    block asks for (pair groups x labelled fractions x start); returns the checkpoints, the loss
    histories and the results (every metric beside the baseline on the same labelled rows)."""
    from omnivec2_pipelines.training import finetune

    bundles, modality_params = split_stage_inputs(inputs)
    return finetune.finetune_stage(init, bundles, finetune_params, trainer_params, modality_params)


def finetune_report_node(results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The fine-tuning report (Markdown) and one label-efficiency figure per task."""
    from omnivec2_pipelines import reporting

    return reporting.finetune_markdown(results), reporting.finetune_figures(results)

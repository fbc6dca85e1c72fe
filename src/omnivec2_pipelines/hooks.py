"""Kedro hooks: validate every parameter a run will use before its first node starts."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from omnivec2_pipelines.modalities.base import ErrorPolicy, check_source, get_modality, source_batch_files
from omnivec2_pipelines.training.params import validate_stage_params

log = logging.getLogger(__name__)

STAGES = ("pretrain_unimodal", "pretrain_paired", "multitask")


def validate_run_parameters(params: dict[str, Any], pipeline: Pipeline) -> None:
    """Check the parameters of every node in ``pipeline`` (no data is read or written).

    Ingestion sources (format, path, on_error, batch_files), each training stage's block with the shared
    ``trainer`` and ``model`` blocks, and ``evaluation``. Raises on the first problem, naming the key.
    """
    names = {n.name for n in pipeline.nodes}
    modalities = list(params.get("modalities") or [])
    for name in sorted(names):
        if name.endswith(".ingest"):
            m = name.rsplit(".", 1)[0]
            source = (params.get(m) or {}).get("source")
            mod = get_modality(m)
            check_source(source, mod)
            ErrorPolicy(source, m)
            source_batch_files(source, m)
    trainer = params.get("trainer") or {}
    for stage in STAGES:
        if stage in names:

            validate_stage_params(stage, params.get(stage) or {}, trainer, modalities,
                                  params.get("model") or {} if stage == "pretrain_unimodal" else None)
    if "evaluate" in names:
        ev = params.get("evaluation") or {}
        unknown = set(ev) - {"split", "batch_size", "baselines"}
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} under 'evaluation'; "
                             f"allowed: ['baselines', 'batch_size', 'split']")
        if ev.get("split", "test") not in ("train", "val", "test"):
            raise ValueError(f"evaluation.split must be one of train, val, test; got {ev.get('split')!r}")


class ValidateParametersHook:
    """Fails a run with a clear message before any node runs when a parameter is wrong."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        validate_run_parameters(catalog.load("parameters"), pipeline)
        log.info("parameters validated for %d node(s)", len(pipeline.nodes))

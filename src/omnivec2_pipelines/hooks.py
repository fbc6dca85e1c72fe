"""Kedro hooks: pipelines built from the run's own configuration, every parameter checked before the first node."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

from omnivec2_pipelines import params_schema

log = logging.getLogger(__name__)


def validate_run_parameters(params: dict[str, Any], pipeline: Pipeline) -> None:
    """Check the parameters of a run of ``pipeline`` (no data is read or written).

    The keys of every block, used by the run or not (see :mod:`omnivec2_pipelines.params_schema`),
    then the values of every block that a node of ``pipeline`` reads: ingestion sources (format,
    path, on_error, batch_files), the trainer (and its device), the model, each training stage,
    evaluation, the sweep and any block registered with ``params_schema.register_block``.

    Raises:
        ValueError / TypeError: on the first problem, naming the full dotted key.
    """
    params_schema.check_keys_of_all(params)
    params_schema.check_used_blocks(params, pipeline)


def _tokenized_tasks(catalog: Any, name: str) -> list[str] | None:
    """The task names in the meta of the tokenized bundle ``name`` on disk, or None without one."""
    from omnivec2_pipelines.shards import INDEX

    dataset = catalog.get(name)  # None when the catalog has no such entry
    # an ArrayBundleDataset knows its folder; other datasets (in memory) have none
    path = getattr(dataset, "path", None) if dataset is not None else None
    index = Path(str(path)) / INDEX if path else None
    if index is None or not index.is_file():
        return None
    return sorted(json.loads(index.read_text()).get("meta", {}).get("tasks", {}))


def check_tasks_in_data(params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
    """``multitask.tasks`` against the tasks of the tokenized data already on disk.

    Which tasks a data set yields may depend on it (a tabular target is a class or a number), so
    this complements the check against what each modality declares. Bundles that this run
    tokenizes again are not read.

    Raises:
        ValueError: naming ``multitask.tasks.<modality>``, the task and the tasks the data has.
    """
    from omnivec2_pipelines.training.params import check_tasks

    spec = (params.get("multitask") or {}).get("tasks", "all")
    if "multitask" not in params_schema.blocks_read_by(pipeline) or not isinstance(spec, dict):
        return
    produced = pipeline.all_outputs()
    available = {}
    for m in spec:
        name = f"{m}.tokenized"
        tasks = None if name in produced else _tokenized_tasks(catalog, name)
        if tasks is not None:
            available[m] = tasks
    check_tasks(spec, list(params.get("modalities") or []), available, "has in its tokenized data")


class PipelineConfigHook:
    """Builds the pipelines from the run's own config loader: ``--env``, ``--conf-source``, ``KEDRO_ENV``.

    Kedro creates the context (and calls this hook) before it first reads the pipelines of a run.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from kedro.framework.project import PACKAGE_NAME, pipelines

        from omnivec2_pipelines.pipeline_registry import use_run_config

        use_run_config(context.config_loader)
        if PACKAGE_NAME:
            pipelines.configure(f"{PACKAGE_NAME}.pipeline_registry")  # built again, lazily, from that loader


class ValidateParametersHook:
    """Fails a run with a clear message before any node runs when a parameter is wrong."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any) -> None:
        params = catalog.load("parameters")
        validate_run_parameters(params, pipeline)
        check_tasks_in_data(params, pipeline, catalog)
        log.info("parameters validated for %d node(s)", len(pipeline.nodes))

"""Builds every pipeline from one template per stage, for the modalities enabled in config."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.pipeline import Pipeline, node, pipeline

from omnivec2_pipelines.pipelines import nodes

STAGES = ("pretrain_unimodal", "pretrain_paired", "multitask")


def enabled_modalities(conf_source: str | Path | None = None, env: str | None = None) -> list[str]:
    """The ``modalities`` list of the project's configuration files (base + run env).

    The list shapes the pipelines, so it is read from configuration files (``conf/base``, the
    run env: ``--env``, ``KEDRO_ENV`` or ``local``), not from ``--params``.

    Args:
        conf_source: The configuration folder (Kedro's ``--conf-source``; default ``conf``).
        env: The run env; None: ``KEDRO_ENV``, else ``local`` when the folder has one, else ``base``.

    Raises:
        ValueError: when the list is empty or names a modality that is not registered.
    """
    from omnivec2_pipelines.modalities.base import registered_modalities

    local = Path(conf_source or "conf").absolute()
    conf = str(local) if local.exists() else str(conf_source)  # a folder or an archive here, else a URL
    default_env = "local" if not local.is_dir() or (local / "local").is_dir() else "base"
    run_env = env or os.environ.get("KEDRO_ENV") or default_env
    loader = OmegaConfigLoader(conf, base_env="base", default_run_env="base", env=run_env)
    mods = loader["parameters"].get("modalities")
    known = registered_modalities()
    if not isinstance(mods, list) or not mods or any(m not in known for m in mods):
        raise ValueError(f"parameter 'modalities' in {conf} (env {run_env!r}) must be a non-empty list of "
                         f"{known}, got {mods!r}")
    return list(dict.fromkeys(mods))


def sample_data_pipeline(modalities: list[str]) -> Pipeline:
    return sum((pipeline([node(nodes.sample_data_node(m), "params:sample_data", "sample_manifest",
                               name="make_sample_data")],
                         namespace=m, parameters={"params:sample_data": f"params:sample_data.{m}"})
                for m in modalities), Pipeline([]))


def ingestion_pipeline(modalities: list[str]) -> Pipeline:
    """One template (read the source layout into a canonical table), one namespace per modality."""
    return sum((pipeline([node(nodes.ingest_node(m), "params:source", ["table", "ingestion_report"],
                               name="ingest", tags=["ingestion"])], namespace=m)
                for m in modalities), Pipeline([]))


def tokenization_pipeline(modalities: list[str]) -> Pipeline:
    """One template (canonical table → model-ready arrays), one namespace per modality."""
    return sum((pipeline([node(nodes.tokenize_node(m), ["table", "params:tokenization"], "tokenized",
                               name="tokenize", tags=["tokenization"])],
                         namespace=m, inputs={"table": f"{m}.table"},
                         parameters={"params:tokenization": f"params:tokenization.{m}"})
                for m in modalities), Pipeline([]))


def _node(*args, **kwargs):
    """``kedro.pipeline.node`` without the warning about dots in the namespaced names we read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return node(*args, **kwargs)


def stage_pipeline(stage: str, modalities: list[str]) -> Pipeline:
    """A training stage: all tokenized modalities (+ previous checkpoint) → checkpoint + loss history."""
    inputs = {"stage_params": f"params:{stage}", "trainer_params": "params:trainer",
              **{m: f"{m}.tokenized" for m in modalities}}
    if stage == "pretrain_unimodal":
        inputs["model_params"] = "params:model"
    else:
        inputs["init"] = f"{STAGES[STAGES.index(stage) - 1]}_checkpoint"
    return Pipeline([_node(getattr(nodes, stage), inputs, [f"{stage}_checkpoint", f"{stage}_loss_history"],
                          name=stage, tags=["gpu", "training"])])


def evaluation_pipeline(modalities: list[str]) -> Pipeline:
    inputs = {"ckpt": "multitask_checkpoint", "params": "params:evaluation", "trainer_params": "params:trainer",
              **{m: f"{m}.tokenized" for m in modalities}}
    report_inputs = {"metrics": "metrics", "details": "evaluation_details", "params": "params:evaluation",
                     **{f"loss_{s}": f"{s}_loss_history" for s in STAGES}}
    return Pipeline([
        _node(nodes.evaluate_node, inputs, ["metrics", "evaluation_details"], name="evaluate",
              tags=["evaluation"]),
        _node(nodes.report_node, report_inputs, ["evaluation_report", "loss_curves", "confusion_matrices"],
              name="report", tags=["evaluation"]),
    ])


def sweep_pipeline(modalities: list[str]) -> Pipeline:
    """An Optuna study over one training stage (``sweep`` parameters)."""
    inputs = {"sweep": "params:sweep", "parameters": "parameters", "unimodal": "pretrain_unimodal_checkpoint",
              "paired": "pretrain_paired_checkpoint", **{m: f"{m}.tokenized" for m in modalities}}
    return Pipeline([_node(nodes.sweep_node, inputs, ["sweep_trials", "sweep_best_params", "sweep_history"],
                           name="sweep", tags=["gpu", "sweep"])])


def study_pipeline(modalities: list[str]) -> Pipeline:
    """The study (``study`` parameters): variants of the recipe x seeds, compared per task."""
    inputs = {"study": "params:study", "parameters": "parameters", **{m: f"{m}.tokenized" for m in modalities}}
    return Pipeline([_node(nodes.study_node, inputs, ["study_results", "study_report", "study_figures"],
                           name="study", tags=["gpu", "study"])])


def build_pipelines(modalities: list[str]) -> dict[str, Pipeline]:
    """All registered pipelines; ``__default__`` runs the six stages in order."""
    pipes = {"sample_data": sample_data_pipeline(modalities),
             "ingestion": ingestion_pipeline(modalities),
             "tokenization": tokenization_pipeline(modalities),
             **{s: stage_pipeline(s, modalities) for s in STAGES},
             "evaluation": evaluation_pipeline(modalities),
             "sweep": sweep_pipeline(modalities),
             "study": study_pipeline(modalities)}
    pipes["__default__"] = sum((pipes[k] for k in ("ingestion", "tokenization", *STAGES, "evaluation")),
                               Pipeline([]))
    return pipes

"""Project pipelines: every family of :mod:`omnivec2_pipelines.pipelines`, for the modalities the run configures.

The ``modalities`` list shapes the pipelines (one namespace per modality), so it is read from the run's
own config loader: :class:`~omnivec2_pipelines.hooks.PipelineConfigHook` hands it over when Kedro creates
the run's context (``--env``, ``--conf-source``, ``KEDRO_ENV``, ``--params`` all apply), before Kedro
first reads the pipelines. Without a context (``kedro registry list``, a plain import) the loader is
the one a session would create: the project's settings, ``KEDRO_ENV`` or the default run env.
"""

from __future__ import annotations

import os
from pathlib import Path
import logging
from collections.abc import Mapping
from typing import Any

from kedro.pipeline import Pipeline

from omnivec2_pipelines.params_schema import STAGES
from omnivec2_pipelines.pipelines import data, evaluation, finetune, predict, study, sweep, training, transfer

#: The pipeline families, in the order their pipelines run; each ``create_pipelines(modalities, params)``.
FAMILIES = (data, training, evaluation, sweep, study, finetune, transfer, predict)
#: What ``kedro run`` runs with no ``--pipelines``: the six stages in order.
DEFAULT = ("ingestion", "tokenization", *STAGES, "evaluation")

log = logging.getLogger(__name__)

#: The config loader of the current run, set by ``PipelineConfigHook`` when Kedro creates the run's
#: context; None without one. (A config loader is a mapping, empty until read: compare with None.)
_RUN_CONFIG: dict[str, Any] = {"loader": None}


def build_pipelines(modalities: list[str], params: Mapping[str, Any] | None = None) -> dict[str, Pipeline]:
    """All registered pipelines for ``modalities``; ``__default__`` runs the six stages in order.

    Args:
        modalities: The enabled modalities (one namespace each).
        params: The run's parameters, which shape some pipelines (a stage started from a named checkpoint
            reads no previous checkpoint, the probes follow, ``finetune`` reads new data sets); None: the
            parameters of the run's config loader (:func:`run_parameters`).
    """
    params = run_parameters() if params is None else params
    pipes: dict[str, Pipeline] = {}
    for family in FAMILIES:
        pipes.update(family.create_pipelines(modalities, params))
    pipes["__default__"] = sum((pipes[k] for k in DEFAULT), Pipeline([]))
    return pipes


def project_config_loader(conf_source: str | Path | None = None, env: str | None = None) -> Any:
    """The config loader a Kedro session of this project would create (the project's ``settings``).

    Args:
        conf_source: The configuration folder, archive or URL; None: ``conf`` of the project around
            the working directory.
        env: The run env; None: ``KEDRO_ENV``, else the settings' ``default_run_env`` (``local``).
    """
    from kedro.framework.project import settings
    from kedro.utils import find_kedro_project

    if conf_source is None:
        conf_source = (find_kedro_project(Path.cwd()) or Path.cwd()) / settings.CONF_SOURCE
    return settings.CONFIG_LOADER_CLASS(conf_source=str(conf_source), env=env or os.environ.get("KEDRO_ENV"),
                                        **settings.CONFIG_LOADER_ARGS)


def enabled_modalities(config_loader: Any) -> list[str]:
    """The ``modalities`` list of the parameters that ``config_loader`` reads (base + run env).

    Raises:
        ValueError: when the list is empty or names a modality that is not registered.
    """
    from omnivec2_pipelines.modalities.base import registered_modalities

    mods = config_loader["parameters"].get("modalities")
    known = registered_modalities()
    if not isinstance(mods, list) or not mods or any(m not in known for m in mods):
        where = getattr(config_loader, "conf_source", "the configuration")
        env = getattr(config_loader, "env", None) or getattr(config_loader, "default_run_env", None)
        raise ValueError(f"parameter 'modalities' in {where} (env {env!r}) must be a non-empty list of "
                         f"{known}, got {mods!r}")
    return list(dict.fromkeys(mods))


def run_parameters() -> Mapping[str, Any]:
    """The parameters of the run the pipelines are built for (the run's config loader, else the project's);
    {} when unreadable (the run itself then reports the problem)."""
    loader = _RUN_CONFIG["loader"]
    try:
        return (project_config_loader() if loader is None else loader)["parameters"]
    except Exception as e:
        log.debug("pipelines: parameters unreadable (%s); built with the defaults", e)
        return {}


def use_run_config(config_loader: Any) -> None:
    """Build the pipelines from the parameters of ``config_loader`` from now on (None: :func:`project_config_loader`).

    Args:
        config_loader: The run context's ``config_loader``.
    """
    _RUN_CONFIG["loader"] = config_loader


def register_pipelines() -> dict[str, Pipeline]:
    """Register ``sample_data``, ``ingestion``, ``tokenization``, the three training stages, ``evaluation``, ...

    The enabled ``modalities`` come from the run's configuration (see the module's docstring).

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    loader = _RUN_CONFIG["loader"]
    loader = project_config_loader() if loader is None else loader
    return build_pipelines(enabled_modalities(loader), loader["parameters"])

"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import settings
from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.registry_helpers import build_pipelines, enabled_modalities

#: The configuration of the current run (``conf_source``, ``env``), set by ``PipelineConfigHook``
#: when Kedro creates the run's context; without a context (``kedro registry list``) both are None.
_RUN_CONFIG: dict[str, str | None] = {"conf_source": None, "env": None}


def use_run_config(conf_source: str | None, env: str | None) -> bool:
    """Build the pipelines from ``conf_source`` and ``env`` from now on.

    Args:
        conf_source: The run's configuration folder (Kedro's ``--conf-source``), None for the project's.
        env: The run's environment (``--env`` or ``KEDRO_ENV``), None for the default (``local``).

    Returns:
        Whether that changed the configuration (the pipelines must then be built again).
    """
    new = {"conf_source": None if conf_source is None else str(conf_source), "env": env}
    changed = new != _RUN_CONFIG
    _RUN_CONFIG.update(new)
    return changed


def register_pipelines() -> dict[str, Pipeline]:
    """Register ``sample_data``, ``ingestion``, ``tokenization``, the three training stages, ``evaluation``, ...

    The enabled ``modalities`` come from the run's configuration files (``--conf-source``, ``--env``).

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    conf_source = _RUN_CONFIG["conf_source"] or getattr(settings, "CONF_SOURCE", "conf")
    return build_pipelines(enabled_modalities(conf_source, _RUN_CONFIG["env"]))

"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import settings
from kedro.pipeline import Pipeline

from omnivec2_pipelines.pipelines.registry_helpers import build_pipelines, enabled_modalities


def register_pipelines() -> dict[str, Pipeline]:
    """Register ``sample_data``, ``ingestion``, ``tokenization``, the three training stages, ``evaluation``.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    return build_pipelines(enabled_modalities(getattr(settings, "CONF_SOURCE", "conf")))

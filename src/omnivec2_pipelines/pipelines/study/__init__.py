"""The study family: variants x seeds, compared per task."""

from omnivec2_pipelines.pipelines.study.pipeline import create_pipelines

__all__ = ["create_pipelines"]

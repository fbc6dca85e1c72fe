"""The evaluation family: metrics beside the baselines, and the report."""

from omnivec2_pipelines.pipelines.evaluation.pipeline import create_pipelines

__all__ = ["create_pipelines"]

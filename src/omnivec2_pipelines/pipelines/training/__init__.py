"""The training family: the three stages."""

from omnivec2_pipelines.pipelines.training.pipeline import create_pipelines

__all__ = ["create_pipelines"]

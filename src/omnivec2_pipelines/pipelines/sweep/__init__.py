"""The sweep family: Optuna over one training stage."""

from omnivec2_pipelines.pipelines.sweep.pipeline import create_pipelines

__all__ = ["create_pipelines"]

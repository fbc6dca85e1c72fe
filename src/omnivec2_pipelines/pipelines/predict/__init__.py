"""The predict family: a trained network's predictions on raw inputs, and its export for serving."""

from omnivec2_pipelines.pipelines.predict.pipeline import create_pipelines

__all__ = ["create_pipelines"]

"""The data family: sample data, ingestion and tokenization, per modality."""

from omnivec2_pipelines.pipelines.data.pipeline import create_pipelines

__all__ = ["create_pipelines"]

"""The transfer family: leave-one-modality-out training, then fine-tuning on the held-out modality."""

from omnivec2_pipelines.pipelines.transfer.pipeline import create_pipelines

__all__ = ["create_pipelines"]

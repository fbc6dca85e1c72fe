"""The finetune family: a trained network fine-tuned on (modality, task) pairs, and the label-efficiency curve."""

from omnivec2_pipelines.pipelines.finetune.pipeline import create_pipelines

__all__ = ["create_pipelines"]

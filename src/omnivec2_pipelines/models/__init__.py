"""The OmniVec2 model in pure PyTorch (never imports Kedro)."""

from omnivec2_pipelines.models.config import HeadConfig, ModelConfig, TokenizerConfig, head_key
from omnivec2_pipelines.models.omnivec2 import OmniVec2, Stream

__all__ = ["HeadConfig", "ModelConfig", "OmniVec2", "Stream", "TokenizerConfig", "head_key"]

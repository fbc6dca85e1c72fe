"""The OmniVec2 model in pure PyTorch (never imports Kedro).

The config dataclasses import without torch; the network classes load torch on first use.
"""

from typing import Any

from omnivec2_pipelines.models.config import HeadConfig, ModelConfig, TokenizerConfig, head_key

__all__ = ["HeadConfig", "ModelConfig", "OmniVec2", "Stream", "TokenizerConfig", "head_key"]


def __getattr__(name: str) -> Any:
    if name in ("OmniVec2", "Stream"):
        from omnivec2_pipelines.models import omnivec2

        return getattr(omnivec2, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

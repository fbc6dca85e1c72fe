"""Modality tokenizers: raw model input → (tokens, valid mask) at the backbone width.

Each tokenizer also knows how to cut its input into reconstruction targets (``patchify``),
one target vector per token, for masked pretraining. New kinds register with
:func:`register_tokenizer`.
"""

from __future__ import annotations

from typing import Callable

from omnivec2_pipelines.models.config import TokenizerConfig
from omnivec2_pipelines.models.tokenizers.base import Tokenizer
from omnivec2_pipelines.models.tokenizers.patch2d import Patch2DTokenizer
from omnivec2_pipelines.models.tokenizers.time_patch import TimePatchTokenizer

_KINDS: dict[str, Callable[[TokenizerConfig, int], Tokenizer]] = {}


def register_tokenizer(kind: str, factory: Callable[[TokenizerConfig, int], Tokenizer]) -> None:
    """Make ``kind`` buildable from a :class:`TokenizerConfig`."""
    _KINDS[kind] = factory


def build_tokenizer(cfg: TokenizerConfig, width: int) -> Tokenizer:
    """Instantiate the tokenizer ``cfg.kind`` producing tokens of size ``width``."""
    if cfg.kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {cfg.kind!r}; known: {sorted(_KINDS)}")
    return _KINDS[cfg.kind](cfg, width)


register_tokenizer("patch2d", Patch2DTokenizer.from_config)
register_tokenizer("time_patch", TimePatchTokenizer.from_config)

__all__ = ["Tokenizer", "Patch2DTokenizer", "TimePatchTokenizer", "build_tokenizer", "register_tokenizer"]

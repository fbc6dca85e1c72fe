"""Modality tokenizers: raw model input → (tokens, valid mask) at the backbone width.

Every module in this package defines a :class:`Tokenizer` subclass and registers it under a
``kind`` with :func:`register_tokenizer`; all modules are imported here, so a new tokenizer is
one new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

from omnivec2_pipelines.models.config import TokenizerConfig
from omnivec2_pipelines.models.tokenizers.base import Tokenizer

_KINDS: dict[str, Callable[..., Tokenizer]] = {}


def register_tokenizer(kind: str) -> Callable[[type[Tokenizer]], type[Tokenizer]]:
    """Class decorator: make ``kind`` buildable from a :class:`TokenizerConfig`."""

    def deco(cls: type[Tokenizer]) -> type[Tokenizer]:
        _KINDS[kind] = cls
        cls.kind = kind
        return cls

    return deco


def build_tokenizer(cfg: TokenizerConfig, width: int) -> Tokenizer:
    """Instantiate tokenizer ``cfg.kind`` with ``cfg.args``, producing tokens of size ``width``."""
    if cfg.kind not in _KINDS:
        raise ValueError(f"unknown tokenizer kind {cfg.kind!r}; known: {sorted(_KINDS)}")
    args: dict[str, Any] = dict(cfg.args)
    try:
        return _KINDS[cfg.kind](width=width, **args)
    except TypeError as e:
        raise ValueError(f"tokenizer {cfg.kind!r}: bad arguments {sorted(args)}: {e}") from e


def tokenizer_kinds() -> list[str]:
    return sorted(_KINDS)


for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["Tokenizer", "build_tokenizer", "register_tokenizer", "tokenizer_kinds"]

"""Base class of modality tokenizers."""

from __future__ import annotations

import abc

from torch import Tensor, nn


class Tokenizer(nn.Module, abc.ABC):
    """Turns a batch of one modality into tokens of the backbone width.

    Attributes:
        max_tokens: Upper bound on the number of tokens per sample.
        patch_dim: Size of one reconstruction target vector (see :meth:`patchify`).
    """

    max_tokens: int
    patch_dim: int

    @abc.abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return tokens (B, N, D) with positions added, and valid mask (B, N), True = real token."""

    @abc.abstractmethod
    def patchify(self, x: Tensor) -> Tensor:
        """Return reconstruction targets (B, N, patch_dim) aligned with :meth:`forward`'s tokens."""

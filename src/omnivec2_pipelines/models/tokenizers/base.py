"""Base class of modality tokenizers."""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn

from omnivec2_pipelines.models.layers import sincos_positions


class Tokenizer(nn.Module, abc.ABC):
    """Turns a batch of one modality into tokens of the backbone width.

    Subclasses register with ``@register_tokenizer("<kind>")`` and take their configuration as
    keyword arguments plus ``width`` (the token size).

    Attributes:
        kind: Registered kind (set by the decorator).
        max_tokens: Upper bound on the number of tokens per sample.
        patch_dim: Size of the decoder's prediction per token (see :meth:`reconstruction_loss`).
        aligned: Whether token ``i`` holds the same content in every sample: a cell of an image grid
            (registered or centred acquisitions: radiographs, digits, a pixel's neighbourhood), a spectrum's
            band group, a table's column: True here. False for sequences, where the same event or word can
            come at any place (time patches, text), and for sets (point groups, graph nodes). Heads that
            weigh each position on their own (``model.flat_head``) do so for aligned tokens only.
        linear_dim: Length of :meth:`linear_features`' rows; 0 (the default) when the tokenizer offers none.

    A tokenizer that computes a per-batch structure while tokenizing (e.g. the point groups'
    centres and neighbours) returns it from :meth:`tokenize` as ``aux``; the model keeps it on the
    stream, and :meth:`patchify` and the heads take it back instead of recomputing it. ``aux`` is
    None for tokenizers that have none, and every ``aux`` argument may be None (then computed
    from ``x``).
    """

    kind: str = ""
    aligned: bool = True
    linear_dim: int = 0
    max_tokens: int
    patch_dim: int

    @abc.abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return tokens (B, N, D) with positions added, and valid mask (B, N), True = real token."""

    def tokenize(self, x: Tensor) -> tuple[Tensor, Tensor, object]:
        """Tokens (B, N, D), valid mask (B, N) and the tokenizer's ``aux`` for this batch (None here)."""
        tokens, valid = self(x)
        return tokens, valid, None

    def position_grid(self) -> tuple[int, ...] | None:
        """The grid of places behind the learned position table ``self.pos`` (row-major), or None when the
        tokenizer has no such table (positions from coordinates, column embeddings, none)."""
        return None

    def position_scale(self) -> float:
        """Factor on the sine-cosine table (values in [-1, 1], std about 0.7): 1, as MAE's beside a patch
        projection whose outputs are of that size at initialisation."""
        return 1.0

    def init_positions_sincos(self) -> bool:
        """Set ``self.pos`` to the sine-cosine values of :meth:`position_grid` times :meth:`position_scale`
        (``model.pos_init: sincos``); returns whether there was a table to set."""
        grid = self.position_grid()
        if grid is None:
            return False
        with torch.no_grad():
            table = sincos_positions(grid, self.pos.shape[-1]) * self.position_scale()
            self.pos.copy_(table.reshape(self.pos.shape))
        return True

    def dense(self, x: Tensor) -> bool:
        """Whether every token of ``x`` is real, known from its shape alone (no read of device values).

        Dense batches take the fast path: no attention padding mask (so the fastest attention kernel
        applies) and a masking whose kept count is known on the host. False (the default) when
        validity depends on the values (padded texts, graphs with fewer nodes).
        """
        return False

    def linear_features(self, x: Tensor) -> Tensor:
        """The input as one fixed-length row of numbers per sample, (B, :attr:`linear_dim`): what a classical
        linear model of it reads (a series' values, a table's numeric values and one-hot categories, a
        graph's summed node features). Heads with ``model.wide_head`` add a linear map of it to their output."""
        raise NotImplementedError(f"tokenizer {self.kind!r} has no linear features (linear_dim = 0)")

    @abc.abstractmethod
    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        """Return reconstruction targets aligned with :meth:`forward`'s tokens, (B, N, ...).

        ``aux``: what :meth:`tokenize` returned for this ``x`` (None: recompute what is needed).
        """

    def reconstruction_loss(self, pred: Tensor, target: Tensor, weight: Tensor, norm_target: bool) -> Tensor:
        """Masked-token reconstruction loss; the default is MSE on (optionally normalised) patches.

        Args:
            pred: (B, N, patch_dim) decoder predictions for every position.
            target: :meth:`patchify` output.
            weight: (B, N) float, 1 on hidden real tokens (the only ones that count), else 0.
            norm_target: Normalise every target patch to zero mean / unit variance (MAE).
        """
        target = target.float()
        if norm_target and target.shape[-1] > 1:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        per_token = (pred.float() - target).pow(2).mean(-1)  # (B, N)
        return (per_token * weight).sum() / weight.sum().clamp_min(1.0)

"""Task heads keyed by (modality, task), and the light masked-reconstruction decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.config import POOLS, HeadConfig
from omnivec2_pipelines.models.layers import Attention, Block, init_weights, masked_mean, trunc_normal_param
from omnivec2_pipelines.models.masking import MaskInfo
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


class Head(nn.Module):
    """A task head: ``forward(tokens, valid, x, tokenizer, aux)``; ``x``, ``tokenizer`` and ``aux``
    (the tokenizer's per-batch output kept on the stream, see :meth:`Tokenizer.tokenize`) serve
    dense heads."""

    def forward(self, tokens: Tensor, valid: Tensor, x: Tensor | None = None,
                tokenizer: Tokenizer | None = None, aux: object = None) -> Tensor:
        raise NotImplementedError


class MeanPool(nn.Module):
    """The mean over real tokens: (B, N, D), (B, N) → (B, D)."""

    def forward(self, tokens: Tensor, valid: Tensor) -> Tensor:
        return masked_mean(tokens, valid)


class AttentionPool(nn.Module):
    """One learned query attends over the real tokens (multi-head attention pooling, the MAP head of
    ViT-22B and SigLIP): a weighted mean whose weights depend on each token's content and position.
    (B, N, D), (B, N) → (B, D)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.query = trunc_normal_param(1, 1, dim)
        self.attn = Attention(dim, heads, cross=True)

    def forward(self, tokens: Tensor, valid: Tensor) -> Tensor:
        q = self.query.expand(tokens.shape[0], -1, -1).to(tokens.dtype)  # (B, 1, D)
        return self.attn(q, context=tokens, key_valid=valid)[:, 0]


def make_pool(kind: str, dim: int, heads: int) -> nn.Module:
    """The pooling module of ``model.pool`` = ``kind`` for ``dim``-wide tokens."""
    if kind == "mean":
        return MeanPool()
    if kind == "attention":
        return AttentionPool(dim, heads)
    raise ValueError(f"model.pool must be one of {list(POOLS)}, got {kind!r}")


def flatten_tokens(t: Tensor, valid: Tensor, max_tokens: int) -> Tensor:
    """(B, N, D) tokens → (B, max_tokens * D), padding positions (and positions past N) as zeros."""
    b, n, d = t.shape
    return F.pad(t * valid.unsqueeze(-1).to(t.dtype), (0, 0, 0, max_tokens - n)).reshape(b, -1)


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear map that starts at zero (weights and bias): a term added to a head's output that begins
    as no change."""
    lin = nn.Linear(in_features, out_features)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


def wide_linear(use: bool, tokenizer: Tokenizer, out_dim: int) -> nn.Linear | None:
    """The wide term of a head (``model.wide_head``): a zero-started linear map of the tokenizer's linear
    features, or None when it is off or the tokenizer has none."""
    return zero_linear(tokenizer.linear_dim, out_dim) if use and tokenizer.linear_dim > 0 else None


def add_wide(wide: nn.Linear | None, out: Tensor, x: Tensor | None, tokenizer: Tokenizer | None) -> Tensor:
    """``out`` plus the wide term of the input ``x`` (unchanged without one)."""
    if wide is None:
        return out
    if x is None or tokenizer is None:
        raise ValueError("a head with model.wide_head needs the input x and its tokenizer")
    return out + wide(tokenizer.linear_features(x).to(out.dtype))


class ClassificationHead(Head):
    """LayerNorm → pool over real tokens (``pool``: mean by default) → linear logits (trained with
    cross-entropy).

    With ``flat`` (``model.flat_head``) and a tokenizer whose token ``i`` holds the same content in every
    sample (:attr:`Tokenizer.aligned`: image patches, tubelets, band groups, table columns), a linear map
    of all token positions is added to the logits (the flatten-and-linear readout of LeNet / VGG and
    PatchTST, zero at the start): the readout can weigh each place on its own, which a mean over the
    tokens cannot (a mean of linear patch embeddings is the same linear map at every place). Sequences
    and sets (time patches, text, point groups, graph nodes) keep the pooled readout alone.

    With ``wide`` (``model.wide_head``), a linear map of the input's linear features is added too
    (:class:`RegressionHead` says why).
    """

    def __init__(self, dim: int, out_dim: int, flat: bool = False, wide: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pool: nn.Module = MeanPool()
        self.fc = nn.Linear(dim, out_dim)
        self.dim, self.out_dim, self.use_flat, self.use_wide = dim, out_dim, flat, wide
        self.flat: nn.Linear | None = None
        self.wide: nn.Linear | None = None

    def build(self, tokenizer: Tokenizer) -> None:
        if self.use_flat and tokenizer.aligned:
            self.flat = zero_linear(tokenizer.max_tokens * self.dim, self.out_dim)
        self.wide = wide_linear(self.use_wide, tokenizer, self.out_dim)

    def forward(self, tokens: Tensor, valid: Tensor, x: Tensor | None = None,
                tokenizer: Tokenizer | None = None, aux: object = None) -> Tensor:
        t = self.norm(tokens)
        logits = self.fc(self.pool(t, valid))  # (B, out_dim)
        if self.flat is not None:
            logits = logits + self.flat(flatten_tokens(t, valid, self.flat.in_features // self.dim))
        return add_wide(self.wide, logits, x, tokenizer)


class RegressionHead(Head):
    """Mean- and last-token pooling → MLP, plus a linear map of all token positions (PatchTST's
    flatten head) → ``out_dim`` values (trained with ℓ2). Padding positions contribute zeros.

    With ``wide`` (``model.wide_head``) and a tokenizer that has linear features
    (:meth:`Tokenizer.linear_features`: a series' values, a table's numbers and one-hot categories), a
    linear map of the raw input is added too (zero at the start): the wide part of Wide & Deep, LSTNet's
    autoregressive highway. The network then only has to learn what a linear model of the input misses, and
    that linear part does not depend on what the shared body keeps of a small data set's input.
    """

    def __init__(self, dim: int, out_dim: int, wide: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, out_dim))
        self.dim, self.out_dim, self.use_wide = dim, out_dim, wide
        self.flat: nn.Linear | None = None
        self.wide: nn.Linear | None = None

    def build(self, tokenizer: Tokenizer) -> None:
        self.flat = zero_linear(tokenizer.max_tokens * self.dim, self.out_dim)
        self.wide = wide_linear(self.use_wide, tokenizer, self.out_dim)

    def forward(self, tokens: Tensor, valid: Tensor, x: Tensor | None = None,
                tokenizer: Tokenizer | None = None, aux: object = None) -> Tensor:
        t = self.norm(tokens)
        last = valid.long().cumsum(1).argmax(1)  # index of the last real token
        pooled = torch.cat([masked_mean(t, valid), t[torch.arange(t.shape[0]), last]], dim=-1)
        flat = flatten_tokens(t, valid, self.flat.in_features // self.dim)
        return add_wide(self.wide, self.mlp(pooled) + self.flat(flat), x, tokenizer)  # (B, out_dim)


class DenseHead(Head):
    """Per-token MLP → one patch of ``out_dim`` channels per token → the tokenizer's ``unpatchify``.

    Dense (pixel-level) prediction, e.g. depth, trained with ℓ2. Needs a tokenizer with
    ``unpatchify(per_token, channels)`` (2D patches).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.norm = nn.LayerNorm(dim)
        self.mlp: nn.Module | None = None
        self.dim = dim

    def build(self, tokenizer: Tokenizer) -> None:
        """Create the output layer once the tokenizer's patch geometry is known."""
        if not hasattr(tokenizer, "unpatchify"):
            raise ValueError(f"dense head needs a tokenizer with unpatchify(); {tokenizer.kind!r} has none")
        per_patch = self.out_dim * tokenizer.patch_dim // tokenizer.in_channels
        self.mlp = nn.Sequential(nn.Linear(self.dim, self.dim), nn.GELU(), nn.Linear(self.dim, per_patch))

    def forward(self, tokens: Tensor, valid: Tensor, x: Tensor | None = None,
                tokenizer: Tokenizer | None = None, aux: object = None) -> Tensor:
        return tokenizer.unpatchify(self.mlp(self.norm(tokens)), self.out_dim)  # (B, out_dim, H, W)


class PointSegmentationHead(Head):
    """Per-point logits: group features propagated to points (the tokenizer's ``propagate``:
    inverse-distance over the 3 nearest group centres, PointNet++ style), concatenated with the
    point coordinates, then an MLP.

    Needs a tokenizer with ``centers(x, aux) -> (B, G, 3)`` and ``propagate`` (point groups); the
    centres come from the stream's grouping (``aux``) when given, else are computed from ``x``.
    """

    def __init__(self, dim: int, out_dim: int, neighbours: int = 3) -> None:
        super().__init__()
        self.k = neighbours
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim + 3, dim), nn.GELU(), nn.Linear(dim, out_dim))

    def build(self, tokenizer: Tokenizer) -> None:
        if not (hasattr(tokenizer, "centers") and hasattr(tokenizer, "propagate")):
            raise ValueError(f"segmentation head needs a tokenizer with centers() and propagate(); "
                             f"{tokenizer.kind!r} has none")

    def forward(self, tokens: Tensor, valid: Tensor, x: Tensor | None = None,
                tokenizer: Tokenizer | None = None, aux: object = None) -> Tensor:
        xyz = x[..., :3].float()  # (B, P, 3)
        centers = tokenizer.centers(x, aux)  # (B, G, 3), the stream's grouping when given
        point_feats = tokenizer.propagate(self.norm(tokens), centers, xyz, self.k)  # (B, P, D)
        return self.mlp(torch.cat([point_feats, xyz.to(point_feats.dtype)], -1))  # (B, P, K)


def build_head(cfg: HeadConfig, dim: int, tokenizer: Tokenizer, pool: str = "mean", heads: int = 1,
               flat: bool = False, wide: bool = False) -> Head:
    """Instantiate the head of task kind ``cfg.kind`` (its factory in :mod:`omnivec2_pipelines.tasks`)
    on top of ``tokenizer``'s tokens; a head that pools (has a ``pool`` module) pools as ``pool`` says
    (:func:`make_pool`, ``heads`` attention heads); ``flat`` (``model.flat_head``) gives a head that
    has the option (``use_flat``: classification) its flatten term; ``wide`` (``model.wide_head``) gives a
    head that has that option (``use_wide``: classification, regression) its linear map of the input
    (``model.wide_head`` lists the task kinds that get one)."""
    from omnivec2_pipelines.tasks import get_task_kind, task_kinds

    if cfg.kind not in task_kinds():
        raise ValueError(f"unknown head kind {cfg.kind!r} for {cfg.modality}.{cfg.task}; "
                         f"known: {sorted(task_kinds())}")
    kind = get_task_kind(cfg.kind)
    if cfg.out_dim < 1:
        raise ValueError(f"head {cfg.modality}.{cfg.task}: out_dim must be >= 1, got {cfg.out_dim}")
    head = kind.head(dim, cfg.out_dim)
    if isinstance(getattr(head, "pool", None), nn.Module):
        head.pool = make_pool(pool, dim, heads)
    if hasattr(head, "use_flat"):
        head.use_flat = flat
    if hasattr(head, "use_wide"):
        head.use_wide = wide
    head.apply(init_weights)
    if hasattr(head, "build"):
        head.build(tokenizer)
    return head


class MaskedDecoder(nn.Module):
    """Light MAE decoder: re-inserts mask tokens at hidden positions and predicts their patches.

    Args:
        dim: Width of the incoming (visible) tokens and of the decoder.
        max_tokens: Full sequence length of the modality.
        patch_dim: Size of a reconstruction target.
        depth: Transformer blocks.
        heads: Attention heads.
        qk_norm: Normalise the attention's queries and keys (as in the rest of the network).
    """

    def __init__(self, dim: int, max_tokens: int, patch_dim: int, depth: int, heads: int,
                 qk_norm: bool = False) -> None:
        super().__init__()
        self.mask_token = trunc_normal_param(1, 1, dim)
        self.pos = trunc_normal_param(1, max_tokens, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, qk_norm=qk_norm) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, patch_dim)

    def forward(self, visible: Tensor, mask: MaskInfo, valid: Tensor | None) -> Tensor:
        """(B, K, D) visible tokens → (B, N, patch_dim) predictions for every position (``valid``
        (B, N), or None when every token is real)."""
        b, k, d = visible.shape
        n = mask.ids_restore.shape[1]
        x = torch.cat([visible, self.mask_token.expand(b, n - k, d)], dim=1)  # (B, N, D) shuffled
        x = x.gather(1, mask.ids_restore.unsqueeze(-1).expand(-1, -1, d)) + self.pos[:, :n]  # unshuffled
        for blk in self.blocks:
            x = blk(x, valid)
        return self.out(self.norm(x))

"""Transformer building blocks on ``scaled_dot_product_attention``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _attn_mask(key_valid: Tensor | None) -> Tensor | None:
    """(B, Nk) bool, True = real token → (B, 1, 1, Nk) mask broadcast over heads and queries."""
    return None if key_valid is None else key_valid[:, None, None, :]


def to_compute_dtype(x: Tensor) -> Tensor:
    """``x`` in the autocast dtype of its device when autocast is on there (else unchanged).

    LayerNorm runs in fp32 under autocast and fp32 embeddings promote bf16 tokens, so without this the
    residual stream of every block would be fp32: twice the activation memory traffic.
    """
    kind = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(kind):
        return x.to(torch.get_autocast_dtype(kind))
    return x


class Attention(nn.Module):
    """Multi-head attention on ``scaled_dot_product_attention``.

    Self-attention (``cross=False``) projects q, k and v with one fused ``qkv`` matmul;
    cross-attention (``cross=True``) projects the queries from ``x`` and keys/values from ``context``.
    ``qk_norm`` layer-normalises every head's queries and keys before their dot product (ViT-22B,
    Dehghani et al. 2023): the attention logits then cannot grow with the q/k weights, which is what
    makes training diverge into one-hot attention at higher learning rates (Wortsman et al. 2023).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, cross: bool = False,
                 qk_norm: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.cross = cross
        self.q_norm = nn.LayerNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(dim // heads) if qk_norm else nn.Identity()
        if cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def _qkv(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values, each (B, h, N or Nk, D/h), queries and keys normalised when ``qk_norm``."""
        b, n, d = x.shape
        h = self.heads
        if not self.cross:
            if context is not None:
                raise ValueError("a self-attention layer got a context; build it with cross=True")
            # (B, N, 3D) -> (3, B, h, N, D/h)
            q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            ctx = x if context is None else context
            q = self.q(x).view(b, n, h, d // h).transpose(1, 2)  # (B, h, N, D/h)
            k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def forward(self, x: Tensor, context: Tensor | None = None, key_valid: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self._qkv(x, context)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_attn_mask(key_valid),
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, h, N, D/h) -> (B, N, D)

    def logits(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The pre-softmax attention scores q·k / sqrt(D/h), (B, h, N, Nk), for diagnostics (their growth is
        what ``qk_norm`` bounds); the forward pass never materialises them."""
        q, k, _ = self._qkv(x, context)
        return (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5


class Mlp(nn.Sequential):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, ratio: float, dropout: float = 0.0) -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero a residual branch for a random share ``p`` of the samples, rescale the rest.

    The keep mask is drawn per sample (first axis) from torch's global RNG, so seeded runs repeat.
    """
    if p <= 0.0 or not training:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= p  # (B, 1, ...)
    return x * keep.to(x.dtype) / (1.0 - p)


class Block(nn.Module):
    """Pre-norm transformer block: (cross-)attention then MLP, both residual.

    ``drop_path`` is the stochastic-depth rate of both residual branches (training only); ``qk_norm``
    normalises the attention's queries and keys (:class:`Attention`).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 cross: bool = False, drop_path: float = 0.0, qk_norm: bool = False) -> None:
        super().__init__()
        self.drop_path = float(drop_path)
        self.norm1 = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim) if cross else None
        self.attn = Attention(dim, heads, dropout, cross=cross, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio, dropout)

    def forward(self, x: Tensor, key_valid: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        x = to_compute_dtype(x)  # the residual stream in the autocast dtype (bf16 on CUDA), not fp32
        ctx = None if self.norm_ctx is None else self.norm_ctx(context)
        x = x + drop_path(self.attn(self.norm1(x), ctx, key_valid), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class Encoder(nn.Module):
    """A stack of self-attention blocks with a final LayerNorm (BERT-style, pre-norm).

    Stochastic depth grows linearly from 0 in the first block to ``drop_path`` in the last (timm / DeiT).
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 drop_path: float = 0.0, qk_norm: bool = False) -> None:
        super().__init__()
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, drop_path=r, qk_norm=qk_norm)
                                    for r in rates)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        for blk in self.blocks:
            x = blk(x, valid)
        return self.norm(x)


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean over real tokens: (B, N, D), (B, N) → (B, D)."""
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases, unit LayerNorms (ViT/MAE practice)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def trunc_normal_param(*shape: int) -> nn.Parameter:
    p = nn.Parameter(torch.zeros(*shape))
    nn.init.trunc_normal_(p, std=0.02)
    return p


def sincos_positions(grid: tuple[int, ...], width: int) -> torch.Tensor:
    """Sine-cosine position values of every place of a 1D/2D/3D ``grid``, ``(prod(grid), width)``.

    The channels are split evenly between the axes (any remainder stays 0); each axis uses half of its
    channels for ``sin`` and half for ``cos`` of the coordinate times frequencies ``1 / 10000^(k / n)``
    (MAE's 2D sin-cos table; row-major order, as the tokenizers flatten their grids).
    """
    per_axis = (width // len(grid)) // 2 * 2
    if per_axis < 2:
        raise ValueError(f"sin-cos positions of a {len(grid)}D grid need width >= {2 * len(grid)}, got {width}")
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in grid], indexing="ij")
    half = per_axis // 2
    freqs = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
    out = torch.zeros(math.prod(grid), width, dtype=torch.float64)
    for a, c in enumerate(coords):
        angles = c.reshape(-1, 1) * freqs  # (N, half)
        out[:, a * per_axis:a * per_axis + half] = angles.sin()
        out[:, a * per_axis + half:(a + 1) * per_axis] = angles.cos()
    return out.float()

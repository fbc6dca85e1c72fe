"""The assembled OmniVec2 network: tokenizers → f (+ width reduction) → fusion → g → heads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from omnivec2_pipelines.models.config import HeadConfig, ModelConfig, TokenizerConfig, head_key
from omnivec2_pipelines.models.heads import MaskedDecoder, build_head
from omnivec2_pipelines.models.layers import Block, Encoder, init_weights
from omnivec2_pipelines.models.masking import MaskInfo, gather_tokens, random_masking
from omnivec2_pipelines.models.packing import pack, should_pack, unpack
from omnivec2_pipelines.models.tokenizers import build_tokenizer


@dataclass
class Stream:
    """One modality's tokens on their way through the network.

    Attributes:
        modality: Modality name.
        tokens: (B, K, D) token features (K = N, or the kept count when masked).
        valid: (B, K) bool, True = real token.
        full_valid: (B, N) validity of the full (unmasked) sequence.
        mask: Masking info, or None when nothing was hidden.
        aux: The tokenizer's per-batch by-product for the full sequence (e.g. the point groups'
            centres and neighbours), reused by ``patchify`` and the heads; None for most tokenizers.
        dense: Every token is real (known from the input's shape): attention runs without a mask.
    """

    modality: str
    tokens: Tensor
    valid: Tensor
    full_valid: Tensor
    mask: MaskInfo | None = None
    aux: object = None
    dense: bool = False

    @property
    def key_valid(self) -> Tensor | None:
        """The attention key mask: None for dense streams (no mask: the fastest kernel)."""
        return None if self.dense else self.valid


class CrossAttentionFusion(nn.Module):
    """Symmetric cross-attention: each stream attends to the other (shared weights)."""

    def __init__(self, dim: int, heads: int, depth: int, mlp_ratio: float, dropout: float,
                 qk_norm: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, dropout, cross=True, qk_norm=qk_norm)
                                    for _ in range(depth))

    def forward(self, a: Stream, b: Stream) -> tuple[Stream, Stream]:
        if a.tokens.shape[0] != b.tokens.shape[0]:
            raise ValueError(f"fused streams need equal batch sizes, got {a.modality}={a.tokens.shape[0]} "
                             f"and {b.modality}={b.tokens.shape[0]}")
        xa, xb = a.tokens, b.tokens
        sizes = [tuple(xa.shape[:2]), tuple(xb.shape[:2])]
        if should_pack(sizes):  # both directions in one call: queries [a; b], keys/values [b; a]
            for blk in self.blocks:
                ctx = pack([xb, xa], [b.key_valid, a.key_valid])
                xa, xb = unpack(blk(pack([xa, xb], [None, None]).x, ctx.valid, context=ctx.x), sizes)
            return replace(a, tokens=xa), replace(b, tokens=xb)
        for blk in self.blocks:
            xa, xb = blk(xa, b.key_valid, context=xb), blk(xb, a.key_valid, context=xa)
        return replace(a, tokens=xa), replace(b, tokens=xb)


class OmniVec2(nn.Module):
    """One network for many modalities and tasks.

    Single stream (inference): ``tokenizer → f → reduce → g → head``. Two streams (training):
    both go through f, meet in the cross-attention fusion, then each goes through g.

    Args:
        cfg: Sizes plus the tokenizers and heads to build.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizers = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.towers = nn.ModuleDict()  # head_key -> the task's own blocks in front of its head (model.head_depth)
        self.modality_embed = nn.ParameterDict()
        self.f = Encoder(cfg.width, cfg.depth_f, cfg.heads_f, cfg.mlp_ratio, cfg.dropout, cfg.drop_path, cfg.qk_norm)
        self.reduce = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.GELU(),
                                    nn.Linear(cfg.width, cfg.reduced_width), nn.LayerNorm(cfg.reduced_width))
        self.fusion = CrossAttentionFusion(cfg.reduced_width, cfg.heads_g, cfg.fusion_depth,
                                           cfg.mlp_ratio, cfg.dropout, cfg.qk_norm)
        self.g = Encoder(cfg.reduced_width, cfg.depth_g, cfg.heads_g, cfg.mlp_ratio, cfg.dropout, cfg.drop_path,
                         cfg.qk_norm)
        self.apply(init_weights)
        tokenizers, heads = dict(cfg.tokenizers), dict(cfg.heads)
        cfg.tokenizers, cfg.heads = {}, {}
        for m, t in tokenizers.items():
            self.add_modality(m, t)
        for h in heads.values():
            self.add_head(h)

    # -- building -----------------------------------------------------------------------------
    def add_modality(self, modality: str, tcfg: TokenizerConfig) -> None:
        """Attach a tokenizer and a reconstruction decoder for ``modality``."""
        if modality in self.tokenizers:
            raise ValueError(f"modality {modality!r} already exists")
        tok = build_tokenizer(tcfg, self.cfg.width)
        grid = tok.position_grid()
        if grid is not None and (self.cfg.pos_init == "sincos" or self.cfg.pos_init == "sincos_2d" and len(grid) > 1):
            tok.init_positions_sincos()
        dec = MaskedDecoder(self.cfg.reduced_width, tok.max_tokens, tok.patch_dim,
                            self.cfg.decoder_depth, self.cfg.heads_g, self.cfg.qk_norm)
        dec.apply(init_weights)
        self.tokenizers[modality], self.decoders[modality] = tok, dec
        self.modality_embed[modality] = nn.Parameter(torch.zeros(1, 1, self.cfg.width))
        self.cfg.tokenizers[modality] = tcfg

    def add_head(self, hcfg: HeadConfig) -> None:
        """Attach a task head for (``hcfg.modality``, ``hcfg.task``), and with ``model.head_depth`` its tower
        (kept when the head is re-created, e.g. for other classes: it maps g's tokens, not to the outputs)."""
        if hcfg.modality not in self.tokenizers:
            raise ValueError(f"head {hcfg.modality}.{hcfg.task}: no tokenizer for modality {hcfg.modality!r}")
        head = build_head(hcfg, self.cfg.reduced_width, self.tokenizers[hcfg.modality], self.cfg.pool,
                          self.cfg.heads_g, self.cfg.flat_head,
                          hcfg.kind in self.cfg.wide_head)
        if self.cfg.head_depth and hcfg.key not in self.towers:
            tower = Encoder(self.cfg.reduced_width, self.cfg.head_depth, self.cfg.heads_g, self.cfg.mlp_ratio,
                            self.cfg.dropout, qk_norm=self.cfg.qk_norm)
            tower.apply(init_weights)
            self.towers[hcfg.key] = tower
        self.heads[hcfg.key] = head
        self.cfg.heads[hcfg.key] = hcfg

    @property
    def modalities(self) -> list[str]:
        return list(self.tokenizers.keys())

    # -- forward pieces -----------------------------------------------------------------------
    def encode(self, modality: str, x: Tensor, mask_ratio: float = 0.0,
               generator: torch.Generator | None = None, shard: tuple[int, int] = (0, 1)) -> Stream:
        """Tokenize, optionally hide ``mask_ratio`` of the tokens, run f and the width reduction.

        ``shard`` = ``(rank, world)`` when ``x`` is one rank's slice of a global batch (masks then
        match a single-process run, see :func:`~omnivec2_pipelines.models.masking.random_masking`).
        """
        (stream,) = self.encode_streams([(modality, x, mask_ratio)], generator, shard)
        return stream

    def encode_streams(self, inputs: Sequence[tuple[str, Tensor, float]], generator: torch.Generator | None = None,
                       shard: tuple[int, int] = (0, 1)) -> list[Stream]:
        """:meth:`encode` of several ``(modality, x, mask_ratio)`` inputs, their tokens through f in one packed call.

        The batches are stacked (:mod:`~omnivec2_pipelines.models.packing`) when that pads little, so the
        step runs one f over both streams instead of two; the outputs equal separate :meth:`encode` calls.
        """
        streams = [self._tokens(m, x, ratio, generator, shard) for m, x, ratio in inputs]
        outs = self._packed(lambda t, v: self.reduce(self.f(t, v)), streams)
        return [replace(s, tokens=t) for s, t in zip(streams, outs)]

    def _tokens(self, modality: str, x: Tensor, mask_ratio: float, generator: torch.Generator | None,
                shard: tuple[int, int]) -> Stream:
        """The stream of ``x`` before f: tokens, modality embedding, masking."""
        if modality not in self.tokenizers:
            raise KeyError(f"model has no tokenizer for modality {modality!r}; has {self.modalities}")
        tok = self.tokenizers[modality]
        tokens, valid, aux = tok.tokenize(x)
        tokens = tokens + self.modality_embed[modality]
        full_valid, mask, dense = valid, None, tok.dense(x)
        if mask_ratio > 0:
            mask = random_masking(valid, mask_ratio, generator, shard, dense=dense)
            tokens, valid = gather_tokens(tokens, mask.ids_keep), valid.gather(1, mask.ids_keep)
        return Stream(modality, tokens, valid, full_valid, mask, aux, dense)

    @staticmethod
    def _packed(encoder: Callable[[Tensor, Tensor | None], Tensor], streams: list[Stream]) -> list[Tensor]:
        """``encoder`` over every stream's tokens: one packed call when :func:`should_pack` allows, else one each."""
        sizes = [tuple(s.tokens.shape[:2]) for s in streams]
        if should_pack(sizes):
            packed = pack([s.tokens for s in streams], [s.key_valid for s in streams])
            return unpack(encoder(packed.x, packed.valid), sizes)
        return [encoder(s.tokens, s.key_valid) for s in streams]

    def forward_features(self, streams: Stream | Sequence[Stream], fuse: bool = True) -> list[Stream]:
        """Fuse encoded streams two by two (unless ``fuse`` is False; one stream is never fused), then run g
        on each.

        Streams ``(0, 1)``, ``(2, 3)``, ... are fused as pairs. Unfused streams are single streams, as at
        inference; g runs once over all of them (packed).
        """
        streams = [streams] if isinstance(streams, Stream) else list(streams)
        if not streams:
            raise ValueError("forward_features needs at least one stream")
        if len(streams) > 1 and fuse:
            if len(streams) % 2:
                raise ValueError(f"forward_features fuses streams in pairs, got {len(streams)} (pass fuse=False)")
            streams = [s for a, b in zip(streams[::2], streams[1::2]) for s in self.fusion(a, b)]
        return [replace(s, tokens=t) for s, t in zip(streams, self._packed(self.g, streams))]

    def forward_head(self, stream: Stream, task: str, x: Tensor | None = None) -> Tensor:
        """Apply the (modality, task) head to a stream that went through g.

        ``x`` (the stream's input) is needed by dense heads (pixel / per-point outputs); they
        also get the stream's ``aux`` (e.g. the point grouping, so it is not recomputed).
        """
        key = head_key(stream.modality, task)
        if key not in self.heads:
            raise KeyError(f"model has no head for {stream.modality}.{task}; has {sorted(self.heads)}")
        tokens = self.towers[key](stream.tokens, stream.key_valid) if key in self.towers else stream.tokens
        return self.heads[key](tokens, stream.valid, x, self.tokenizers[stream.modality], stream.aux)

    def reconstruct(self, stream: Stream) -> Tensor:
        """Predict every token's target (B, N, patch_dim) from a masked stream."""
        if stream.mask is None:
            raise ValueError("reconstruct needs a masked stream (encode with mask_ratio > 0)")
        return self.decoders[stream.modality](stream.tokens, stream.mask,
                                              None if stream.dense else stream.full_valid)

    def forward(self, modality: str, x: Tensor, task: str) -> Tensor:
        """Single-stream inference: outputs of the (modality, task) head."""
        (stream,) = self.forward_features(self.encode(modality, x))
        return self.forward_head(stream, task, x)

"""Configuration dataclasses of the OmniVec2 model (JSON round-trippable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TokenizerConfig:
    """A modality tokenizer: ``kind`` selects the registered class, ``args`` are its keyword arguments.

    Serialised flat, as ``{"kind": ..., **args}`` (the form tokenization writes into a bundle's meta).

    Attributes:
        kind: Registered tokenizer kind (``"patch2d"``, ``"time_patch"``, ...).
        args: JSON-able keyword arguments of that tokenizer (channels, sizes, patch size, ...).
    """

    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TokenizerConfig":
        if isinstance(d, TokenizerConfig):
            return d
        if "kind" not in d:
            raise ValueError(f"tokenizer config needs a 'kind', got keys {sorted(d)}")
        if "args" in d and set(d) == {"kind", "args"}:
            return cls(str(d["kind"]), dict(d["args"]))
        return cls(str(d["kind"]), {k: v for k, v in d.items() if k != "kind"})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.args}


@dataclass
class HeadConfig:
    """A task head keyed by (modality, task).

    Attributes:
        modality: Modality whose stream feeds the head.
        task: Task name within the modality.
        kind: A registered task kind (:mod:`omnivec2_pipelines.tasks`: ``classification``,
            ``regression``, ``dense_regression``, ``segmentation``); it builds the head.
        out_dim: Classes, or regressed values per sample.
    """

    modality: str
    task: str
    kind: str
    out_dim: int

    @property
    def key(self) -> str:
        return head_key(self.modality, self.task)


def head_key(modality: str, task: str) -> str:
    """Module-dict key of a head (dots are not allowed in module names)."""
    return f"{modality}__{task}"


#: ``model.pool`` values: how the heads that pool their tokens into one vector (classification) do it.
POOLS = ("mean", "attention")
#: ``model.pos_init`` values: how the learned position tables of the tokenizers start.
POS_INITS = ("normal", "sincos", "sincos_2d")
#: Task kinds whose heads can add a linear map of the input (``model.wide_head``).
WIDE_KINDS = ("classification", "regression")


@dataclass
class ModelConfig:
    """Sizes of the shared network and the modality/task parts attached to it.

    Attributes:
        width: Token width of the shared encoder f.
        depth_f: Transformer blocks in f.
        heads_f: Attention heads in f.
        reduced_width: Width after f's fully connected reduction (fusion, g, heads).
        depth_g: Transformer blocks in g.
        heads_g: Attention heads in fusion and g.
        fusion_depth: Cross-attention blocks in the fusion module.
        decoder_depth: Blocks of the light masked-reconstruction decoder.
        mlp_ratio: Hidden width multiplier of the MLPs.
        dropout: Dropout inside blocks.
        drop_path: Stochastic-depth rate of the last block of f and of g (linearly less in earlier ones).
        qk_norm: LayerNorm on every attention head's queries and keys (f, fusion, g, decoders); off here so
            that checkpoints written before the option existed load as they were built.
        pool: How classification heads pool the tokens: ``mean`` over real tokens, or ``attention`` (one
            learned query per head, multi-head attention pooling with ``heads_g`` heads).
        pos_init: How the tokenizers' learned position tables start: ``normal`` (truncated normal, std
            0.02) or ``sincos`` (fixed sine-cosine values of each token's place on the tokenizer's grid, as
            MAE's, per axis for 2D / 3D grids; still learned after that) or ``sincos_2d`` (sine-cosine on
            2D / 3D grids only: image patches, tubelets; 1D tables stay normal). Tokenizers without a
            position table (point groups, graph nodes, table columns) are left as they are.
        head_depth: Transformer blocks of its own (width ``reduced_width``, ``heads_g`` heads, then a
            LayerNorm) in front of every task head: a task-specific tower over the shared g's tokens, on
            every path (fused or not); 0: the heads read g's tokens directly (the method's heads).
        flat_head: Classification heads add a linear map of all token positions (zero at the start) to
            their pooled readout, for tokenizers whose token ``i`` holds the same content in every sample
            (``Tokenizer.aligned``: image grids, band groups, table columns); False: the pooled readout
            alone (the method's heads).
        wide_head: Task kinds (of :data:`WIDE_KINDS`) whose heads add a linear map of the input (zero at the
            start), for tokenizers with linear features (``Tokenizer.linear_features``: a series' values, a
            table's numbers and one-hot categories, a graph's summed node features): the wide part of Wide &
            Deep. Empty: the heads read g's tokens alone (the method's heads).
        tokenizers: ``{modality: TokenizerConfig}``.
        heads: ``{head_key: HeadConfig}``.
    """

    width: int = 128
    depth_f: int = 4
    heads_f: int = 4
    reduced_width: int = 96
    depth_g: int = 2
    heads_g: int = 4
    fusion_depth: int = 1
    decoder_depth: int = 1
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    qk_norm: bool = False
    pool: str = "mean"
    pos_init: str = "normal"
    head_depth: int = 0
    flat_head: bool = False
    wide_head: list[str] = field(default_factory=list)
    tokenizers: dict[str, TokenizerConfig] = field(default_factory=dict)
    heads: dict[str, HeadConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, w, h in (("width", self.width, self.heads_f),
                           ("reduced_width", self.reduced_width, self.heads_g)):
            if w <= 0 or h <= 0 or w % h:
                raise ValueError(f"model.{name}={w} must be a positive multiple of its head count {h}")
        for name in ("depth_f", "depth_g", "fusion_depth", "decoder_depth", "head_depth"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.pool not in POOLS:
            raise ValueError(f"model.pool must be one of {list(POOLS)}, got {self.pool!r}")
        if self.pos_init not in POS_INITS:
            raise ValueError(f"model.pos_init must be one of {list(POS_INITS)}, got {self.pos_init!r}")
        if not isinstance(self.wide_head, (list, tuple)) or not set(self.wide_head) <= set(WIDE_KINDS):
            raise TypeError(f"model.wide_head must be a list of task kinds from {list(WIDE_KINDS)} (e.g. "
                            f"[regression]; [] for none), got {self.wide_head!r}")
        self.wide_head = [k for k in WIDE_KINDS if k in self.wide_head]
        self.tokenizers = {m: TokenizerConfig.from_dict(t) for m, t in self.tokenizers.items()}
        self.heads = {k: h if isinstance(h, HeadConfig) else HeadConfig(**h) for k, h in self.heads.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokenizers"] = {m: t.to_dict() for m, t in self.tokenizers.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model parameter(s) {sorted(unknown)}; allowed {sorted(known)}")
        for f in fields(cls):
            if f.name in d and f.type in ("int", "float", "bool"):
                v = d[f.name]
                if f.type == "bool":
                    if not isinstance(v, bool):
                        raise TypeError(f"model.{f.name} must be true or false, got {v!r}")
                    continue
                ok = isinstance(v, int) if f.type == "int" else isinstance(v, (int, float))
                if not ok or isinstance(v, bool):
                    raise TypeError(f"model.{f.name} must be {f.type}, got {v!r}")
        return cls(**d)

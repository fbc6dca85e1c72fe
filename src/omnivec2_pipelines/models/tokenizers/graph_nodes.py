"""One token per graph node from padded node-feature matrices (last column = validity flag)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


@register_tokenizer("graph_nodes")
class GraphNodesTokenizer(Tokenizer):
    """Graphs as sets of node tokens: ``Linear(F - 1 → width)`` on each node's features.

    Input ``(B, M, F)`` with ``M <= max_nodes``: per node ``[one-hot node label (n_node_labels
    columns) | other features (attributes, Laplacian PE, degree) | valid flag]``; rows with a
    flag ``<= 0.5`` are padding (``valid=False``, token zeroed). A graph without any real node
    keeps its first token valid as a zero placeholder (as text keeps position 0), so attention
    always has a key to attend to; the masking never hides a sample's only real token, so the
    placeholder is never a reconstruction target. No per-index position embedding: node order
    is arbitrary, so positional information comes from the Laplacian eigenvector features (the
    learned projection embeds them).

    Args:
        n_features: F, including the validity flag (last column).
        max_nodes: Largest node count per graph (= ``max_tokens``).
        width: Token width.
        n_node_labels: Width of the leading one-hot node-label block (0 = none). With it the
            reconstruction loss is cross-entropy on the label block plus MSE on the rest.
    """

    aligned = False  # a set of tokens: no place holds the same content in every sample

    def __init__(self, n_features: int, max_nodes: int, width: int, n_node_labels: int = 0) -> None:
        super().__init__()
        if n_features < 2 or max_nodes < 1 or not 0 <= n_node_labels <= n_features - 1:
            raise ValueError(f"graph_nodes needs n_features >= 2 (features + flag), max_nodes >= 1 "
                             f"and 0 <= n_node_labels <= n_features - 1, got n_features={n_features}, "
                             f"max_nodes={max_nodes}, n_node_labels={n_node_labels}")
        self.n_features, self.max_nodes, self.n_node_labels = int(n_features), int(max_nodes), int(n_node_labels)
        self.max_tokens = self.max_nodes
        self.patch_dim = self.n_features - 1
        self.linear_dim = 2 * self.patch_dim + 1
        self.proj = nn.Linear(self.patch_dim, width)

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or x.shape[2] != self.n_features or not 0 < x.shape[1] <= self.max_nodes:
            raise ValueError(f"expected input (B, M<={self.max_nodes}, {self.n_features}), "
                             f"got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        real = x[..., -1] > 0.5  # (B, M)
        tokens = self.proj(x[..., :-1]) * real.unsqueeze(-1).to(x.dtype)  # (B, M, width)
        valid = real.clone()
        valid[:, 0] |= ~real.any(1)  # empty graphs: token 0 (zero) is the placeholder
        return tokens, valid

    def linear_features(self, x: Tensor) -> Tensor:
        """Permutation-invariant sums over the real nodes: the node features summed (divided by
        ``max_nodes``: label counts, degree total), averaged, and the node count over ``max_nodes``:
        (B, 2 * (F - 1) + 1)."""
        self._check(x)
        real = (x[..., -1] > 0.5).float()  # (B, M)
        total = (x[..., :-1].float() * real.unsqueeze(-1)).sum(1)  # (B, F - 1)
        count = real.sum(1, keepdim=True)  # (B, 1)
        return torch.cat([total / self.max_nodes, total / count.clamp_min(1.0), count / self.max_nodes], dim=1)

    def patchify(self, x: Tensor, aux: object = None) -> Tensor:
        """Node features without the flag, (B, M, F - 1)."""
        self._check(x)
        return x[..., :-1]

    def reconstruction_loss(self, pred: Tensor, target: Tensor, weight: Tensor, norm_target: bool) -> Tensor:
        """Cross-entropy on the node-label block (BERT-style masked attribute prediction, for
        nodes whose label is known) plus MSE on the remaining features, per hidden real node.

        ``norm_target`` is ignored: the features are already standardised / bounded and mix
        different kinds of quantity, so a per-node normalisation would be meaningless.
        """
        pred, target = pred.float(), target.float()
        v = self.n_node_labels
        per_node = pred.new_zeros(weight.shape)
        if v:
            onehot = target[..., :v]
            known = (onehot.sum(-1) > 0.5).float()
            ce = F.cross_entropy(pred[..., :v].reshape(-1, v), onehot.argmax(-1).reshape(-1),
                                 reduction="none").view(weight.shape)
            per_node = per_node + ce * known
        if target.shape[-1] > v:
            per_node = per_node + (pred[..., v:] - target[..., v:]).pow(2).mean(-1)
        return (per_node * weight).sum() / weight.sum().clamp_min(1.0)

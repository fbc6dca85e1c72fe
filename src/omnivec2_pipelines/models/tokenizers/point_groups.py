"""Point-MAE style point-group tokens: FPS centres, kNN groups, mini-PointNet per group."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from omnivec2_pipelines.models.tokenizers import register_tokenizer
from omnivec2_pipelines.models.tokenizers.base import Tokenizer


@torch.no_grad()
def farthest_point_sample(x: Tensor, m: int) -> Tensor:
    """Deterministic farthest point sampling: (B, P, 3) → (B, m) int64 indices.

    Starts at index 0 of every cloud; each next index is the point farthest (squared
    Euclidean, summed over the coordinates in order, as the numpy version of the point-cloud
    modality) from the chosen ones, ties going to the lowest index (``argmax``). ``m - 1``
    iterations of batched, in-place tensor ops on contiguous per-coordinate ``(B, P)`` planes;
    everything stays on ``x``'s device (no host read, so no accelerator sync inside the loop).
    """
    b, p, _ = x.shape
    coords = [c.contiguous() for c in x.unbind(-1)]  # 3 x (B, P)
    far = torch.zeros(b, 1, dtype=torch.long, device=x.device)  # (B, 1) latest centre
    chosen = [far]
    dist = torch.full((b, p), float("inf"), dtype=x.dtype, device=x.device)
    d = torch.empty_like(dist)
    for _ in range(1, m):
        d.zero_()
        for c in coords:
            d.add_((c - c.gather(1, far)).square_())  # (B, P) - (B, 1)
        torch.minimum(dist, d, out=dist)
        far = dist.argmax(1, keepdim=True)
        chosen.append(far)
    return torch.cat(chosen, 1)  # (B, m)


def knn_indices(x: Tensor, centers: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` points of ``x`` (B, P, 3) nearest to each centre (B, G, 3): (B, G, k),
    nearest first."""
    d = torch.cdist(centers, x)  # (B, G, P)
    return d.topk(k, dim=-1, largest=False, sorted=True).indices


class PointNorm(nn.LayerNorm):
    """LayerNorm over the channels of every point, for ``Conv1d`` layout (N, C, k).

    Each point's feature vector is normalised on its own (no batch statistics), so a group's
    embedding does not depend on the other groups or clouds of the batch, is the same in train
    and eval mode, and needs no synchronisation across data-parallel ranks (unlike BatchNorm).
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)  # (N, C, k) -> (N, k, C) -> (N, C, k)


def _gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """(B, P, C), (B, ...) indices → (B, ..., C)."""
    b, c = x.shape[0], x.shape[-1]
    flat = idx.reshape(b, -1)
    out = x.gather(1, flat.unsqueeze(-1).expand(-1, -1, c))
    return out.reshape(*idx.shape, c)


class PointGrouping(NamedTuple):
    """One batch's point groups, computed once per forward (float32, no gradient) and shared by
    the tokens, the reconstruction targets and the segmentation head (via the stream's ``aux``)."""

    centers: Tensor  # (B, G, 3) FPS centres, in token order
    idx: Tensor  # (B, G, k) indices of every centre's k nearest points, nearest first
    local: Tensor  # (B, G, k, 3) those points relative to their centre


@register_tokenizer("point_groups")
class PointGroupsTokenizer(Tokenizer):
    """Point clouds (B, P, 3) → one token per local group of points (Point-MAE).

    ``n_groups`` centres are chosen by farthest point sampling, each groups its ``group_size``
    nearest points, expressed relative to the centre. A two-stage mini-PointNet (shared MLP as
    1x1 ``Conv1d`` → max-pool → concat with the pooled feature → shared MLP → max-pool) embeds
    every group; an MLP of the centre's xyz gives its (learned) position embedding. All tokens
    are real (``valid`` all True): clouds arrive padded to ``n_points`` by repetition.

    The mini-PointNet normalises with :class:`PointNorm` (LayerNorm over each point's channels)
    where Point-MAE has BatchNorm: tokens then depend on their own cloud only, in train and eval
    mode alike, so data-parallel training matches one process without synchronised statistics.

    :meth:`tokenize` returns the batch's :class:`PointGrouping` as ``aux``; :meth:`patchify`,
    :meth:`centers` and the segmentation head take it back, so FPS and kNN run once per forward.

    Args:
        n_points: P, points per cloud.
        n_groups: G, tokens per cloud (``<= n_points``).
        group_size: k, points per group (``<= n_points``).
        width: Token width.
        channels: Widths ``[c1, c2, c3]`` of the mini-PointNet (stage 1: 3→c1→c2; stage 2:
            2*c2→c3→width).
    """

    aligned = False  # a set of tokens: no place holds the same content in every sample

    def __init__(self, n_points: int, n_groups: int, group_size: int, width: int,
                 channels: list[int] | tuple[int, int, int] = (32, 64, 64)) -> None:
        super().__init__()
        if not 0 < n_groups <= n_points or not 0 < group_size <= n_points:
            raise ValueError(f"point_groups needs 0 < n_groups <= n_points and 0 < group_size <= "
                             f"n_points, got n_points={n_points}, n_groups={n_groups}, "
                             f"group_size={group_size}")
        c1, c2, c3 = (int(c) for c in channels)
        self.n_points, self.n_groups, self.group_size = int(n_points), int(n_groups), int(group_size)
        self.max_tokens = self.n_groups
        self.patch_dim = self.group_size * 3
        self.first = nn.Sequential(nn.Conv1d(3, c1, 1), PointNorm(c1), nn.ReLU(inplace=True),
                                   nn.Conv1d(c1, c2, 1))
        self.second = nn.Sequential(nn.Conv1d(2 * c2, c3, 1), PointNorm(c3), nn.ReLU(inplace=True),
                                    nn.Conv1d(c3, width, 1))
        self.pos = nn.Sequential(nn.Linear(3, c3), nn.GELU(), nn.Linear(c3, width))

    def _check(self, x: Tensor) -> None:
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.n_points, 3):
            raise ValueError(f"expected input (B, {self.n_points}, 3), got {tuple(x.shape)}")

    def dense(self, x: Tensor) -> bool:
        return True  # one real token per group, always

    def group(self, x: Tensor) -> PointGrouping:
        """Centres (B, G, 3), neighbour indices (B, G, k) and local coordinates (B, G, k, 3).

        Computed in float32 without autocast (indices only; no gradient flows to ``x``).
        """
        self._check(x)
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.detach().float()
            centre_idx = farthest_point_sample(xf, self.n_groups)  # (B, G)
            centers = _gather_points(xf, centre_idx)  # (B, G, 3)
            idx = knn_indices(xf, centers, self.group_size)  # (B, G, k)
            local = _gather_points(xf, idx) - centers.unsqueeze(2)  # (B, G, k, 3)
        return PointGrouping(centers, idx, local)

    def _grouping(self, x: Tensor, aux: object) -> PointGrouping:
        """``aux`` checked against ``x`` (the grouping :meth:`tokenize` returned), or a fresh one."""
        if aux is None:
            return self.group(x)
        self._check(x)
        want = (x.shape[0], self.n_groups, self.group_size, 3)
        if not isinstance(aux, PointGrouping) or tuple(aux.local.shape) != want:
            got = tuple(aux.local.shape) if isinstance(aux, PointGrouping) else type(aux).__name__
            raise ValueError(f"point_groups: aux must be the PointGrouping of this batch, shaped {want}, got {got}")
        return aux

    def tokenize(self, x: Tensor) -> tuple[Tensor, Tensor, PointGrouping]:
        """Tokens, valid mask and the batch's grouping (computed once, passed to ``forward``)."""
        grouping = self.group(x)
        tokens, valid = self(x, grouping)
        return tokens, valid, grouping

    def centers(self, x: Tensor, aux: PointGrouping | None = None) -> Tensor:
        """Group centres (B, G, 3), in token order (e.g. to propagate token features to points)."""
        return self._grouping(x, aux).centers

    def forward(self, x: Tensor, aux: PointGrouping | None = None) -> tuple[Tensor, Tensor]:
        centers, _, local = self._grouping(x, aux)
        b, g, k, _ = local.shape
        h = local.reshape(b * g, k, 3).transpose(1, 2).to(x.dtype)  # (B*G, 3, k)
        h = self.first(h)  # (B*G, c2, k)
        pooled = h.max(dim=2, keepdim=True).values  # (B*G, c2, 1)
        h = self.second(torch.cat([pooled.expand(-1, -1, k), h], dim=1))  # (B*G, width, k)
        feats = h.max(dim=2).values.reshape(b, g, -1)  # (B, G, width)
        tokens = feats + self.pos(centers.to(feats.dtype))
        valid = torch.ones(b, g, dtype=torch.bool, device=x.device)
        return tokens, valid

    def patchify(self, x: Tensor, aux: PointGrouping | None = None) -> Tensor:
        """Local group coordinates (B, G, k*3), neighbours nearest first."""
        local = self._grouping(x, aux).local
        return local.reshape(local.shape[0], self.n_groups, self.patch_dim)

    def reconstruction_loss(self, pred: Tensor, target: Tensor, weight: Tensor, norm_target: bool) -> Tensor:
        """Chamfer-L2 between the predicted and the true ``k`` points of every group.

        Per group: mean over predicted points of the squared distance to the nearest true
        point plus the same from true to predicted (Point-MAE's L2 Chamfer), averaged over
        ``weight``. With ``norm_target`` the true local coordinates are divided by the group's
        RMS radius (the point-set analogue of MAE's per-patch normalisation; the prediction is
        read in that scale-free frame), which keeps the loss O(1) next to other modalities.
        """
        b, n = weight.shape
        p = pred.float().reshape(b, n, self.group_size, 3)
        t = target.float().reshape(b, n, self.group_size, 3)
        if norm_target:
            rms = t.pow(2).sum(-1).mean(-1).sqrt().clamp_min(1e-6)  # (B, N)
            t = t / rms[..., None, None]
        d = (p.unsqueeze(3) - t.unsqueeze(2)).pow(2).sum(-1)  # (B, N, k_pred, k_true)
        per_group = d.min(dim=3).values.mean(-1) + d.min(dim=2).values.mean(-1)  # (B, N)
        return (per_group * weight).sum() / weight.sum().clamp_min(1.0)

    @staticmethod
    def propagate(features: Tensor, centers: Tensor, x: Tensor, k: int = 3) -> Tensor:
        """Token features back to points by inverse-distance weighting of the ``k`` nearest
        centres (PointNet++ feature propagation, weights ``1 / (d² + 1e-8)`` normalised to sum
        to 1): (B, G, D), (B, G, 3), (B, P, 3) → (B, P, D)."""
        k = min(k, centers.shape[1])
        with torch.autocast(device_type=x.device.type, enabled=False):
            d = torch.cdist(x.float(), centers.float())  # (B, P, G)
            dist, idx = d.topk(k, dim=-1, largest=False)  # (B, P, k)
            w = 1.0 / (dist.pow(2) + 1e-8)
            w = w / w.sum(-1, keepdim=True)
        near = _gather_points(features, idx)  # (B, P, k, D)
        return (near * w.unsqueeze(-1).to(near.dtype)).sum(2)

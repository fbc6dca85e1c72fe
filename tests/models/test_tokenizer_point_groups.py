"""Tests of the Point-MAE style ``point_groups`` tokenizer."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.point_cloud import farthest_point_indices
from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.tokenizers import point_groups
from omnivec2_pipelines.models.tokenizers.point_groups import (PointGrouping, PointGroupsTokenizer,
                                                               farthest_point_sample)

CFG = {"kind": "point_groups", "n_points": 64, "n_groups": 8, "group_size": 16}


def _tok() -> PointGroupsTokenizer:
    torch.manual_seed(0)
    return PointGroupsTokenizer(n_points=64, n_groups=8, group_size=16, width=32)


def _x(b: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 64, 3, generator=torch.Generator().manual_seed(seed))


def test_shapes_valid_and_centers() -> None:
    tok, x = _tok(), _x()
    tokens, valid = tok(x)
    assert tokens.shape == (3, 8, 32) and valid.shape == (3, 8) and valid.dtype == torch.bool and valid.all()
    assert tok.max_tokens == 8 and tok.patch_dim == 48
    c = tok.centers(x)
    assert c.shape == (3, 8, 3)
    assert torch.equal(c[:, 0], x[:, 0])  # FPS starts at index 0
    # FPS is deterministic and matches the numpy version used by tokenization
    idx = farthest_point_sample(x, 8)
    assert torch.equal(idx, farthest_point_sample(x, 8))
    np.testing.assert_array_equal(idx.numpy(), farthest_point_indices(x.double().numpy(), 8))
    assert torch.equal(c, x[torch.arange(3)[:, None], idx])
    with pytest.raises(ValueError, match=r"expected input \(B, 64, 3\)"):
        tok(torch.randn(2, 63, 3))
    with pytest.raises(ValueError, match="n_groups <= n_points"):
        PointGroupsTokenizer(n_points=8, n_groups=9, group_size=4, width=8)


def test_patchify_is_knn_local_coordinates() -> None:
    tok, x = _tok(), _x(2)
    target = tok.patchify(x)
    assert target.shape == (2, 8, 48)
    local = target.reshape(2, 8, 16, 3)
    centers, idx, _ = tok.group(x)
    assert torch.allclose(local[:, :, 0], torch.zeros(2, 8, 3))  # nearest neighbour = the centre itself
    pts = local + centers[:, :, None]
    assert torch.allclose(pts, x[torch.arange(2)[:, None, None], idx], atol=1e-6)
    # the k points are the k nearest: every other point is at least as far as the farthest member
    d = torch.cdist(centers, x)  # (B, G, P)
    kth = d.gather(2, idx).max(-1).values
    outside = d.masked_fill(torch.zeros_like(d, dtype=torch.bool).scatter(2, idx, True), float("inf"))
    assert (outside.min(-1).values >= kth - 1e-6).all()


def test_chamfer_loss_and_gradients() -> None:
    tok, x = _tok(), _x()
    target = tok.patchify(x)
    weight = torch.ones(3, 8)
    perm = target.reshape(3, 8, 16, 3)[:, :, torch.randperm(16)].reshape(3, 8, 48)
    assert tok.reconstruction_loss(perm, target, weight, False).item() < 1e-10  # order-free
    noisy = target + 0.1
    assert tok.reconstruction_loss(noisy, target, weight, False).item() > 1e-3
    assert tok.reconstruction_loss(noisy, target, torch.zeros(3, 8), False).item() == 0.0
    # norm_target compares with unit-RMS groups
    t = target.reshape(3, 8, 16, 3)
    unit = (t / t.pow(2).sum(-1).mean(-1).sqrt()[..., None, None]).reshape(3, 8, 48)
    assert tok.reconstruction_loss(unit, target, weight, True).item() < 1e-10
    tokens, _ = tok(x)
    pred = torch.nn.Linear(32, 48)(tokens)
    loss = tok.reconstruction_loss(pred, target, weight, True)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_propagate_back_to_points() -> None:
    tok, x = _tok(), _x(2)
    centers = tok.centers(x)
    feats = torch.randn(2, 8, 5)
    out = tok.propagate(feats, centers, x)
    assert out.shape == (2, 64, 5) and torch.isfinite(out).all()
    centre_idx = farthest_point_sample(x, 8)
    assert torch.allclose(out[torch.arange(2)[:, None], centre_idx], feats, atol=1e-4)  # exact at centres


def test_whole_model_forward_backward() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    x = _x(4)
    out = m("mod", x, "classification")
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    s = m.encode("mod", x, 0.5)
    (s,) = m.forward_features(s)
    pred = m.reconstruct(s)
    assert pred.shape == (4, 8, 48)
    tok = m.tokenizers["mod"]
    weight = (s.mask.masked & s.full_valid).float()
    loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, True)
    (loss + out.mean()).backward()
    assert torch.isfinite(loss)
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    m.eval()
    with torch.no_grad():
        assert torch.allclose(m("mod", x, "classification"), m("mod", x, "classification"))


def test_segmentation_head_uses_centers() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "segmentation", "segmentation", 5))
    x = _x(2)
    out = m("mod", x, "segmentation")
    assert out.shape == (2, 64, 5) and torch.isfinite(out).all()
    out.logsumexp(-1).mean().backward()
    for name, p in m.tokenizers["mod"].named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def _slow_fps(x: torch.Tensor, m: int) -> list[list[int]]:
    """Reference FPS, one cloud and one point at a time in plain Python (same arithmetic per point)."""
    out = []
    for cloud in x:
        pts = [tuple(p) for p in cloud.tolist()]
        chosen, dist = [0], [float("inf")] * len(pts)
        for _ in range(1, m):
            last = pts[chosen[-1]]
            best, best_d = 0, -1.0
            for j, p in enumerate(pts):
                d = (p[0] - last[0]) ** 2 + (p[1] - last[1]) ** 2 + (p[2] - last[2]) ** 2
                dist[j] = min(dist[j], d)
                if dist[j] > best_d:  # strict: ties go to the lowest index
                    best, best_d = j, dist[j]
            chosen.append(best)
        out.append(chosen)
    return out


@pytest.mark.parametrize("case", ["random", "integer_ties", "repeated_points", "one_centre"])
def test_farthest_point_sample_matches_slow_reference(case: str) -> None:
    gen = torch.Generator().manual_seed(3)
    m = 12
    if case == "random":
        x = torch.randn(4, 50, 3, generator=gen, dtype=torch.float64)
    elif case == "integer_ties":  # a small integer grid: many exactly equal distances
        x = torch.randint(-2, 3, (3, 40, 3), generator=gen).double()
    elif case == "repeated_points":  # clouds padded by repetition, fewer distinct points than centres
        x = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64).repeat(1, 8, 1)
    else:
        x, m = torch.randn(2, 10, 3, generator=gen, dtype=torch.float64), 1
    idx = farthest_point_sample(x, m)
    assert idx.dtype == torch.long and idx.shape == (len(x), m)
    assert idx.tolist() == _slow_fps(x, m)
    assert torch.equal(farthest_point_sample(x.float(), m), idx)  # float32 (what group() uses) agrees here


def test_tokenize_returns_the_grouping_it_used() -> None:
    tok, x = _tok(), _x()
    tokens, valid, grouping = tok.tokenize(x)
    fresh = tok.group(x)
    assert isinstance(grouping, PointGrouping)
    for a, b in zip(grouping, fresh):
        assert torch.equal(a, b)
    plain, plain_valid = tok(x)
    assert torch.equal(tokens, plain) and torch.equal(valid, plain_valid)
    assert torch.equal(tok.patchify(x, grouping), tok.patchify(x))
    assert torch.equal(tok.centers(x, grouping), tok.centers(x))
    with pytest.raises(ValueError, match="aux must be the PointGrouping of this batch"):
        tok.patchify(x[:2], grouping)
    with pytest.raises(ValueError, match="aux must be the PointGrouping of this batch"):
        tok(x, (1, 2))


def test_encode_keeps_the_grouping_on_the_stream() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG), "other": dict(CFG)}))
    x = _x(2)
    s = m.encode("mod", x, 0.5)
    assert isinstance(s.aux, PointGrouping) and s.aux.centers.shape == (2, 8, 3)
    (g,) = m.forward_features(s)
    assert g.aux is s.aux
    fa, fb = m.forward_features([m.encode("mod", x), m.encode("other", _x(2, 1))])
    assert torch.equal(fa.aux.centers, m.tokenizers["mod"].centers(x))
    assert torch.equal(fb.aux.centers, m.tokenizers["other"].centers(_x(2, 1)))


def test_segmentation_head_with_reused_grouping_equals_fresh() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "segmentation", "segmentation", 5))
    m.eval()
    x = _x(3)
    with torch.no_grad():
        (s,) = m.forward_features(m.encode("mod", x))
        head, tok = m.heads["mod__segmentation"], m.tokenizers["mod"]
        reused = m.forward_head(s, "segmentation", x)
        fresh = head(s.tokens, s.valid, x, tok)  # no aux: the head groups x itself
        assert torch.equal(reused, fresh)
        assert torch.equal(m("mod", x, "segmentation"), reused)
        # the head is the tokenizer's propagation of its normed tokens, then the MLP
        feats = tok.propagate(head.norm(s.tokens), tok.centers(x), x)
        assert torch.allclose(head.mlp(torch.cat([feats, x], -1)), reused, atol=1e-6)


def test_grouping_runs_once_per_forward() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "segmentation", "segmentation", 5))
    x = _x(2)
    with mock.patch.object(point_groups, "farthest_point_sample", wraps=farthest_point_sample) as fps:
        m("mod", x, "segmentation")
        assert fps.call_count == 1


def test_tokens_do_not_depend_on_the_rest_of_the_batch_nor_on_train_or_eval() -> None:
    """No batch statistics in the mini-PointNet: a cloud's tokens are the same alone, in any batch, in
    train and in eval mode (so data-parallel ranks need no synchronised norm to match one process)."""
    tok, x = _tok(), _x(4)
    tok.train()
    full, _ = tok(x)
    for i in range(4):
        alone, _ = tok(x[i:i + 1])
        assert torch.allclose(alone[0], full[i], atol=1e-5), i
    shuffled, _ = tok(x[[2, 0, 3, 1]])
    assert torch.allclose(shuffled, full[[2, 0, 3, 1]], atol=1e-5)
    tok.eval()
    with torch.no_grad():
        assert torch.allclose(tok(x)[0], full, atol=1e-5)
    assert not list(tok.buffers())  # no running statistics to keep or synchronise


def test_farthest_point_sample_needs_no_gradient_and_no_host_sync() -> None:
    x = _x(2).requires_grad_(True)
    idx = farthest_point_sample(x, 8)
    assert not idx.requires_grad and idx.tolist() == _slow_fps(x.detach(), 8)
    if not torch.cuda.is_available():
        pytest.skip("the host-sync check needs CUDA")
    xc = x.detach().cuda()
    torch.cuda.set_sync_debug_mode("error")  # any device-to-host read inside the loop raises
    try:
        idx_cuda = farthest_point_sample(xc, 8)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(idx_cuda.cpu(), idx)

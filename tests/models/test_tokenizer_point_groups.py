"""Tests of the Point-MAE style ``point_groups`` tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.point_cloud import farthest_point_indices
from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.tokenizers.point_groups import PointGroupsTokenizer, farthest_point_sample

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

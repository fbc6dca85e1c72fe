"""Tests of the ``graph_nodes`` tokenizer (one token per node, flag column = validity)."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.layers import Encoder, masked_mean
from omnivec2_pipelines.models.tokenizers.graph_nodes import GraphNodesTokenizer

V, F, M = 3, 3 + 4 + 1, 6  # 3 label one-hot columns, 4 other features, flag
CFG = {"kind": "graph_nodes", "n_features": F, "max_nodes": M, "n_node_labels": V}


def _x(b: int = 3, sizes: tuple[int, ...] = (6, 4, 2), seed: int = 0) -> torch.Tensor:
    """Padded node features: graph i has sizes[i] real nodes; padding rows all zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(b, M, F)
    for i, n in enumerate(sizes[:b]):
        lab = torch.randint(0, V, (n,), generator=g)
        x[i, :n, :V] = torch.nn.functional.one_hot(lab, V).float()
        x[i, :n, V:F - 1] = torch.randn(n, F - 1 - V, generator=g)
        x[i, :n, -1] = 1.0
    return x


def _tok() -> GraphNodesTokenizer:
    torch.manual_seed(0)
    return GraphNodesTokenizer(n_features=F, max_nodes=M, width=16, n_node_labels=V)


def test_shapes_and_valid_mask_from_flag() -> None:
    tok, x = _tok(), _x()
    tokens, valid = tok(x)
    assert tokens.shape == (3, M, 16) and valid.dtype == torch.bool
    assert valid.sum(1).tolist() == [6, 4, 2]
    assert (tokens[~valid] == 0).all() and (tokens[valid].abs().sum(-1) > 0).all()
    assert tok.max_tokens == M and tok.patch_dim == F - 1
    tokens_short, valid_short = tok(x[:, :4])  # fewer rows than max_nodes is accepted
    assert tokens_short.shape == (3, 4, 16) and valid_short.sum().item() == 4 + 4 + 2
    with pytest.raises(ValueError, match=r"expected input \(B, M<=6, 8\)"):
        tok(torch.zeros(2, 7, F))
    with pytest.raises(ValueError, match=r"expected input"):
        tok(torch.zeros(2, 3, F + 1))
    with pytest.raises(ValueError, match="n_node_labels"):
        GraphNodesTokenizer(n_features=4, max_nodes=3, width=8, n_node_labels=4)


def test_patchify_alignment() -> None:
    tok, x = _tok(), _x()
    t = tok.patchify(x)
    assert t.shape == (3, M, F - 1) and torch.equal(t, x[..., :-1])


def test_loss_ce_plus_mse_and_gradients() -> None:
    tok, x = _tok(), _x()
    target = tok.patchify(x)
    _, valid = tok(x)
    weight = valid.float()
    perfect = target.clone()
    perfect[..., :V] = target[..., :V] * 50.0  # confident correct logits
    assert tok.reconstruction_loss(perfect, target, weight, True).item() < 1e-6
    wrong = perfect.clone()
    wrong[..., V:] += 1.0
    assert tok.reconstruction_loss(wrong, target, weight, False).item() == pytest.approx(1.0, abs=1e-4)
    # nodes without a known label (all-zero one-hot) only get the MSE part
    nolabel = target.clone()
    nolabel[..., :V] = 0
    assert tok.reconstruction_loss(torch.zeros_like(target), nolabel, weight, False).item() == pytest.approx(
        (nolabel[..., V:].pow(2).mean(-1) * weight).sum().item() / weight.sum().item(), rel=1e-5)
    assert tok.reconstruction_loss(wrong, target, torch.zeros_like(weight), False).item() == 0.0
    tokens, _ = tok(x)
    pred = torch.nn.Linear(16, F - 1)(tokens)
    loss = tok.reconstruction_loss(pred, target, weight, True)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_mse_only_without_label_block() -> None:
    tok = GraphNodesTokenizer(n_features=F, max_nodes=M, width=8)
    x = _x()
    t = tok.patchify(x)
    w = x[..., -1]
    expect = ((t + 1.0 - t).pow(2).mean(-1) * w).sum() / w.sum()
    assert torch.allclose(tok.reconstruction_loss(t + 1.0, t, w, True), expect)


def test_whole_model_forward_backward_with_padding() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    x = _x()
    out = m("mod", x, "classification")
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    s = m.encode("mod", x, 0.5)
    assert s.full_valid.sum(1).tolist() == [6, 4, 2]
    (s,) = m.forward_features(s)
    pred = m.reconstruct(s)
    assert pred.shape == (3, M, F - 1)
    tok = m.tokenizers["mod"]
    weight = (s.mask.masked & s.full_valid).float()
    assert weight.sum(1).tolist() == [3.0, 2.0, 1.0]  # per-graph share of the real nodes is hidden
    loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, True)
    (loss + out.mean()).backward()
    assert torch.isfinite(loss)
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # padding rows do not change the outputs
    m.eval()
    with torch.no_grad():
        x2 = x.clone()
        x2[2, 2:, :-1] = 7.0  # garbage in padding rows (flag stays 0)
        assert torch.allclose(m("mod", x, "classification"), m("mod", x2, "classification"), atol=1e-5)


def test_an_empty_graph_gets_one_placeholder_token_and_stays_finite() -> None:
    """A graph with no real node keeps one valid (zero) token, so attention always has a key; the
    other graphs of the batch are unchanged by it."""
    tok = _tok()
    x = _x(sizes=(6, 0, 2))
    x[1, :, :-1] = 7.0  # garbage in the empty graph's padding rows (flags stay 0)
    tokens, valid = tok(x)
    assert valid.sum(1).tolist() == [6, 1, 2] and bool(valid[1, 0])
    assert (tokens[1] == 0).all()  # the placeholder does not read the padding features
    assert torch.equal(valid[[0, 2]], x[[0, 2], :, -1] > 0.5)  # non-empty graphs: exactly their flags
    torch.manual_seed(0)
    enc = Encoder(16, 2, 2)
    out = enc(tokens, valid)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[[0, 2]], enc(*tok(x[[0, 2]])), atol=1e-6)
    masked_mean(out, valid).pow(2).sum().backward()
    for name, p in [*tok.named_parameters(), *enc.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_whole_model_with_an_empty_graph_is_finite() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    x = _x(sizes=(6, 0, 2))
    out = m("mod", x, "classification")
    assert torch.isfinite(out).all()
    (s,) = m.forward_features(m.encode("mod", x, 0.5))
    tok = m.tokenizers["mod"]
    weight = (s.mask.masked & s.full_valid).float()
    assert weight.sum(1).tolist() == [3.0, 0.0, 1.0]  # the placeholder is never a reconstruction target
    loss = tok.reconstruction_loss(m.reconstruct(s), tok.patchify(x), weight, True)
    (loss + out.mean()).backward()
    assert torch.isfinite(loss)
    for name, p in m.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    m.eval()
    with torch.no_grad():  # the other graphs score as they do without the empty one
        assert torch.allclose(m("mod", x, "classification")[[0, 2]], m("mod", x[[0, 2]], "classification"),
                              atol=1e-5)


def test_linear_features_are_node_order_free_sums_means_and_the_count() -> None:
    tok, x = _tok(), _x()
    feats = tok.linear_features(x)
    assert tok.linear_dim == 2 * (F - 1) + 1 and feats.shape == (3, tok.linear_dim)
    for i, n in enumerate((6, 4, 2)):
        nodes = x[i, :n, :-1]
        torch.testing.assert_close(feats[i, : F - 1], nodes.sum(0) / M)
        torch.testing.assert_close(feats[i, F - 1: 2 * (F - 1)], nodes.mean(0))
        assert feats[i, -1].item() == pytest.approx(n / M)
    shuffled = x[:, torch.randperm(M)]  # node order (padding rows included) does not matter
    torch.testing.assert_close(tok.linear_features(shuffled), feats)
    empty = torch.zeros(1, M, F)  # no real node: zeros, not NaN
    assert torch.equal(tok.linear_features(empty), torch.zeros(1, tok.linear_dim))

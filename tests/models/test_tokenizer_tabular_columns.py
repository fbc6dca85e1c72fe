"""The ``tabular_columns`` tokenizer: per-column tokens, value/code targets, MSE + CE loss."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.config import TokenizerConfig
from omnivec2_pipelines.models.tokenizers import build_tokenizer

CFG = {"kind": "tabular_columns", "n_numeric": 2, "cardinalities": [3, 5]}


def _tok(cfg: dict = CFG, width: int = 32):
    torch.manual_seed(0)
    return build_tokenizer(TokenizerConfig.from_dict(cfg), width)


def _rows(b: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    num = torch.randn(b, 2, generator=g)
    codes = torch.stack([torch.arange(b) % 3, torch.arange(b) % 5], dim=1).float()
    return torch.cat([num, codes], dim=1)  # (B, 4) float32


def test_shapes_valid_and_column_tokens() -> None:
    tok = _tok()
    assert (tok.max_tokens, tok.patch_dim) == (4, 5)
    x = _rows()
    tokens, valid = tok(x)
    assert tokens.shape == (4, 4, 32) and valid.shape == (4, 4) and valid.all()
    assert torch.isfinite(tokens).all()
    # numeric token is affine in its value; categorical token depends only on its code
    x2 = x.clone()
    x2[:, 0] += 1.0
    d = tok(x2)[0] - tokens
    torch.testing.assert_close(d[:, 0], tok.num_weight[0].expand(4, -1))
    assert torch.allclose(d[:, 1:], torch.zeros_like(d[:, 1:]))
    # rows 0 and 3 share code 0 in column 2 -> equal tokens there
    torch.testing.assert_close(tokens[0, 2], tokens[3, 2])
    # only numeric / only categorical tables work
    only_num = _tok({"kind": "tabular_columns", "n_numeric": 3, "cardinalities": []})
    assert only_num.patch_dim == 1 and only_num(torch.randn(2, 3))[0].shape == (2, 3, 32)
    only_cat = _tok({"kind": "tabular_columns", "n_numeric": 0, "cardinalities": [2]})
    assert only_cat.patch_dim == 2 and only_cat(torch.tensor([[1.0], [0.0]]))[0].shape == (2, 1, 32)


def test_patchify_alignment_and_input_checks() -> None:
    tok = _tok()
    x = _rows()
    p = tok.patchify(x)
    assert p.shape == (4, 4, 1) and torch.equal(p[..., 0], x)
    with pytest.raises(ValueError, match=r"expected table rows \(B, 4\)"):
        tok(torch.zeros(2, 3))
    bad = x.clone()
    bad[0, 3] = 5.0  # column 2 of the categorical block has 5 codes: 0..4
    with pytest.raises(ValueError, match=r"categorical column 1 \(input column 3\) has codes outside \[0, 5\)"):
        tok(bad)
    bad[0, 3] = 1.5
    with pytest.raises(ValueError, match="integer codes"):
        tok.patchify(bad)
    with pytest.raises(ValueError, match="at least one column"):
        _tok({"kind": "tabular_columns", "n_numeric": 0, "cardinalities": []})


def test_loss_mse_plus_ce_finite_and_backward() -> None:
    tok = _tok()
    x = _rows()
    tokens, _ = tok(x)
    pred = torch.nn.Linear(32, tok.patch_dim)(tokens)
    weight = torch.zeros(4, 4)
    weight[:, 0] = 1.0  # numeric column 0 only
    loss_num = tok.reconstruction_loss(pred, tok.patchify(x), weight, norm_target=True)
    torch.testing.assert_close(loss_num, (pred[:, 0, 0] - x[:, 0]).pow(2).mean())
    weight = torch.zeros(4, 4)
    weight[:, 2] = 1.0  # categorical column with 3 codes: logits beyond 3 are ignored
    loss_cat = tok.reconstruction_loss(pred, tok.patchify(x), weight, False)
    ce = torch.nn.functional.cross_entropy(pred[:, 2, :3], x[:, 2].long())
    torch.testing.assert_close(loss_cat, ce)
    loss = tok.reconstruction_loss(pred, tok.patchify(x), torch.ones(4, 4), False)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ValueError, match="expects pred"):
        tok.reconstruction_loss(pred[..., :1], tok.patchify(x), weight, False)


def test_whole_model_forward_backward() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": CFG}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    m.add_head(HeadConfig("mod", "regression", "regression", 1))
    x = _rows()
    out = m("mod", x, "classification")
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert m("mod", x, "regression").shape == (4, 1)
    out.sum().backward()
    m.zero_grad()
    s = m.encode("mod", x, 0.5, torch.Generator().manual_seed(0))
    (s,) = m.forward_features(s)
    pred = m.reconstruct(s)
    assert pred.shape == (4, 4, 5)
    tok = m.tokenizers["mod"]
    loss = tok.reconstruction_loss(pred, tok.patchify(x), (s.mask.masked & s.full_valid).float(), True)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_linear_features_are_the_numbers_then_one_hot_codes() -> None:
    tok = _tok()
    x = _rows()
    feats = tok.linear_features(x)
    assert tok.linear_dim == 2 + 3 + 5 and feats.shape == (4, 10) and feats.dtype == torch.float32
    torch.testing.assert_close(feats[:, :2], x[:, :2])
    for i, row in enumerate(x[:, 2:].long().tolist()):
        hot = torch.zeros(8)
        hot[row[0]] = 1.0
        hot[3 + row[1]] = 1.0
        torch.testing.assert_close(feats[i, 2:], hot)
    only_numbers = _tok({"kind": "tabular_columns", "n_numeric": 2, "cardinalities": []})
    assert only_numbers.linear_dim == 2
    torch.testing.assert_close(only_numbers.linear_features(x[:, :2]), x[:, :2])
    with pytest.raises(ValueError, match="codes outside"):
        tok.linear_features(torch.tensor([[0.0, 0.0, 3.0, 0.0]]))

"""The band_groups tokenizer: shapes, padding groups, patchify alignment, gradients, whole model."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.tokenizers import build_tokenizer, tokenizer_kinds
from omnivec2_pipelines.models.config import TokenizerConfig

CFG = {"kind": "band_groups", "bands": 10, "patch": 3, "group_size": 4, "spatial": "full"}


def _tok(**over):
    torch.manual_seed(0)
    return build_tokenizer(TokenizerConfig.from_dict({**CFG, **over}), 16)


def test_registered_and_shapes() -> None:
    assert "band_groups" in tokenizer_kinds()
    tok = _tok()
    assert (tok.max_tokens, tok.patch_dim) == (3, 4 * 3 * 3)  # ceil(10 / 4) groups
    tokens, valid = tok(torch.randn(5, 10, 3, 3))
    assert tokens.shape == (5, 3, 16) and valid.shape == (5, 3) and valid.dtype == torch.bool
    assert valid.all()  # the zero-padded last group still holds bands 8, 9
    assert tok.patchify(torch.randn(5, 10, 3, 3)).shape == (5, 3, 36)


def test_fewer_bands_give_invalid_padding_groups() -> None:
    tok = _tok()
    tokens, valid = tok(torch.randn(2, 4, 3, 3))  # only the first group has real bands
    assert tokens.shape == (2, 3, 16) and valid.tolist() == [[True, False, False]] * 2
    assert torch.isfinite(tokens).all()
    p = tok.patchify(torch.ones(2, 4, 3, 3))
    assert p[:, 0].eq(1).all() and p[:, 1:].eq(0).all()


def test_patchify_groups_consecutive_bands() -> None:
    tok = _tok()
    x = torch.arange(10, dtype=torch.float32)[None, :, None, None].expand(1, 10, 3, 3).contiguous()
    p = tok.patchify(x)  # value = band index
    assert p[0, 0].tolist() == [0.0] * 9 + [1.0] * 9 + [2.0] * 9 + [3.0] * 9
    assert p[0, 1].unique().tolist() == [4.0, 5.0, 6.0, 7.0]
    assert p[0, 2].tolist() == [8.0] * 9 + [9.0] * 9 + [0.0] * 18  # padding bands
    x = torch.arange(2 * 10 * 9, dtype=torch.float32).reshape(2, 10, 3, 3)
    assert sorted(tok.patchify(x)[:, :, :].flatten().tolist())[-180:] == list(range(180))


@pytest.mark.parametrize("shape", [(2, 11, 3, 3), (2, 10, 3, 4), (2, 10, 9), (2, 0, 3, 3)])
def test_bad_input_shape_raises(shape) -> None:
    with pytest.raises(ValueError, match=r"expected input \(B, bands<=10, 3, 3\)"):
        _tok()(torch.randn(*shape))


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="group_size"):
        _tok(group_size=11)


def test_loss_finite_and_backward_reaches_tokenizer() -> None:
    tok = _tok()
    x = torch.randn(4, 10, 3, 3)
    tokens, valid = tok(x)
    pred = torch.nn.Linear(16, tok.patch_dim)(tokens)
    weight = torch.zeros(4, 3)
    weight[:, 1] = 1.0
    for norm in (False, True):
        loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, norm)
        assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_whole_model_forward_backward_and_reconstruct() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": {**CFG, "bands": 48, "patch": 5, "group_size": 4}}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    x = torch.randn(3, 48, 5, 5)
    out = m("mod", x, "classification")
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.tokenizers["mod"].parameters())
    m.zero_grad()
    s = m.encode("mod", x, 0.5)
    (s,) = m.forward_features(s)
    pred = m.reconstruct(s)
    tok = m.tokenizers["mod"]
    assert pred.shape == (3, 12, tok.patch_dim) == (3, 12, 100)
    weight = (s.mask.masked & s.full_valid).float()
    loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, True)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in tok.parameters())
    # padded input (fewer bands): the padding groups are invalid and never kept by the mask
    s = m.encode("mod", x[:, :26], 0.5)  # 26 bands -> 7 groups with real bands, 6 tokens kept
    assert s.full_valid[0].tolist() == [True] * 7 + [False] * 5 and s.valid.all()


def test_center_stats_tokens_ignore_neighbour_layout() -> None:
    from omnivec2_pipelines.models.tokenizers.band_groups import BandGroupTokenizer

    tok = BandGroupTokenizer(bands=10, patch=3, group_size=4, width=16)  # default spatial="center_stats"
    x = torch.randn(2, 10, 3, 3)
    target = tok.patchify(x)
    assert tok.patch_dim == 12 and target.shape == (2, 3, 12)
    assert torch.allclose(target[:, 0, 0::3], x[:, :4, 1, 1])  # centre pixel of bands 0..3
    # moving the neighbours around the centre (a rotation) changes nothing the tokens see
    rotated = torch.rot90(x, 1, dims=(2, 3))
    assert torch.allclose(tok(x)[0], tok(rotated)[0], atol=1e-5)
    with pytest.raises(ValueError, match="spatial must be"):
        BandGroupTokenizer(bands=10, patch=3, group_size=4, width=16, spatial="pixels")

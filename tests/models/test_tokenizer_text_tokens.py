"""The ``text_tokens`` tokenizer: id embedding, padding mask, id targets, cross-entropy loss."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.config import TokenizerConfig
from omnivec2_pipelines.models.tokenizers import build_tokenizer

CFG = {"kind": "text_tokens", "vocab_size": 50, "max_len": 10}


def _tok(width: int = 32):
    torch.manual_seed(0)
    return build_tokenizer(TokenizerConfig.from_dict(CFG), width)


def _ids() -> torch.Tensor:
    x = torch.zeros(3, 10, dtype=torch.int64)
    x[0, :10] = torch.arange(2, 12)  # full row
    x[1, :4] = torch.tensor([2, 7, 7, 9])  # padded row
    # row 2: all padding (e.g. an empty text)
    return x


def test_shapes_and_valid_mask_on_padding() -> None:
    tok = _tok()
    assert (tok.max_tokens, tok.patch_dim) == (10, 50)
    tokens, valid = tok(_ids())
    assert tokens.shape == (3, 10, 32) and valid.dtype == torch.bool
    assert valid[0].all() and valid[1].tolist() == [True] * 4 + [False] * 6
    assert valid[2].tolist() == [True] + [False] * 9  # the first token stays valid
    assert torch.isfinite(tokens).all()
    # same id at different positions gets different tokens (learned positions)
    assert not torch.allclose(tokens[1, 1], tokens[1, 2])
    # shorter sequences are accepted
    assert tok(_ids()[:, :6])[0].shape == (3, 6, 32)


def test_patchify_is_the_ids_and_inputs_are_checked() -> None:
    tok = _tok()
    x = _ids()
    assert torch.equal(tok.patchify(x), x)
    with pytest.raises(ValueError, match=r"expected token ids \(B, L<= 10\)"):
        tok(torch.zeros(2, 11, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected token ids"):
        tok(torch.zeros(2, 3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer token ids"):
        tok(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 50\)"):
        tok(torch.full((2, 4), 50))


def test_loss_finite_weighted_and_reaches_embedding() -> None:
    tok = _tok()
    x = _ids()
    tokens, valid = tok(x)
    pred = torch.nn.Linear(32, 50)(tokens)  # (B, N, vocab)
    weight = (valid & (torch.arange(10) % 2 == 1)).float()
    loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, norm_target=True)
    assert loss.ndim == 0 and torch.isfinite(loss)
    ce = torch.nn.functional.cross_entropy(pred[weight.bool()], x[weight.bool()])
    torch.testing.assert_close(loss, ce)
    loss.backward()
    assert tok.embed.weight.grad is not None and torch.isfinite(tok.embed.weight.grad).all()
    assert tok.pos.grad is not None and tok.pos.grad.abs().sum() > 0
    assert tok.embed.weight.grad[0].abs().sum() == 0  # padding id gets no gradient
    zero = tok.reconstruction_loss(pred.detach(), x, torch.zeros(3, 10), False)
    assert zero.item() == 0.0
    with pytest.raises(ValueError, match="expects pred"):
        tok.reconstruction_loss(pred[..., :10], x, weight, False)


def test_whole_model_forward_backward() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": CFG}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    x = _ids()
    out = m("mod", x, "classification")
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert m.tokenizers["mod"].embed.weight.grad is not None
    m.zero_grad()
    s = m.encode("mod", x, 0.5, torch.Generator().manual_seed(0))
    (s,) = m.forward_features(s)
    pred = m.reconstruct(s)
    assert pred.shape == (3, 10, 50)
    tok = m.tokenizers["mod"]
    weight = (s.mask.masked & s.full_valid).float()
    loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, True)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name

"""The tubelet (3D patch) tokenizer: shapes, padding mask, patchify alignment, loss, whole-model pass."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2
from omnivec2_pipelines.models.config import TokenizerConfig
from omnivec2_pipelines.models.tokenizers import build_tokenizer, tokenizer_kinds

CFG = {"kind": "tubelet", "in_channels": 2, "n_frames": 4, "input_size": [8, 12], "tubelet": [2, 4, 4]}


def make(**over) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_tokenizer(TokenizerConfig.from_dict({**CFG, **over}), width=16)


def test_registered_and_shapes() -> None:
    assert "tubelet" in tokenizer_kinds()
    tok = make()
    assert tok.grid == (2, 2, 3) and tok.max_tokens == 12 and tok.patch_dim == 2 * 2 * 4 * 4
    tokens, valid = tok(torch.randn(3, 2, 4, 8, 12))
    assert tokens.shape == (3, 12, 16) and valid.shape == (3, 12) and valid.dtype == torch.bool and valid.all()
    assert torch.isfinite(tokens).all()
    assert tok.patchify(torch.randn(3, 2, 4, 8, 12)).shape == (3, 12, 64)
    assert make(tubelet=[2, 4]).tubelet == (2, 4, 4)  # [t, p] means square patches


def test_patchify_is_exact_partition_time_major() -> None:
    tok = make(in_channels=1)
    x = torch.arange(4 * 8 * 12, dtype=torch.float32).reshape(1, 1, 4, 8, 12)
    p = tok.patchify(x)
    assert sorted(p.flatten().tolist()) == list(range(4 * 8 * 12))
    # token 0: frames 0-1, rows 0-3, cols 0-3; token 1 moves right; token 6 is the next time slice
    first = [t * 96 + r * 12 + c for t in range(2) for r in range(4) for c in range(4)]
    assert p[0, 0].tolist() == first
    assert p[0, 1].tolist() == [v + 4 for v in first]
    assert p[0, 6].tolist() == [v + 2 * 96 for v in first]


def test_tokens_align_with_patchify() -> None:
    """Each token's embedding depends only on its own tubelet (the Conv3d sees exactly that patch)."""
    tok = make()
    x = torch.randn(1, 2, 4, 8, 12)
    base, _ = tok(x)
    x2 = x.clone()
    x2[:, :, 2:4, 4:8, 8:12] += 1.0  # the tubelet of time slice 1, row 1, col 2 → token 1*6 + 1*3 + 2 = 11
    changed = (tok(x2)[0] - base).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [False] * 11 + [True]
    diff = (tok.patchify(x2) - tok.patchify(x)).abs().sum(-1)[0] > 0
    assert diff.tolist() == changed.tolist()


def test_shorter_clip_is_padded_and_masked() -> None:
    tok = make()
    tokens, valid = tok(torch.randn(2, 2, 2, 8, 12))  # 2 of 4 frames → second time slice is padding
    assert tokens.shape == (2, 12, 16)
    assert valid[:, :6].all() and not valid[:, 6:].any()
    _, valid3 = tok(torch.randn(2, 2, 3, 8, 12))  # a tubelet with one real frame is real
    assert valid3.all()
    assert tok.patchify(torch.randn(2, 2, 2, 8, 12))[:, 6:].abs().sum() == 0


@pytest.mark.parametrize("shape", [(2, 3, 4, 8, 12), (2, 2, 5, 8, 12), (2, 2, 4, 8, 8), (2, 2, 8, 12)])
def test_bad_input_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"expected input \(B, 2, T<=4, 8, 12\), got"):
        make()(torch.randn(*shape))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        make(tubelet=[3, 4, 4])
    with pytest.raises(ValueError, match="not divisible"):
        make(input_size=[8, 10])


def test_loss_finite_and_backward_reaches_tokenizer() -> None:
    tok = make()
    x = torch.randn(3, 2, 4, 8, 12)
    tokens, _ = tok(x)
    pred = torch.nn.Linear(16, tok.patch_dim)(tokens)
    weight = torch.zeros(3, 12)
    weight[:, ::2] = 1.0
    for norm in (False, True):
        loss = tok.reconstruction_loss(pred, tok.patchify(x), weight, norm)
        assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in tok.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_whole_model_forward_backward() -> None:
    torch.manual_seed(0)
    m = OmniVec2(ModelConfig(width=32, depth_f=1, heads_f=2, reduced_width=32, depth_g=1, heads_g=2,
                             tokenizers={"mod": dict(CFG)}))
    m.add_head(HeadConfig("mod", "classification", "classification", 3))
    x = torch.randn(4, 2, 4, 8, 12)
    out = m("mod", x, "classification")
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.tokenizers["mod"].parameters())
    m.zero_grad()
    s = m.encode("mod", x, 0.5, generator=torch.Generator().manual_seed(0))
    (s,) = m.forward_features(s)
    pred = m.reconstruct(s)
    tok = m.tokenizers["mod"]
    assert pred.shape == (4, tok.max_tokens, tok.patch_dim)
    loss = tok.reconstruction_loss(pred, tok.patchify(x), s.mask.masked.float(), True)
    assert torch.isfinite(loss)
    loss.backward()
    assert tok.proj.weight.grad is not None and torch.isfinite(tok.proj.weight.grad).all()
    # padded clip through the whole model: padding tokens are hidden first and never kept
    s = m.encode("mod", torch.randn(2, 2, 2, 8, 12), 0.5)  # keeps 6 = the real tokens
    assert not s.full_valid[:, 6:].any() and s.valid.all()

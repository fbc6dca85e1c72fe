"""Every model part: shapes, masks respected, gradients flow, no NaN, fusion on/off."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2

TOKENIZERS = {
    "img": {"kind": "patch2d", "in_channels": 3, "input_size": [16, 8], "patch_size": [4, 4]},
    "spec": {"kind": "patch2d", "in_channels": 1, "input_size": [8, 12], "patch_size": [4, 2]},
    "ts": {"kind": "time_patch", "in_channels": 2, "length": 30, "patch_size": [8]},
}
INPUTS = {"img": (3, 16, 8), "spec": (1, 8, 12), "ts": (2, 30)}


def make_model(**over) -> OmniVec2:
    torch.manual_seed(0)
    heads = {f"{m}__cls": {"modality": m, "task": "cls", "kind": "classification", "out_dim": 5} for m in TOKENIZERS}
    heads["ts__fc"] = {"modality": "ts", "task": "fc", "kind": "regression", "out_dim": 6}
    cfg = dict(width=32, depth_f=2, heads_f=4, reduced_width=16, depth_g=1, heads_g=2, mlp_ratio=2.0,
               tokenizers=dict(TOKENIZERS), heads=heads)
    cfg.update(over)
    return OmniVec2(ModelConfig(**cfg))


def x_of(m: str, b: int = 3) -> torch.Tensor:
    return torch.randn(b, *INPUTS[m])


@pytest.mark.parametrize("modality", sorted(TOKENIZERS))
def test_tokenizer_shapes_and_patchify(modality: str) -> None:
    model = make_model()
    tok = model.tokenizers[modality]
    tokens, valid = tok(x_of(modality))
    assert tokens.shape == (3, tok.max_tokens, 32) and valid.shape == (3, tok.max_tokens) and valid.all()
    assert tok.patchify(x_of(modality)).shape == (3, tok.max_tokens, tok.patch_dim)


def test_patch2d_patchify_is_exact_partition() -> None:
    tok = make_model().tokenizers["spec"]
    x = torch.arange(8 * 12, dtype=torch.float32).reshape(1, 1, 8, 12)
    p = tok.patchify(x)
    assert sorted(p.flatten().tolist()) == list(range(96))
    assert p[0, 0].tolist() == [0, 1, 12, 13, 24, 25, 36, 37]  # first 4x2 patch, row-major


def test_time_patch_accepts_shorter_context() -> None:
    tok = make_model().tokenizers["ts"]
    tokens, valid = tok(torch.randn(2, 2, 17))  # 17 steps -> 3 patches per channel
    assert tokens.shape == (2, 6, 32) and valid.all()
    with pytest.raises(ValueError, match="expected input"):
        tok(torch.randn(2, 3, 17))


@pytest.mark.parametrize("modality", sorted(TOKENIZERS))
def test_single_stream_forward_backward_no_nan(modality: str) -> None:
    model = make_model()
    out = model(modality, x_of(modality), "cls")
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    out.sum().backward()
    used = [model.tokenizers[modality], model.f, model.reduce, model.g, model.heads[f"{modality}__cls"]]
    for part in used:
        for name, p in part.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # single stream: the cross-attention fusion is skipped entirely
    assert all(p.grad is None for p in model.fusion.parameters())


def test_regression_head_shape() -> None:
    out = make_model()("ts", x_of("ts"), "fc")
    assert out.shape == (3, 6)


def test_fusion_mixes_streams_both_ways() -> None:
    model = make_model().eval()
    a, b = x_of("img"), x_of("ts")
    fa, fb = model.forward_features([model.encode("img", a), model.encode("ts", b)])
    fa2, fb2 = model.forward_features([model.encode("img", a), model.encode("ts", b + 1.0)])
    assert not torch.allclose(fa.tokens, fa2.tokens)  # a attends to b
    fa3, _ = model.forward_features([model.encode("img", a), model.encode("ts", b)])
    assert torch.allclose(fa.tokens, fa3.tokens)
    # streams must have equal batch sizes
    with pytest.raises(ValueError, match="equal batch sizes"):
        model.forward_features([model.encode("img", x_of("img", 2)), model.encode("ts", b)])


def test_masked_tokens_are_invisible_to_encoder() -> None:
    model = make_model().eval()
    x = x_of("img")
    g = torch.Generator().manual_seed(1)
    s1 = model.encode("img", x, 0.75, g)
    hidden = s1.mask.masked  # (B, N)
    # perturb only hidden patches: the encoded visible tokens must not change
    tok = model.tokenizers["img"]
    noise = torch.zeros(3, tok.max_tokens, tok.patch_dim)
    noise[hidden] = 5.0
    gh, gw = tok.grid
    x2 = x + noise.reshape(3, gh, gw, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(x.shape)
    s2 = model.encode("img", x2, 0.75, torch.Generator().manual_seed(1))
    assert torch.equal(s1.mask.ids_keep, s2.mask.ids_keep)
    assert torch.allclose(s1.tokens, s2.tokens, atol=1e-6)
    assert s1.tokens.shape[1] == 2  # 8 tokens, 25% kept


def test_reconstruction_shapes_and_requires_mask() -> None:
    model = make_model()
    (s,) = model.forward_features(model.encode("spec", x_of("spec"), 0.5))
    pred = model.reconstruct(s)
    assert pred.shape == (3, 12, 8)
    (plain,) = model.forward_features(model.encode("spec", x_of("spec")))
    with pytest.raises(ValueError, match="masked stream"):
        model.reconstruct(plain)


def test_config_validation_and_missing_parts() -> None:
    with pytest.raises(ValueError, match="multiple of its head count"):
        ModelConfig(width=30, heads_f=4)
    with pytest.raises(ValueError, match="unknown model parameter"):
        ModelConfig.from_dict({"widht": 32})
    model = make_model()
    with pytest.raises(KeyError, match="no head for img.seg"):
        model("img", x_of("img"), "seg")
    with pytest.raises(KeyError, match="no tokenizer for modality 'video'"):
        model.encode("video", x_of("img"))
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        make_model(tokenizers={"x": {"kind": "nope", "in_channels": 1, "patch_size": [1]}}, heads={})
    with pytest.raises(ValueError, match="unknown head kind"):
        model.add_head(HeadConfig("img", "seg", "nope", 3))
    with pytest.raises(ValueError, match="segmentation head needs a tokenizer with centers"):
        model.add_head(HeadConfig("img", "seg", "segmentation", 3))
    with pytest.raises(ValueError, match="dense head needs a tokenizer with unpatchify"):
        model.add_head(HeadConfig("ts", "dense", "dense_regression", 1))


def test_add_modality_and_head_update_config() -> None:
    model = make_model(tokenizers={}, heads={})
    model.add_modality("ts", ModelConfig(tokenizers={"ts": TOKENIZERS["ts"]}).tokenizers["ts"])
    model.add_head(HeadConfig("ts", "cls", "classification", 4))
    assert set(model.cfg.tokenizers) == {"ts"} and set(model.cfg.heads) == {"ts__cls"}
    assert model("ts", x_of("ts"), "cls").shape == (3, 4)


def test_model_param_types_are_checked() -> None:
    with pytest.raises(TypeError, match="model.width must be int, got 'big'"):
        ModelConfig.from_dict({"width": "big"})
    with pytest.raises(TypeError, match="model.dropout must be float"):
        ModelConfig.from_dict({"dropout": "0.1"})
    assert ModelConfig.from_dict({"dropout": 0, "width": 64}).dropout == 0


def test_dense_head_predicts_full_resolution_and_unpatchify_inverts() -> None:
    model = make_model()
    tok = model.tokenizers["img"]
    x = x_of("img")
    assert torch.equal(tok.unpatchify(tok.patchify(x), 3), x)
    model.add_head(HeadConfig("img", "depth", "dense_regression", 1))
    out = model("img", x, "depth")
    assert out.shape == (3, 1, 16, 8) and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None for p in model.heads["img__depth"].parameters())


def test_drop_path_is_per_sample_in_training_and_off_in_eval() -> None:
    from omnivec2_pipelines.models.layers import Encoder, drop_path

    x = torch.ones(1000, 3, 4)
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    kept = y[:, 0, 0] != 0
    assert (y[kept] == 1 / 0.75).all() and (y[~kept] == 0).all()  # whole samples dropped, the rest rescaled
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    assert torch.equal(drop_path(x, 0.25, training=False), x)
    enc = Encoder(8, 3, 2, drop_path=0.2)
    assert [b.drop_path for b in enc.blocks] == pytest.approx([0.0, 0.1, 0.2])
    enc.eval()
    z = torch.randn(2, 5, 8)
    assert torch.equal(enc(z), enc(z))
    with pytest.raises(ValueError, match=r"model.drop_path must be in \[0, 1\)"):
        ModelConfig(drop_path=1.0)


def test_qk_norm_bounds_attention_logits_whatever_the_weights() -> None:
    from omnivec2_pipelines.models.layers import Attention

    torch.manual_seed(0)
    x = torch.randn(2, 6, 16)
    for qk_norm in (False, True):
        attn = Attention(16, heads=2, qk_norm=qk_norm)
        with torch.no_grad():
            attn.qkv.weight.mul_(100.0)  # the weight growth that blows up attention logits at high learning rates
        logits = attn.logits(x)
        assert logits.shape == (2, 2, 6, 6)
        # unit-variance heads of width 8: |q.k| / sqrt(8) <= sqrt(8) by Cauchy-Schwarz; without the norm, far more
        assert (logits.abs().max() <= 8 ** 0.5 + 1e-4) == qk_norm
    assert not any("norm" in n for n, _ in Attention(16, 2).named_parameters())  # off: no extra weights
    # the logits are the ones the forward pass softmaxes: attention with them reproduces forward()
    attn = Attention(16, heads=2, qk_norm=True)
    v = attn.qkv(x).view(2, 6, 3, 2, 8).permute(2, 0, 3, 1, 4)[2]
    manual = attn.proj((attn.logits(x).softmax(-1) @ v).transpose(1, 2).reshape(2, 6, 16))
    assert torch.allclose(manual, attn(x), atol=1e-5)


def test_qk_norm_is_in_every_attention_and_in_the_config() -> None:
    model = make_model(qk_norm=True)
    attentions = [m for m in model.modules() if m.__class__.__name__ == "Attention"]
    assert attentions and all(isinstance(a.q_norm, torch.nn.LayerNorm) for a in attentions)
    assert {n.split(".")[0] for n, _ in model.named_parameters() if ".q_norm." in n} >= {"f", "fusion", "g", "decoders"}
    out = model("img", x_of("img"), "cls")
    out.sum().backward()
    assert model.f.blocks[0].attn.q_norm.weight.grad is not None
    assert ModelConfig.from_dict(model.cfg.to_dict()).qk_norm is True
    assert ModelConfig.from_dict({}).qk_norm is False  # configs written before the option load as built
    with pytest.raises(TypeError, match="model.qk_norm must be true or false, got 'yes'"):
        ModelConfig.from_dict({"qk_norm": "yes"})


def test_attention_pool_weights_real_tokens_by_content_and_ignores_padding() -> None:
    from omnivec2_pipelines.models.heads import AttentionPool, MeanPool, make_pool

    torch.manual_seed(0)
    pool = make_pool("attention", 8, 2)
    assert isinstance(pool, AttentionPool) and isinstance(make_pool("mean", 8, 2), MeanPool)
    tokens, valid = torch.randn(2, 5, 8), torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = pool(tokens, valid)
    assert out.shape == (2, 8)
    padded = tokens.clone()
    padded[1, 3:] = 1e3  # padding positions: whatever they hold, the pooled vector is the same
    assert torch.allclose(pool(padded, valid), out, atol=1e-6)
    assert not torch.allclose(pool(tokens.flip(2), valid), out)  # the weights follow the tokens' content
    with pytest.raises(ValueError, match=r"model.pool must be one of \['mean', 'attention'\], got 'max'"):
        make_pool("max", 8, 2)
    with pytest.raises(ValueError, match=r"model.pool must be one of \['mean', 'attention'\], got 'max'"):
        ModelConfig(pool="max")


def test_model_pool_applies_to_classification_heads_only() -> None:
    model = make_model(pool="attention")
    assert type(model.heads["img__cls"].pool).__name__ == "AttentionPool"
    assert not hasattr(model.heads["ts__fc"], "pool")  # regression keeps its own pooling
    out = model("img", x_of("img"), "cls")
    out.sum().backward()
    assert model.heads["img__cls"].pool.query.grad.abs().sum() > 0
    mean = make_model()
    assert type(mean.heads["img__cls"].pool).__name__ == "MeanPool"
    # mean pooling has no weights: checkpoints written before the option load unchanged
    assert not any(".pool." in n for n in mean.state_dict())


def test_sincos_positions_are_distinct_bounded_and_per_axis() -> None:
    from omnivec2_pipelines.models.layers import sincos_positions

    pos = sincos_positions((3, 4), 16)  # 2D: 8 channels per axis, 4 sin + 4 cos
    assert pos.shape == (12, 16) and pos.abs().max() <= 1.0
    assert len({tuple(r.tolist()) for r in pos}) == 12  # every place of the grid differs
    grid = pos.reshape(3, 4, 16)
    assert torch.equal(grid[0, :, :8], grid[2, :, :8]) is False  # the first half follows the rows...
    assert torch.allclose(grid[:, 0, :8], grid[:, 3, :8])  # ...and not the columns
    assert torch.allclose(grid[0, :, 8:], grid[2, :, 8:])  # the second half follows the columns
    assert torch.allclose(pos[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))  # place (0, 0)
    one_d = sincos_positions((5,), 6)
    assert one_d.shape == (5, 6) and torch.allclose(one_d[1, 0], torch.sin(torch.tensor(1.0)).double().float())
    with pytest.raises(ValueError, match="need width >= 6"):
        sincos_positions((2, 2, 2), 4)


def test_pos_init_sincos_sets_the_position_tables_and_nothing_else() -> None:
    from omnivec2_pipelines.models.layers import sincos_positions

    normal, sincos = make_model(), make_model(pos_init="sincos")
    img = sincos.tokenizers["img"]
    assert torch.allclose(img.pos[0], sincos_positions(img.grid, 32))
    ts = sincos.tokenizers["ts"]  # time patches: one position per patch, shared by the channels
    assert torch.allclose(ts.pos.reshape(-1, 32), sincos_positions((ts.n_patches,), 32))
    assert normal.tokenizers["img"].pos.std() < 0.05  # truncated normal, std 0.02
    ns, ss = normal.state_dict(), sincos.state_dict()
    assert {k for k in ns if not torch.equal(ns[k], ss[k])} == {f"tokenizers.{m}.pos" for m in TOKENIZERS}
    assert sincos.tokenizers["img"].pos.requires_grad  # still learned
    assert ModelConfig.from_dict(sincos.cfg.to_dict()).pos_init == "sincos"
    assert ModelConfig.from_dict({}).pos_init == "normal"  # configs written before the option load as built
    grids = make_model(pos_init="sincos_2d")  # 2D / 3D grids only: the image patches, not the time patches
    assert torch.equal(grids.tokenizers["img"].pos, img.pos)
    assert torch.equal(grids.tokenizers["ts"].pos, normal.tokenizers["ts"].pos)
    with pytest.raises(ValueError, match=r"model.pos_init must be one of \['normal', 'sincos', 'sincos_2d'\], got 'fixed'"):
        ModelConfig.from_dict({"pos_init": "fixed"})


def test_every_position_table_of_the_thirteen_modalities_takes_sincos(tiny_bundles, tiny_model_params) -> None:
    """A tokenizer with a learned position table names its grid; one without (coordinates, columns) does not."""
    from omnivec2_pipelines.models.layers import sincos_positions
    from omnivec2_pipelines.training import stages

    model = stages.build_model({**tiny_model_params, "pos_init": "sincos"}, tiny_bundles)
    with_table = set()
    for m, tok in model.tokenizers.items():
        pos = getattr(tok, "pos", None)
        if isinstance(pos, torch.nn.Parameter):
            with_table.add(m)
            want = sincos_positions(tok.position_grid(), pos.shape[-1]) * tok.position_scale()
            assert torch.allclose(pos.reshape(-1, pos.shape[-1]), want), m
        else:
            assert tok.position_grid() is None, m
    assert {"image", "video", "audio", "text", "hyperspectral", "time_series"} <= with_table
    # text: the table at the scale of its token embeddings (std 0.02), not of a patch projection's outputs
    text = model.tokenizers["text"]
    assert text.position_scale() == pytest.approx(0.02 * 2 ** 0.5, rel=0.1)
    assert float(text.pos.abs().max()) <= text.position_scale() * (1 + 1e-6) < 0.1 * float(model.tokenizers["image"].pos.abs().max())
    assert model.tokenizers["image"].position_scale() == 1.0


def test_head_depth_gives_every_task_its_own_tower_and_zero_adds_nothing() -> None:
    from omnivec2_pipelines.models.omnivec2 import Stream

    plain = make_model()
    assert not any(n.startswith("towers.") for n in plain.state_dict())  # checkpoints load as before
    model = make_model(head_depth=2)
    assert sorted(model.towers) == sorted(model.heads) and all(len(t.blocks) == 2 for t in model.towers.values())
    # the same weights elsewhere as the plain model: only the towers are new
    shared = {k: v for k, v in model.state_dict().items() if not k.startswith("towers.")}
    assert shared.keys() == plain.state_dict().keys()
    model.load_state_dict({**model.state_dict(), **plain.state_dict()})
    x = x_of("img")
    assert not torch.allclose(model("img", x, "cls"), plain("img", x, "cls"))
    model("img", x, "cls").sum().backward()
    assert model.towers["img__cls"].blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.towers["spec__cls"].blocks[0].attn.qkv.weight.grad is None  # another task's tower: untouched
    # padding tokens do not reach the real ones through the tower's attention
    model.eval()
    tokens, valid = torch.randn(2, 6, 16), torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = model.forward_head(Stream("img", tokens, valid, valid), "cls")
    noisy = tokens.clone()
    noisy[1, 4:] = 1e3
    assert torch.allclose(model.forward_head(Stream("img", noisy, valid, valid), "cls"), out, atol=1e-5)
    # rebuilt from its config (a checkpoint), the towers are there again and take the weights
    again = OmniVec2(ModelConfig.from_dict(model.cfg.to_dict()))
    again.load_state_dict(model.state_dict())
    again.eval()
    assert torch.allclose(again("img", x, "cls"), model("img", x, "cls"))
    # a head re-created for other classes (fine-tuning) keeps the task's tower and its weights
    tower = model.towers["img__cls"]
    del model.heads["img__cls"], model.cfg.heads["img__cls"]
    model.add_head(HeadConfig("img", "cls", "classification", 3))
    assert model.towers["img__cls"] is tower and model("img", x, "cls").shape == (3, 3)
    with pytest.raises(ValueError, match="model.head_depth must be >= 0"):
        make_model(head_depth=-1)


def test_flat_head_weighs_each_position_starts_as_the_pooled_readout_and_skips_unordered_tokens() -> None:
    from omnivec2_pipelines.models.heads import ClassificationHead
    from omnivec2_pipelines.models.omnivec2 import Stream
    from omnivec2_pipelines.models.tokenizers import build_tokenizer
    from omnivec2_pipelines.models.config import TokenizerConfig

    plain = make_model()
    assert not any(".flat." in n for n in plain.state_dict() if n.startswith("heads.img__cls"))  # loads as before
    model = make_model(flat_head=True)
    head = model.heads["img__cls"]
    tok = model.tokenizers["img"]
    assert head.flat.in_features == tok.max_tokens * 16 and head.flat.out_features == 5
    assert model.heads["spec__cls"].flat.in_features == model.tokenizers["spec"].max_tokens * 16
    assert model.heads["ts__cls"].flat is None  # a sequence: the pooled readout alone
    # zero at the start: the same logits as the plain model with the same other weights
    model.load_state_dict({**model.state_dict(), **plain.state_dict()})
    model.eval(), plain.eval()
    x = x_of("img")
    assert torch.allclose(model("img", x, "cls"), plain("img", x, "cls"), atol=1e-6)
    model.train()
    model("img", x, "cls").sum().backward()
    assert head.flat.weight.grad.abs().sum() > 0
    # once trained, the readout depends on where a token is: swapping two places changes the logits,
    # which a mean over the tokens cannot see
    model.eval()
    torch.nn.init.normal_(head.flat.weight)
    tokens = torch.randn(2, tok.max_tokens, 16)
    valid = torch.ones(2, tok.max_tokens, dtype=torch.bool)
    swapped = tokens[:, [1, 0, *range(2, tok.max_tokens)]]
    assert torch.allclose(plain.heads["img__cls"](swapped, valid), plain.heads["img__cls"](tokens, valid), atol=1e-5)
    assert not torch.allclose(head(swapped, valid), head(tokens, valid), atol=1e-3)
    # padding positions add nothing
    valid[1, -3:] = False
    noisy = tokens.clone()
    noisy[1, -3:] = 1e3
    out = model.forward_head(Stream("img", tokens, valid, valid), "cls")
    assert torch.allclose(model.forward_head(Stream("img", noisy, valid, valid), "cls"), out, atol=1e-5)
    # rebuilt from its config (a checkpoint), the flat term is there again and takes the weights
    again = OmniVec2(ModelConfig.from_dict(model.cfg.to_dict()))
    again.load_state_dict(model.state_dict())
    again.eval()
    assert torch.allclose(again("img", x, "cls"), model("img", x, "cls"))
    # sequences and sets (text, point groups, graph nodes) keep the pooled readout alone
    for cfg in ({"kind": "point_groups", "n_points": 64, "n_groups": 8, "group_size": 16},
                {"kind": "graph_nodes", "n_features": 5, "max_nodes": 7},
                {"kind": "text_tokens", "vocab_size": 20, "max_len": 6},
                {**TOKENIZERS["spec"], "aligned": False}):  # a spectrogram: its time axis is not aligned
        unaligned = build_tokenizer(TokenizerConfig.from_dict(cfg), 32)
        assert not unaligned.aligned
        cls_head = ClassificationHead(16, 3, flat=True)
        cls_head.build(unaligned)
        assert cls_head.flat is None
    with pytest.raises(TypeError, match="model.flat_head must be true or false"):
        ModelConfig.from_dict({"flat_head": "yes"})
    with pytest.raises(ValueError, match="patch2d tokenizer: aligned must be true or false, got .no."):
        build_tokenizer(TokenizerConfig.from_dict({**TOKENIZERS["spec"], "aligned": "no"}), 32)


def test_wide_head_adds_a_linear_model_of_the_input_from_zero() -> None:
    """``model.wide_head``: heads of the task kinds it lists add a zero-started linear map of the tokenizer's
    linear features; other kinds, and tokenizers without linear features, keep the head as it was."""
    from omnivec2_pipelines.models.heads import RegressionHead

    plain = make_model()
    assert not any(".wide." in n for n in plain.state_dict())  # checkpoints without the option load as before
    model = make_model(wide_head=["classification", "regression"])
    head, tok = model.heads["ts__fc"], model.tokenizers["ts"]
    assert tok.linear_dim == 2 * 32 and head.wide.in_features == 64 and head.wide.out_features == 6
    assert model.heads["ts__cls"].wide.in_features == 64 and model.heads["ts__cls"].wide.out_features == 5
    assert model.heads["img__cls"].wide is None and model.heads["spec__cls"].wide is None  # no linear features
    model.load_state_dict({**model.state_dict(), **plain.state_dict()})
    model.eval(), plain.eval()
    x = torch.randn(3, 2, 17)  # a shorter context: 3 of 4 patches per channel
    base = plain("ts", x, "fc")
    torch.testing.assert_close(model("ts", x, "fc"), base)  # zero at the start: the plain head
    model.train()
    model("ts", x, "fc").sum().backward()
    assert head.wide.weight.grad.abs().sum() > 0
    # once trained it adds exactly W @ (each channel zero-padded to 32 steps) + b
    model.eval()
    torch.nn.init.normal_(head.wide.weight)
    torch.nn.init.normal_(head.wide.bias)
    padded = torch.nn.functional.pad(x, (0, 15)).reshape(3, 64)
    torch.testing.assert_close(model("ts", x, "fc") - base, padded @ head.wide.weight.T + head.wide.bias,
                               atol=1e-4, rtol=1e-4)
    # rebuilt from its config (a checkpoint), the wide term is there again and takes the weights
    again = OmniVec2(ModelConfig.from_dict(model.cfg.to_dict()))
    again.load_state_dict(model.state_dict())
    again.eval()
    torch.testing.assert_close(again("ts", x, "fc"), model("ts", x, "fc"))
    # a tokenizer without linear features (image patches) keeps the head as it was
    img_head = RegressionHead(16, 3, wide=True)
    img_head.build(model.tokenizers["img"])
    assert img_head.wide is None
    with pytest.raises(ValueError, match="needs the input x"):
        head(torch.randn(3, tok.max_tokens, 16), torch.ones(3, tok.max_tokens, dtype=torch.bool))
    with pytest.raises(NotImplementedError, match="no linear features"):
        model.tokenizers["img"].linear_features(x_of("img"))
    only_regression = make_model(wide_head=["regression"])
    assert only_regression.heads["ts__cls"].wide is None and only_regression.heads["ts__fc"].wide is not None
    assert ModelConfig(wide_head=["regression", "classification"]).wide_head == ["classification", "regression"]
    for bad in (True, "regression", ["segmentation"]):
        with pytest.raises(TypeError, match="model.wide_head must be a list of task kinds"):
            ModelConfig.from_dict({"wide_head": bad})

"""The packed forward (both streams through f, the fusion and g in one call) equals the separate calls."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from omnivec2_pipelines.models import ModelConfig, OmniVec2
from omnivec2_pipelines.models.layers import Encoder
from omnivec2_pipelines.models.packing import pack, should_pack, unpack

TOKENIZERS = {
    "img": {"kind": "patch2d", "in_channels": 1, "input_size": [8, 8], "patch_size": [4, 4]},      # 4 tokens
    "ts": {"kind": "time_patch", "in_channels": 1, "length": 32, "patch_size": [8]},               # 4 tokens
    "wide": {"kind": "patch2d", "in_channels": 1, "input_size": [8, 10], "patch_size": [4, 2]},    # 10 tokens
    "txt": {"kind": "text_tokens", "vocab_size": 30, "max_len": 5},                                # 5, padded
}


def model() -> OmniVec2:
    torch.manual_seed(0)
    return OmniVec2(ModelConfig(width=32, depth_f=2, heads_f=4, reduced_width=16, depth_g=2, heads_g=2,
                                mlp_ratio=2.0, tokenizers=dict(TOKENIZERS), heads={})).eval()


def x_of(m: str, b: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(sorted(TOKENIZERS).index(m))
    if m == "txt":
        ids = torch.randint(1, 30, (b, 5), generator=gen)
        ids[0, 2:] = 0  # padded texts
        ids[1, 4:] = 0
        return ids
    shape = {"img": (1, 8, 8), "ts": (1, 32), "wide": (1, 8, 10)}[m]
    return torch.randn(b, *shape, generator=gen)


def test_pack_and_unpack_round_trip_with_masks_only_where_needed() -> None:
    a, b = torch.randn(2, 3, 4), torch.randn(5, 2, 4)
    packed = pack([a, b], [None, torch.tensor([[True, False]] * 5)])
    assert packed.x.shape == (7, 3, 4) and packed.sizes == [(2, 3), (5, 2)]
    assert packed.valid.tolist() == [[True] * 3] * 2 + [[True, False, False]] * 5
    back = unpack(packed.x, packed.sizes)
    assert torch.equal(back[0], a) and torch.equal(back[1], b)
    assert pack([a, a], [None, None]).valid is None  # dense, equal lengths: no mask at all
    assert should_pack([(8, 16), (8, 16)]) and not should_pack([(8, 4), (8, 16)]) and not should_pack([(8, 16)])


@pytest.mark.parametrize("lengths", [(6, 6), (6, 5)])
def test_an_encoder_over_a_packed_batch_equals_one_call_per_batch(lengths) -> None:
    torch.manual_seed(0)
    enc = Encoder(16, 2, 2, 2.0).eval()
    xs = [torch.randn(3, n, 16) for n in lengths]
    valids = [None, torch.tensor([[True] * (lengths[1] - 1) + [False]] * 3)]
    packed = pack(xs, valids)
    together = unpack(enc(packed.x, packed.valid), packed.sizes)
    for x, v, got in zip(xs, valids, together):
        assert torch.allclose(got, enc(x, v), atol=1e-5)


@pytest.mark.parametrize("pair", [("img", "ts"), ("img", "txt"), ("img", "wide")])
@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_encode_streams_and_fused_features_equal_the_two_call_path(pair, ratio) -> None:
    """f packed (or not, when padding would cost too much), fusion both ways in one call, g packed."""
    net = model()
    xs = {m: x_of(m) for m in pair}
    gen = torch.Generator().manual_seed(3)
    packed = net.encode_streams([(m, xs[m], ratio) for m in pair], gen)
    gen = torch.Generator().manual_seed(3)
    alone = [net.encode(m, xs[m], ratio, gen) for m in pair]
    for p, s in zip(packed, alone):
        assert torch.allclose(p.tokens, s.tokens, atol=1e-5) and torch.equal(p.valid, s.valid)
    fused = net.forward_features(packed)
    a, b = alone
    # the pre-packing fusion: each stream attends to the other, one call per direction
    xa, xb = a.tokens, b.tokens
    for blk in net.fusion.blocks:
        xa, xb = blk(xa, b.key_valid, context=xb), blk(xb, a.key_valid, context=xa)
    reference = [net.g(xa, a.key_valid), net.g(xb, b.key_valid)]
    for got, want in zip(fused, reference):
        assert torch.allclose(got.tokens, want, atol=1e-5)
    single = net.forward_features(packed, fuse=False)
    for got, s in zip(single, alone):
        assert torch.allclose(got.tokens, net.forward_features(s)[0].tokens, atol=1e-5)


def test_dense_streams_attend_without_a_mask_and_padded_ones_with_one(monkeypatch) -> None:
    net = model()
    masks = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **k: masks.append(k.get("attn_mask")) or sdpa(*a, **k))
    streams = net.encode_streams([("img", x_of("img"), 0.5), ("ts", x_of("ts"), 0.5)])
    net.forward_features(streams)
    assert masks and all(m is None for m in masks)  # f, fusion and g: the fastest kernel applies
    assert all(s.dense for s in streams) and streams[0].tokens.shape[1] == 2  # 4 tokens, half kept
    masks.clear()
    net.forward_features(net.encode_streams([("img", x_of("img"), 0.0), ("txt", x_of("txt"), 0.0)]))
    assert masks and all(m is not None for m in masks)


def test_a_dense_stream_keeps_its_fast_path_through_masking_and_reconstruction() -> None:
    net = model()
    (s,) = net.forward_features(net.encode("img", x_of("img"), 0.5, torch.Generator().manual_seed(0)))
    slow = replace(s, dense=False)
    assert torch.allclose(net.reconstruct(s), net.reconstruct(slow), atol=1e-5)


def test_the_residual_stream_stays_in_the_autocast_dtype() -> None:
    """fp32 position/modality embeddings and LayerNorm outputs must not promote the blocks' stream to fp32."""
    net = model()
    dtypes = []
    hooks = [blk.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
             for enc in (net.f, net.g) for blk in enc.blocks]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # CPU autocast stands in for CUDA's here
        net.forward_features(net.encode_streams([("img", x_of("img"), 0.0), ("ts", x_of("ts"), 0.0)]))
    for h in hooks:
        h.remove()
    assert dtypes and all(d == torch.bfloat16 for d in dtypes), dtypes

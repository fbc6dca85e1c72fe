"""The GPU path: SDPA everywhere, torch.compile, and (on CUDA only) bf16 autocast, pinned memory, NCCL.

The CUDA tests are skipped where CUDA is absent; run them on a GPU machine with
``pytest tests/training/test_gpu_path.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.data import BatchSource

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
UNIMODAL = {"steps": 4, "batch_size": 8, "mask_ratio": 0.5}


def test_every_attention_runs_on_scaled_dot_product_attention(bundles, tiny_model_params, monkeypatch) -> None:
    model = stages.build_model(tiny_model_params, bundles)
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k))
    x = torch.from_numpy(bundles["grid"].get("train", "x")[:4])
    streams = model.forward_features([model.encode("grid", x, 0.5), model.encode("series", torch.from_numpy(
        bundles["series"].get("train", "x")[:4]), 0.5)])
    model.reconstruct(streams[0])
    cfg = model.cfg
    # f for both streams, cross-attention fusion both ways, g for both, one decoder
    assert len(calls) == 2 * cfg.depth_f + 2 * cfg.fusion_depth + 2 * cfg.depth_g + cfg.decoder_depth


@pytest.mark.slow
def test_a_compiled_backbone_trains_like_the_eager_one(bundles, tiny_model_params) -> None:
    trainer = {"device": "cpu", "progress": False, "warmup_steps": 1}
    eager, h1 = stages.pretrain_unimodal(bundles, tiny_model_params, UNIMODAL, trainer)
    compiled, h2 = stages.pretrain_unimodal(bundles, tiny_model_params, UNIMODAL, {**trainer, "compile": True})
    assert np.allclose(h1["loss"], h2["loss"], atol=1e-4)
    assert compiled.model.state_dict().keys() == eager.model.state_dict().keys()  # checkpoints stay portable


@cuda
def test_bf16_autocast_training_on_cuda(bundles, tiny_model_params) -> None:
    ck, history = stages.pretrain_unimodal(bundles, tiny_model_params, UNIMODAL, {"device": "cuda", "progress": False})
    assert np.isfinite(history["loss"]).all()
    model = ck.model.cuda()
    x = torch.from_numpy(bundles["grid"].get("train", "x")[:4]).cuda()
    linears = [m for m in model.f.modules() if isinstance(m, torch.nn.Linear)]
    assert linears
    dtypes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype)) for m in linears]
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            (s,) = model.forward_features(model.encode("grid", x))
    finally:
        for h in hooks:
            h.remove()
    # the matmuls of f run in bf16; autocast runs LayerNorm in fp32, and g (like reduce) ends in one
    assert dtypes and all(d == torch.bfloat16 for d in dtypes), dtypes
    assert s.tokens.dtype == torch.float32 and torch.isfinite(s.tokens).all()


@cuda
def test_pinned_non_blocking_batches(bundles) -> None:
    x = bundles["grid"].get("train", "x")
    cpu = BatchSource(x, seed=0).draw(8)[0]
    gpu = BatchSource(x, seed=0).draw(8, "cuda", pin=True)[0]
    torch.cuda.synchronize()
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)


@cuda
def test_fused_attention_kernels_take_our_shapes() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from omnivec2_pipelines.models.layers import Encoder

    enc = Encoder(768, 2, 12, 4.0).cuda()
    x = torch.randn(4, 256, 768, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel([SDPBackend.FLASH_ATTENTION,
                                                                    SDPBackend.EFFICIENT_ATTENTION]):
        enc(x).float().pow(2).mean().backward()


@cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_nccl_ranks_match_one_gpu(bundles, tiny_model_params) -> None:
    trainer = {"device": "cuda", "progress": False, "warmup_steps": 1}
    one, _ = stages.pretrain_unimodal(bundles, tiny_model_params, UNIMODAL, trainer)
    two, _ = stages.pretrain_unimodal(bundles, tiny_model_params, UNIMODAL, {**trainer, "nproc_per_node": 2})
    for k, v in one.model.state_dict().items():
        assert torch.allclose(v, two.model.state_dict()[k], atol=5e-3), k  # bf16 autocast: looser tolerance


@cuda
def test_no_cuda_sync_inside_training_steps(bundles, tiny_model_params) -> None:
    """Between log flushes the steps never wait for the GPU (torch raises on any synchronising call)."""
    from omnivec2_pipelines.training.config import TrainerConfig
    from omnivec2_pipelines.training.objectives import Multitask
    from omnivec2_pipelines.training.trainer import Trainer
    from tests.conftest import classification_tasks

    model = stages.build_model(tiny_model_params, bundles)
    tasks = classification_tasks(bundles, model)

    def strict(step: int) -> None:  # steps 1..6 run in error mode; step 7 flushes (a read) after it ends
        torch.cuda.set_sync_debug_mode("error" if step < 6 else "default")

    try:
        history = Trainer(TrainerConfig(steps=8, progress=False, eval_every=0, log_every=100, device="cuda",
                                        nonfinite="skip")).fit(model, Multitask(tasks, 8), "s", on_step=strict)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(history) == 8 and np.isfinite(history["loss"]).all()

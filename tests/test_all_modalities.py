"""All thirteen modalities through the model: forward, backward and one training step per task kind."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.modalities.base import registered_modalities
from omnivec2_pipelines.models import HeadConfig
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.objectives import masked_reconstruction_loss, task_loss
from tests.tiny import MODALITIES

#: Every registered modality (one module each under omnivec2_pipelines/modalities/).
EXPECTED = set(registered_modalities())


def test_default_configuration_enables_all_thirteen() -> None:
    assert set(MODALITIES) == EXPECTED


@pytest.fixture(scope="module")
def model(tiny_bundles):
    from tests.conftest import TINY_MODEL

    torch.manual_seed(0)
    model = stages.build_model(TINY_MODEL, tiny_bundles)
    for m, b in tiny_bundles.items():
        for t, spec in b.tasks.items():
            model.add_head(HeadConfig(m, t, spec.kind, spec.out_dim))
    return model


@pytest.mark.parametrize("modality", sorted(EXPECTED))
def test_forward_backward_every_task_and_reconstruction(modality, tiny_bundles, model) -> None:
    bundle = tiny_bundles[modality]
    assert bundle.tasks, f"{modality} has no task"
    key = bundle.meta.get("pretrain_input_key", "x")
    x = torch.from_numpy(bundle.get("train", key)[:4].copy())
    model.zero_grad()
    (s,) = model.forward_features(model.encode(modality, x, 0.5, torch.Generator().manual_seed(0)))
    loss = masked_reconstruction_loss(model, s, x, True)
    for task, spec in bundle.tasks.items():
        xi = torch.from_numpy(bundle.get("train", spec.input_key)[:4].copy())
        y = torch.from_numpy(bundle.get("train", spec.target_key)[:4].copy())
        out = model(modality, xi, task)
        assert torch.isfinite(out).all(), task
        expected = {"classification": (4, spec.out_dim), "regression": (4, spec.out_dim),
                    "dense_regression": (4, *spec.out_shape), "segmentation": (4, *spec.out_shape, spec.out_dim)}
        assert tuple(out.shape) == expected[spec.kind], (task, out.shape)
        loss = loss + task_loss(spec.kind, out, y)
    assert torch.isfinite(loss)
    loss.backward()
    tok_grads = [p.grad for p in model.tokenizers[modality].parameters() if p.requires_grad]
    assert tok_grads and all(g is not None and torch.isfinite(g).all() for g in tok_grads)
    assert all(p.grad is not None for t in bundle.tasks for p in model.heads[f"{modality}__{t}"].parameters())


def test_one_multitask_step_per_task_kind(tiny_bundles) -> None:
    from tests.conftest import TINY_MODEL

    kinds: dict[str, tuple[str, str]] = {}
    for m, b in sorted(tiny_bundles.items()):
        for t, spec in b.tasks.items():
            kinds.setdefault(spec.kind, (m, t))
    assert set(kinds) == {"classification", "regression", "dense_regression", "segmentation"}
    trainer = {"device": "cpu", "progress": False, "warmup_steps": 0, "steps": 1}
    for kind, (m, t) in kinds.items():
        other = next((om, ot) for om, ob in sorted(tiny_bundles.items()) for ot in ob.tasks if om != m)
        sub = {m: tiny_bundles[m], other[0]: tiny_bundles[other[0]]}
        init, _ = stages.pretrain_unimodal(sub, TINY_MODEL, {"steps": 1, "batch_size": 4, "mask_ratio": 0.5},
                                           trainer)
        ckpt, hist = stages.multitask(init, sub, {"batch_size": 4, "tasks": {m: [t], other[0]: [other[1]]}},
                                      trainer)
        assert len(hist) == 1 and hist["loss"].notna().all()
        assert {f"loss.{m}.{t}", f"loss.{other[0]}.{other[1]}"} <= set(hist.columns), kind

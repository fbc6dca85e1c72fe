"""Batch augmentation: shapes, dtypes and labels stay valid; only training batches of label tasks change."""

from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.training import augment, stages
from omnivec2_pipelines.training.evaluation import predict
from omnivec2_pipelines.training.params import AUGMENT_OPS, check_augment

INPUTS = {"shift": torch.randn(6, 1, 12, 10), "flip": torch.randn(6, 3, 5, 5), "time_mask": torch.randn(6, 1, 8, 20),
          "freq_mask": torch.randn(6, 1, 8, 20), "scale": torch.randn(6, 2, 16), "jitter": torch.randn(6, 2, 16),
          "rotate_z": torch.randn(6, 32, 4)}


@pytest.mark.parametrize("op", AUGMENT_OPS)
def test_every_op_keeps_shape_dtype_and_changes_the_batch(op) -> None:
    x = INPUTS[op]
    out = augment.apply(x, {op: 0.5 if op != "flip" else 1.0}, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert not torch.equal(out, x)
    again = augment.apply(x, {op: 0.5 if op != "flip" else 1.0}, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the trainer's generator makes it reproducible
    assert torch.equal(augment.apply(x, {op: 0.0}, torch.Generator()), x)


def test_ops_keep_their_meaning() -> None:
    gen = torch.Generator().manual_seed(1)
    pts = torch.randn(4, 50, 3)
    rot = augment.rotate_z(pts, 1.0, gen)
    assert torch.allclose(rot.norm(dim=-1), pts.norm(dim=-1), atol=1e-5)  # a rotation keeps distances
    assert torch.allclose(rot[..., 2], pts[..., 2])  # about z
    img = torch.zeros(3, 1, 10, 10)
    img[:, :, 4:6, 4:6] = 1.0
    moved = augment.shift(img, 0.2, gen)
    assert torch.allclose(moved.sum(dim=(1, 2, 3)), img.sum(dim=(1, 2, 3)))  # the blob moves, within the frame
    masked = augment.time_mask(torch.ones(5, 1, 4, 30), 0.2, gen)
    assert ((masked == 0).all(dim=2).sum(dim=-1) <= 6).all()  # at most 20% of the frames


def test_integer_inputs_and_non_label_tasks_are_left_alone() -> None:
    ids = torch.randint(0, 100, (4, 16))
    assert torch.equal(augment.apply(ids, {"jitter": 1.0}, torch.Generator()), ids)
    spec = {"shift": 0.1, "jitter": 0.1, "rotate_z": 1.0}
    assert augment.for_task(spec, "classification") == spec
    assert augment.for_task(spec, "segmentation") == {"jitter": 0.1, "rotate_z": 1.0}
    assert augment.for_task(spec, "dense_regression") == {} and augment.for_task(spec, "regression") == {}


def test_bad_specs_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"'multitask.augment.image.shfit'; did you mean 'multitask.augment.image.shift'"):
        check_augment({"image": {"shfit": 0.1}}, ["image"])
    with pytest.raises(ValueError, match=r"multitask.augment.image.shift must be a number >= 0"):
        check_augment({"image": {"shift": -1}}, ["image"])
    assert check_augment({"image": None, "audio": {"time_mask": 0.1}}, []) == {"audio": {"time_mask": 0.1}}


def test_augmentation_is_on_in_training_batches_and_off_at_evaluation(bundles, tiny_model_params) -> None:
    torch.manual_seed(0)
    ck = stages.fresh_checkpoint(bundles, tiny_model_params, 0)
    seen = []
    ck.model.tokenizers["grid"].register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    stage = {"steps": 2, "batch_size": 8, "tasks": {"grid": ["classification"]}, "augment": {"grid": {"jitter": 5.0}}}
    trained, _ = stages.multitask(ck, bundles, stage, {"device": "cpu", "progress": False})
    train_x = bundles["grid"].get("train", "x")
    # every training batch was noised: no row equals a row of the training set
    for batch in seen:
        assert all(not any(torch.allclose(r, torch.from_numpy(t)) for t in train_x) for r in batch[:2])
    seen.clear()
    x = bundles["grid"].get("test", "x")[:4]
    a = predict(trained.model, "grid", "classification", x, device="cpu")
    b = predict(trained.model, "grid", "classification", x, device="cpu")
    assert (a == b).all() and torch.equal(torch.cat(seen[:1]), torch.from_numpy(x))


def test_shift_moves_each_sample_by_its_own_drawn_offset() -> None:
    """The batched shift equals cropping each zero-padded sample at the offsets drawn for it."""
    x = torch.randn(5, 2, 9, 7)
    moved = augment.shift(x, 0.25, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    dy, dx = round(0.25 * 9), round(0.25 * 7)
    oy = (torch.rand(5, generator=gen) * (2 * dy + 1)).long().clamp(max=2 * dy)
    ox = (torch.rand(5, generator=gen) * (2 * dx + 1)).long().clamp(max=2 * dx)
    padded = torch.nn.functional.pad(x, (dx, dx, dy, dy))
    for i in range(5):
        assert torch.equal(moved[i], padded[i, :, int(oy[i]):int(oy[i]) + 9, int(ox[i]):int(ox[i]) + 7])
    assert len({(int(a), int(b)) for a, b in zip(oy, ox)}) > 1  # offsets differ between samples

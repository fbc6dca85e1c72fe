"""Frozen-feature linear probes: informative features pass, uninformative ones and shuffled train labels fail,
the dense layouts line up, keys name exactly the stages given."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.models.tokenizers.patch2d import Patch2DTokenizer
from omnivec2_pipelines.tasks import get_task_kind
from omnivec2_pipelines.training.probe import fit_probe, linear_probe, probe_features, probe_task, token_layout
from omnivec2_pipelines.training.stages import build_model
from tests.conftest import TINY_MODEL, grid_bundle, series_bundle

DENSE = TaskSpec("depth", "dense_regression", "x", "y.depth", 1, (1, 8, 8))
SEG = TaskSpec("segmentation", "segmentation", "x", "y.segmentation", 2, (16,))


def _model(bundles: dict[str, ArrayBundle], seed: int = 0):
    torch.manual_seed(seed)
    return build_model(TINY_MODEL, bundles)


def _with_train_labels(bundle: ArrayBundle, labels: np.ndarray) -> ArrayBundle:
    return ArrayBundle({**bundle.arrays, "train.y.classification": labels}, bundle.meta)


def _point_bundle(n: int = 40, points: int = 16, seed: int = 0) -> ArrayBundle:
    """Clouds whose points are labelled by the sign of their x coordinate."""
    rng = np.random.default_rng(seed)
    arrays, splits = {}, {}
    for split, size in (("train", n), ("val", 4), ("test", n // 2)):
        x = rng.normal(size=(size, points, 3)).astype(np.float32)
        arrays[f"{split}.x"], arrays[f"{split}.y.segmentation"] = x, (x[..., 0] > 0).astype(np.int64)
        splits[split] = size
    meta = {"modality": "cloud", "pretrain_input_key": "x", "splits": splits, "tasks": {"segmentation": SEG.to_dict()},
            "tokenizer": {"kind": "point_groups", "n_points": points, "n_groups": 4, "group_size": 4}}
    return ArrayBundle(arrays, meta)


def _depth_bundle(n: int = 24, seed: int = 0) -> ArrayBundle:
    rng = np.random.default_rng(seed)
    arrays, splits = {}, {}
    for split, size in (("train", n), ("val", 4), ("test", n // 2)):
        x = rng.normal(size=(size, 1, 8, 8)).astype(np.float32)
        arrays[f"{split}.x"], arrays[f"{split}.y.depth"] = x, x.copy()
        splits[split] = size
    meta = {"modality": "rgbd", "pretrain_input_key": "x", "splits": splits, "tasks": {"depth": DENSE.to_dict()},
            "tokenizer": {"kind": "patch2d", "in_channels": 1, "input_size": [8, 8], "patch_size": [4, 4]}}
    return ArrayBundle(arrays, meta)


def test_informative_features_pass_and_constant_ones_fall_to_chance() -> None:
    """A randomly initialised network (no heads, as after stage 1) keeps a trivially separable class
    signal; a network whose tokens carry nothing of the input cannot do better than the majority class."""
    b = grid_bundle("grid", n=300)
    model = _model({"grid": b})
    assert not model.heads
    informative = probe_task(model, "grid", b, "classification")
    assert informative["accuracy"] > 0.9
    with torch.no_grad():  # every token the same for every input: features constant over samples
        for p in (*model.tokenizers["grid"].parameters(), model.modality_embed["grid"]):
            p.zero_()
    blind = probe_task(model, "grid", b, "classification")
    y_test = b.get("test", "y.classification")
    assert blind["accuracy"] <= np.bincount(y_test).max() / len(y_test) + 1e-9 < 0.5


def test_probe_is_fitted_on_the_train_rows_only() -> None:
    """Shuffled train labels (test labels intact) leave nothing to learn: the probe drops to chance."""
    b = grid_bundle("grid", n=300)
    model = _model({"grid": b})
    assert probe_task(model, "grid", b, "classification")["accuracy"] > 0.9
    shuffled = np.random.default_rng(0).permutation(b.get("train", "y.classification"))
    assert probe_task(model, "grid", _with_train_labels(b, shuffled), "classification")["accuracy"] < 0.55


def test_keys_name_every_task_and_exactly_the_stages_given(bundles) -> None:
    stage1, final = _model(bundles, 0), _model(bundles, 1)
    out = linear_probe({"pretrain_unimodal": stage1, "multitask": final}, bundles, split="test", batch_size=16)
    expected = {f"{m}.{t}.probe.{s}.{metric}" for s in ("pretrain_unimodal", "multitask")
                for m, b in bundles.items() for t, spec in b.tasks.items()
                for metric in get_task_kind(spec.kind).metrics}
    assert set(out) == expected and all(np.isfinite(v) for v in out.values())
    assert linear_probe({}, bundles) == {}


def test_a_modality_without_a_tokenizer_is_skipped_with_a_warning(bundles, caplog) -> None:
    model = _model({"grid": bundles["grid"]})
    with caplog.at_level(logging.WARNING, logger="omnivec2_pipelines.training.probe"):
        out = linear_probe({"pretrain_paired": model}, bundles)
    assert out and all(k.startswith("grid.classification.probe.pretrain_paired.") for k in out)
    assert "pretrain_paired checkpoint has no tokenizer for modality series" in caplog.text


def test_token_layout_cuts_maps_into_the_patches_unpatchify_reads() -> None:
    tok = Patch2DTokenizer(in_channels=1, input_size=[8, 8], patch_size=[4, 4], width=8)
    y = torch.randn(3, 1, 8, 8)
    layout = token_layout(tok, tok.max_tokens, (1, 8, 8))
    per_token = np.empty((3, layout.size), dtype=np.float32)
    per_token[:, layout] = y.numpy().reshape(3, -1)
    patches = torch.from_numpy(per_token).reshape(3, 4, 16)
    assert torch.equal(patches, tok.patchify(y))  # the tokenizer's own patches
    assert torch.equal(tok.unpatchify(patches, 1), y)
    with pytest.raises(ValueError, match="cannot be cut into 5 token patches"):
        token_layout(tok, 5, (1, 8, 8))


def test_dense_probe_maps_each_token_onto_its_own_patch() -> None:
    """Token features that are the pixels of their own patch predict the map almost exactly; the same
    features given to the wrong tokens cannot."""
    tok = Patch2DTokenizer(in_channels=1, input_size=[8, 8], patch_size=[4, 4], width=8)
    kind, rng = get_task_kind("dense_regression"), np.random.default_rng(0)
    y = rng.normal(size=(60, 1, 8, 8)).astype(np.float32)
    f = tok.patchify(torch.from_numpy(y)).numpy() + rng.normal(scale=0.01, size=(60, 4, 16)).astype(np.float32)
    pred = fit_probe(kind, DENSE, tok, f[:40], y[:40], f[40:])
    assert pred.shape == (20, 1, 8, 8)
    assert kind.compute_metrics(DENSE, y[40:], pred)["rmse"] < 0.1
    wrong = fit_probe(kind, DENSE, tok, f[:40], y[:40], f[40:, ::-1])  # tokens in reverse order
    assert kind.compute_metrics(DENSE, y[40:], wrong)["rmse"] > 0.8


def test_point_probe_reads_one_row_per_point() -> None:
    kind, rng = get_task_kind("segmentation"), np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(30, 16))
    f = np.eye(2)[labels] + rng.normal(scale=0.1, size=(30, 16, 2))  # each point's features say its label
    pred = fit_probe(kind, SEG, None, f[:20], labels[:20], f[20:])
    assert pred.shape == (10, 16) and kind.compute_metrics(SEG, labels[20:], pred)["accuracy"] == 1.0
    moved = fit_probe(kind, SEG, None, f[:20], labels[:20], f[20:, ::-1])  # features of other points
    assert kind.compute_metrics(SEG, labels[20:], moved)["accuracy"] < 0.75


@pytest.mark.parametrize("make, width", [(_point_bundle, 16), (_depth_bundle, 4)])
def test_dense_kinds_are_probed_through_the_network(make, width) -> None:
    """Segmentation (per-point features) and dense regression (per-token features) run end to end
    on a network's g tokens, scored with the kind's metrics."""
    b = make()
    name = b.meta["modality"]
    model = _model({name: b})
    (task,) = b.tasks
    kind = get_task_kind(b.tasks[task].kind)
    feats = probe_features(model, name, b.get("test", "x"), ("pooled", kind.probe_on), batch_size=4, device="cpu")
    n, d = len(b.get("test", "x")), TINY_MODEL["reduced_width"]
    assert feats[kind.probe_on].shape == (n, width, d) and feats["pooled"].shape == (n, d)  # one pass, both
    alone = probe_features(model, name, b.get("test", "x"), (kind.probe_on,), batch_size=4, device="cpu")
    assert np.allclose(alone[kind.probe_on], feats[kind.probe_on], atol=1e-5)
    out = linear_probe({"pretrain_unimodal": model}, {name: b}, batch_size=8)
    assert set(out) == {f"{name}.{task}.probe.pretrain_unimodal.{m}" for m in kind.metrics}
    assert all(np.isfinite(v) for v in out.values())


"""Fine-tuning: head re-creation, new modalities and tasks, frozen bodies, label subsets, the label curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnivec2_pipelines.models import head_key
from omnivec2_pipelines.training import finetune as ft
from omnivec2_pipelines.training.evaluation import predict
from omnivec2_pipelines.training.objectives import Objective
from omnivec2_pipelines.training.params import finetune_spec
from omnivec2_pipelines.training.stages import BODY_PREFIXES, fresh_checkpoint, multitask
from omnivec2_pipelines.training.trainer import TrainerConfig, param_groups
from tests.conftest import grid_bundle, series_bundle

TRAINER = {"device": "cpu", "progress": False, "warmup_steps": 1, "log_every": 100, "resume_dir": "", "seed": 0}
FT = {"steps": 4, "batch_size": 8, "eval_every": 2, "lr": 1e-3}


@pytest.fixture(scope="module")
def trained() -> tuple:
    """A tiny multitask checkpoint on a 3-class grid set and the series forecasting task only."""
    bundles = {"grid": grid_bundle("grid"), "series": series_bundle("series")}
    from tests.conftest import TINY_MODEL

    init = fresh_checkpoint(bundles, TINY_MODEL, 0)
    ckpt, _ = multitask(init, bundles, {"steps": 3, "batch_size": 8,
                                        "tasks": {"grid": ["classification"], "series": ["forecasting"]}}, TRAINER)
    return ckpt, bundles


def _body(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(BODY_PREFIXES)}


def test_other_classes_recreate_the_head_and_predictions_name_valid_classes(trained) -> None:
    ckpt, _ = trained
    four = grid_bundle("grid", k=4, seed=3)  # same modality and tokenizer, 4 classes instead of 3
    spec = finetune_spec(FT, TRAINER, ["grid"])
    r = ft.finetune_once(ckpt, {"grid": four}, [("grid", "classification")], spec, TRAINER, None)
    head = r.checkpoint.model.cfg.heads[head_key("grid", "classification")]
    assert head.out_dim == 4
    assert "grid.classification" in r.checkpoint.meta["finetune"]["recreated_heads"]
    assert "3 -> 4" in r.checkpoint.meta["finetune"]["recreated_heads"]["grid.classification"]
    pred = predict(r.checkpoint.model, "grid", "classification", four.get("test", "x"), 16, "cpu")
    names = four.tasks["classification"].class_names
    assert [names[i] for i in pred.argmax(1)]  # every index names a class (IndexError before the fix)
    assert pred.shape[1] == len(names)
    assert ckpt.model.cfg.heads[head_key("grid", "classification")].out_dim == 3  # the init is untouched


def test_same_classes_reuse_the_head(trained) -> None:
    ckpt, bundles = trained
    changes = ft.adapt_model(__import__("copy").deepcopy(ckpt.model), ckpt.meta, bundles,
                             [("grid", "classification")])
    assert changes["reused_heads"] == ["grid.classification"] and not changes["recreated_heads"]


def test_renamed_classes_recreate_the_head(trained) -> None:
    ckpt, bundles = trained
    renamed = grid_bundle("grid")
    renamed.meta["tasks"]["classification"]["class_names"] = ["x", "y", "z"]
    changes = ft.adapt_model(__import__("copy").deepcopy(ckpt.model), ckpt.meta, {"grid": renamed},
                             [("grid", "classification")])
    assert "class names" in changes["recreated_heads"]["grid.classification"]


def test_new_modality_gets_a_tokenizer_and_the_body_of_the_checkpoint(trained) -> None:
    ckpt, _ = trained
    other = grid_bundle("other", k=2, hw=(12, 12), seed=5)
    other.meta["tokenizer"]["patch_size"] = [6, 6]
    spec = finetune_spec({**FT, "mode": "head"}, TRAINER, ["other"])
    before = _body(ckpt.model)
    r = ft.finetune_once(ckpt, {"other": other}, [("other", "classification")], spec, TRAINER, None)
    assert r.checkpoint.meta["finetune"]["new_modalities"] == ["other"]
    assert r.checkpoint.meta["finetune"]["new_heads"] == ["other.classification"]
    after = _body(r.checkpoint.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # head mode: the body is frozen
    assert "other" in r.checkpoint.model.tokenizers


def test_full_mode_trains_the_body_at_a_lower_rate(trained) -> None:
    ckpt, bundles = trained
    spec = finetune_spec(FT, TRAINER, ["grid"])
    before = _body(ckpt.model)
    r = ft.finetune_once(ckpt, bundles, [("grid", "classification")], spec, TRAINER, None)
    after = _body(r.checkpoint.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_new_task_on_a_known_modality(trained) -> None:
    ckpt, bundles = trained
    assert head_key("series", "classification") not in ckpt.model.heads
    spec = finetune_spec(FT, TRAINER, ["series"])
    r = ft.finetune_once(ckpt, bundles, [("series", "classification")], spec, TRAINER, None)
    assert r.checkpoint.meta["finetune"]["new_heads"] == ["series.classification"]
    assert {"series.classification.accuracy", "series.classification.baseline.accuracy"} <= set(r.metrics)
    assert not any(k.startswith("series.forecasting") for k in r.metrics)  # only what was fine-tuned


def test_lr_scales_and_param_groups(trained) -> None:
    ckpt, _ = trained
    model = ckpt.model
    spec = finetune_spec({"body_lr_scale": 0.1, "layer_decay": 0.5}, TRAINER, ["grid"])
    scales = ft.lr_scales(model, spec, set(model.tokenizers))
    g_top = next(k for k in scales if k.startswith(f"g.blocks.{len(model.g.blocks) - 1}."))
    assert scales[g_top] == pytest.approx(0.1)  # the block nearest the output: body_lr_scale itself
    f_top = next(k for k in scales if k.startswith("f.blocks.0."))
    tok = next(k for k in scales if k.startswith("tokenizers.grid."))
    assert scales[tok] < scales[f_top] < 0.1  # deeper from the output: smaller
    assert not any(k.startswith("heads.") for k in scales)  # heads train at the full rate

    class Scaled(Objective):
        def step(self, model, ctx):  # pragma: no cover - not called
            raise NotImplementedError

        def batch_sources(self):
            return {}

        def lr_scale(self, name: str) -> float:
            return 0.0 if name.startswith("f.") else 0.5

    cfg = TrainerConfig(lr=1e-2)
    groups = param_groups(model, Scaled(), cfg)
    assert groups and all(g["lr"] == pytest.approx(5e-3) for g in groups)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) not in in_groups and not p.requires_grad for n, p in model.named_parameters()
               if n.startswith("f."))
    for p in model.parameters():
        p.requires_grad_(True)


def test_label_subset_is_stratified_seeded_and_row_aligned() -> None:
    b = grid_bundle("grid", n=120, k=3)
    y = b.get("train", "y.classification")
    sub = ft.label_subset(b, 0.25, seed=1)
    ys = sub.get("train", "y.classification")
    for c in range(3):
        assert (ys == c).sum() == max(1, round(0.25 * (y == c).sum()))
    assert sub.meta["splits"]["train"] == len(ys) and sub.meta["label_fraction"] == 0.25
    rows = ft.label_subset_rows(len(y), y, 0.25, 1)
    np.testing.assert_array_equal(sub.get("train", "x"), b.get("train", "x")[rows])  # inputs follow labels
    np.testing.assert_array_equal(rows, ft.label_subset_rows(len(y), y, 0.25, 1))
    assert not np.array_equal(rows, ft.label_subset_rows(len(y), y, 0.25, 2))
    assert sub.get("test", "x") is b.get("test", "x")  # evaluated rows untouched
    assert ft.label_subset(b, 1.0, 0) is b
    with pytest.raises(ValueError, match="label_fractions"):
        ft.label_subset_rows(10, None, 0.0, 0)


def test_label_efficiency_runs_every_fraction_from_both_starts_and_reports(trained) -> None:
    from omnivec2_pipelines import reporting

    ckpt, bundles = trained
    params = {**FT, "label_fractions": [0.5, 1.0], "scratch": True, "tasks": {"grid": ["classification"]},
              "modalities": ["grid"]}
    ckpts, history, summary = ft.finetune_stage(ckpt, bundles, params, TRAINER)
    assert sorted(ckpts) == ["grid.classification__pretrained__0.5", "grid.classification__pretrained__1",
                             "grid.classification__scratch__0.5", "grid.classification__scratch__1"]
    runs = {(r["fraction"], r["start"]): r for r in summary["runs"]}
    assert runs[(0.5, "scratch")]["train_rows"] < runs[(1.0, "scratch")]["train_rows"] == 48
    assert all(r["main_metric"] == "accuracy" and "accuracy" in r["baseline"] for r in runs.values())
    assert set(history["start"]) == {"pretrained", "scratch"} and set(history["fraction"]) == {0.5, 1.0}
    md = reporting.finetune_markdown(summary)
    assert "## grid.classification (accuracy ↑)" in md and md.count("\n| 0.5 | 24 |") == 1
    assert "new head" not in md  # the checkpoint had this head; a scratch network's heads are not "changes"
    figs = reporting.finetune_figures(summary)
    assert list(figs) == ["grid.classification.png"]


def test_scratch_start_does_not_use_the_checkpoint_weights(trained) -> None:
    ckpt, bundles = trained
    fresh = ft.fresh_like(ckpt.model, bundles, seed=0)
    assert fresh.cfg.width == ckpt.model.cfg.width
    fresh_w = dict(fresh.named_parameters())
    trained_w = [(n, p) for n, p in ckpt.model.named_parameters() if n.startswith("f.") and p.ndim == 2]
    assert trained_w and all(not torch.equal(fresh_w[n], p) for n, p in trained_w)


@pytest.mark.parametrize("params, match", [
    ({"mode": "linear"}, "finetune.mode"),
    ({"label_fractions": [0.0]}, "label_fractions"),
    ({"label_fractions": [0.5, 0.5]}, "repeated"),
    ({"body_lr_scale": 0}, "body_lr_scale"),
    ({"data": {"imgae": {}}}, "did you mean 'image'"),
    ({"data": {"image": {"source": {"pth": "x"}}}}, "finetune.data.image.source.pth"),
    ({"tasks": {"audio": ["classification"]}, "modalities": ["image"]}, "finetune.tasks names modality 'audio'"),
    ({"stpes": 3}, "did you mean 'finetune.steps'"),
    ({"steps": "many"}, "steps"),
])
def test_finetune_block_errors_name_the_key(params, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        finetune_spec(params, TRAINER, ["image"])


def test_missing_init_path_is_named(trained, tmp_path) -> None:
    _, bundles = trained
    with pytest.raises(FileNotFoundError, match="finetune.init"):
        ft.finetune_stage(None, bundles, {**FT, "init": str(tmp_path / "nope")}, TRAINER)


def test_multitask_body_lr_scale_slows_the_body_only(trained) -> None:
    """``multitask.body_lr_scale``: the pretrained body moves less than at the full rate; heads do not care."""
    import copy

    from omnivec2_pipelines.training.stages import body_lr_scales, body_parameters

    ckpt, bundles = trained
    names = body_parameters(ckpt.model)
    assert names and not any(n.startswith(("heads.", "decoders.")) for n in names)
    assert body_lr_scales(ckpt.model, 1.0) == {} and set(body_lr_scales(ckpt.model, 0.5)) == set(names)
    moved = {}
    for scale in (1.0, 0.01):
        start = copy.deepcopy(ckpt)
        before = _body(start.model)
        out, _ = multitask(start, bundles, {"steps": 3, "batch_size": 8, "body_lr_scale": scale,
                                            "tasks": {"grid": ["classification"], "series": ["forecasting"]}},
                           {**TRAINER, "eval_every": 0})
        after = _body(out.model)
        moved[scale] = sum(float((after[k] - before[k]).abs().sum()) for k in before)
    assert 0 < moved[0.01] < 0.2 * moved[1.0]
    with pytest.raises(ValueError, match="multitask.body_lr_scale"):
        multitask(copy.deepcopy(ckpt), bundles, {"steps": 1, "body_lr_scale": 0}, TRAINER)

"""Leave-one-modality-out transfer through the real stage pipelines: the held-out modality is never trained on
before fine-tuning, both starts are compared at every fraction, trained stages are cached."""

from __future__ import annotations

import pytest

from omnivec2_pipelines import transfer as tr
from omnivec2_pipelines.pipeline_registry import build_pipelines
from tests.conftest import TINY_MODEL, grid_bundle, series_bundle
from tests.tiny import project_params


def _params(tmp_path) -> dict:
    params = project_params()
    params["modalities"] = ["grid", "other", "series"]
    for m in params["modalities"]:
        params[m] = {"mask_ratio": 0.75, "augment": None}
    params["model"].update(TINY_MODEL)
    params["trainer"].update({"device": "cpu", "progress": False, "warmup_steps": 1, "log_every": 100})
    for stage, steps in (("pretrain_unimodal", 3), ("pretrain_paired", 2), ("multitask", 4)):
        params[stage].update({"steps": steps, "batch_size": 8})
    params["finetune"].update({"steps": 3, "batch_size": 8, "eval_every": 2})
    params["transfer"] = {"hold_out": ["other"], "budget": 1.0, "cache_dir": str(tmp_path / "cache"),
                          "finetune": {"label_fractions": [0.25, 1.0], "scratch": True}}
    return params


def _bundles() -> dict:
    other = grid_bundle("other", k=2, hw=(12, 12), seed=4)
    other.meta["tokenizer"]["patch_size"] = [6, 6]
    return {"grid": grid_bundle("grid"), "other": other, "series": series_bundle("series")}


def test_hold_out_trains_without_it_then_compares_starts(tmp_path, caplog) -> None:
    params, bundles = _params(tmp_path), _bundles()
    doc, md, figs = tr.run_transfer(params["transfer"], params, bundles, build_pipelines)
    held = doc["hold_out"]["other"]
    assert held["trained_on"] == ["grid", "series"]
    assert [s["stage"] for s in held["stages_trained"]] == ["pretrain_unimodal", "pretrain_paired", "multitask"]
    runs = {(r["fraction"], r["start"]): r for r in held["runs"]}
    assert set(runs) == {(0.25, "pretrained"), (1.0, "pretrained"), (0.25, "scratch"), (1.0, "scratch")}
    assert runs[(1.0, "pretrained")]["new_modalities"] == ["other"]  # the checkpoint never saw it
    assert runs[(0.25, "pretrained")]["train_rows"] < runs[(1.0, "pretrained")]["train_rows"]
    assert "at 0.25 of the labels the pretrained body" in md and "## other.classification" in md
    assert list(figs) == ["other.classification.png"]

    again, _, _ = tr.run_transfer(params["transfer"], params, bundles, build_pipelines)  # cached stages
    assert not any(s["trained"] for s in again["hold_out"]["other"]["stages_trained"])
    assert again["hold_out"]["other"]["runs"] == held["runs"]  # deterministic


@pytest.mark.parametrize("over, match", [
    ({"hold_out": ["smell"]}, "transfer.hold_out names 'smell'"),
    ({"hold_out": []}, "non-empty list"),
    ({"stages": ["pretrain_paired", "pretrain_unimodal", "multitask"]}, "in that order"),
    ({"budget": 0}, "transfer.budget"),
    ({"finetune": {"tasks": "all"}}, "transfer.finetune.tasks is set by the transfer"),
    ({"finetune": {"label_fractions": [2.0]}}, "label_fractions"),
    ({"holdout": ["grid"]}, "did you mean 'transfer.hold_out'"),
])
def test_transfer_block_errors_name_the_key(tmp_path, over, match) -> None:
    params = _params(tmp_path)
    with pytest.raises(ValueError, match=match):
        tr.validate_transfer_params({**params["transfer"], **over}, params)

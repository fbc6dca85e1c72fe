"""The evaluation pipeline: the probes of the stages `evaluation.probe` names, merged into metrics.json beside the
model's metrics and baselines, and shown in the report; `evaluate` alone (the sweep, the study) runs without them."""

from __future__ import annotations

import pandas as pd
import pytest

from omnivec2_pipelines.models import HeadConfig
from omnivec2_pipelines.params_schema import STAGES
from omnivec2_pipelines.pipelines import evaluation
from omnivec2_pipelines.pipelines.nested import run_nested
from omnivec2_pipelines.training.stages import fresh_checkpoint
from tests.conftest import TINY_MODEL

HISTORY = pd.DataFrame({"step": [0, 1], "loss": [1.0, 0.5], "elapsed_s": [0.1, 0.2]})


def _inputs(bundles) -> dict:
    ckpts = {s: fresh_checkpoint(bundles, TINY_MODEL, seed) for seed, s in enumerate(STAGES)}
    ckpts["multitask"].model.add_head(HeadConfig("grid", "classification", "classification", 3))
    return {**{f"{s}_checkpoint": c for s, c in ckpts.items()}, **{f"{s}_loss_history": HISTORY for s in STAGES},
            **{f"{m}.tokenized": b for m, b in bundles.items()}}


def _params(probe) -> dict:
    return {"trainer": {"device": "cpu", "seed": 0},
            "evaluation": {"split": "test", "batch_size": 16, "baselines": True, "probe": probe}}


@pytest.mark.parametrize("probe, stages", [(True, list(STAGES)), (["pretrain_unimodal", "multitask"],
                                                                   ["pretrain_unimodal", "multitask"]),
                                           (False, [])])
def test_metrics_json_holds_the_probes_of_the_stages_asked_for(bundles, probe, stages) -> None:
    params = _params(probe)
    out = run_nested(evaluation.create_pipelines(sorted(bundles), params)["evaluation"], params, _inputs(bundles))
    metrics = out["metrics"]
    probed = {k.split(".")[3] for k in metrics if k.split(".")[2] == "probe"}
    assert sorted(probed) == sorted(stages) and out["probe_metrics"].items() <= metrics.items()
    for s in stages:  # every task of the data, also those the final model has no head for
        for key in ("grid.classification.probe.{}.accuracy", "series.classification.probe.{}.macro_f1",
                    "series.forecasting.probe.{}.mse"):
            assert key.format(s) in metrics
    # the model's head and the baseline as before
    assert {"grid.classification.accuracy", "grid.classification.baseline.accuracy"} <= set(metrics)
    report = out["evaluation_report"]
    assert ("## Linear probes" in report) == bool(stages)
    if stages:
        header = " | ".join(["baseline", *(f"probe.{s}" for s in stages), "model"])
        assert f"| modality | task | metric | unit | {header} |" in report


def test_evaluate_alone_needs_no_stage_checkpoints(bundles) -> None:
    """The sweep and the study run the `evaluate` node by itself, with no probes."""
    pipe = evaluation.create_pipelines(sorted(bundles))["evaluation"].only_nodes("evaluate")
    assert not {f"{s}_checkpoint" for s in STAGES[:-1]} & pipe.inputs()
    inputs = {k: v for k, v in _inputs(bundles).items() if k == "multitask_checkpoint" or k.endswith(".tokenized")}
    metrics = run_nested(pipe, _params(True), {**inputs, "probe_metrics": {}})["metrics"]
    assert "grid.classification.accuracy" in metrics and not any(".probe." in k for k in metrics)


def test_a_stage_started_from_a_named_checkpoint_cuts_the_earlier_probes_off(bundles) -> None:
    """With ``multitask.init`` the stage-1/2 checkpoints are not this run's (and may not exist): not read."""
    params = {**_params(True), "multitask": {"init": "elsewhere"}}
    pipe = evaluation.create_pipelines(sorted(bundles), params)["evaluation"]
    assert "multitask_checkpoint" in pipe.inputs()
    assert not {"pretrain_unimodal_checkpoint", "pretrain_paired_checkpoint"} & pipe.inputs()
    assert evaluation.pipeline.probed_stages({**params, "multitask": {}}) == STAGES


@pytest.mark.parametrize("resamples", [200, 0])
def test_metrics_json_holds_the_bootstrap_interval_of_each_main_metric(bundles, resamples) -> None:
    params = _params(False)
    params["evaluation"]["bootstrap"] = resamples
    out = run_nested(evaluation.create_pipelines(sorted(bundles), params)["evaluation"], params, _inputs(bundles))
    metrics = out["metrics"]
    ci = {k: v for k, v in metrics.items() if ".vs_baseline." in k}
    if not resamples:
        assert not ci and "excludes 0" not in out["evaluation_report"]
        return
    assert set(ci) == {f"grid.classification.vs_baseline.accuracy.{s}" for s in ("diff", "ci_low", "ci_high")}
    diff = metrics["grid.classification.accuracy"] - metrics["grid.classification.baseline.accuracy"]
    assert ci["grid.classification.vs_baseline.accuracy.diff"] == pytest.approx(diff)
    assert (ci["grid.classification.vs_baseline.accuracy.ci_low"] <= diff
            <= ci["grid.classification.vs_baseline.accuracy.ci_high"])
    assert "model − baseline, 95% CI" in out["evaluation_report"]

from __future__ import annotations

import pandas as pd

import pytest

from omnivec2_pipelines.reporting import (
    DEFAULT_UNITS,
    LOWER_IS_BETTER,
    confusion_figures,
    loss_figures,
    markdown_report,
    metrics_table,
    probe_table,
)
from omnivec2_pipelines.sweep import METRICS_BY_KIND

METRICS = {"a.classification.accuracy": 0.9, "a.classification.baseline.accuracy": 0.8,
           "b.forecasting.mse": 0.3, "b.forecasting.baseline.mse": 0.2, "c.depth.rmse": 1.0}


def test_metrics_table_knows_which_direction_is_better() -> None:
    t = metrics_table(METRICS).set_index(["modality", "metric"])
    assert t.loc[("a", "accuracy"), "better"] == "model"  # higher accuracy wins
    assert t.loc[("b", "mse"), "better"] == "baseline"  # lower mse wins
    assert t.loc[("c", "rmse"), "better"] == "" and len(t) == 3  # no baseline: nothing to compare


def test_markdown_report_and_figures() -> None:
    hist = {"multitask": pd.DataFrame({"step": [0, 1, 2], "loss": [2.0, 1.0, 0.5], "elapsed_s": [0.1, 0.2, 0.3],
                                       "loss.a.classification": [2.0, None, 0.5]})}
    md = markdown_report(METRICS, hist)
    assert "| a | classification | accuracy | fraction (0-1) | 0.9000 | 0.8000 | model |" in md
    assert "| multitask | 3 | 2.0000 |" in md
    figs = loss_figures(hist)
    assert list(figs) == ["multitask.png"]
    labels = [line.get_label() for line in figs["multitask.png"].axes[0].get_lines()]
    assert labels == ["a.classification", "total"]
    cm = confusion_figures({"a.classification": {"confusion": [[3, 1], [0, 4]], "class_names": ["x", "y"]}})
    assert list(cm) == ["a.classification.png"]
    assert "accuracy 0.875" in cm["a.classification.png"].get_suptitle()


def test_every_metric_in_the_report_says_its_unit() -> None:
    metrics = {**METRICS, "c.depth.abs_rel": 0.1, "c.depth.mse_standardized": 0.2, "c.depth.baseline.rmse": 2.0,
               "d.seg.miou": 0.5, "d.seg.accuracy": 0.7}
    details = {"b.forecasting": {"units": {"mse": "tokenized target^2", "mae": "tokenized target"}},
               "c.depth": {"units": {"rmse": "target", "abs_rel": "ratio (abs. error / target)",
                                     "mse_standardized": "z-score^2"}},
               "d.seg": {"units": {"miou": "0-1", "accuracy": "fraction of points (0-1)"}}}
    t = metrics_table(metrics, details).set_index(["modality", "metric"])
    assert (t["unit"] != "").all(), t
    assert t.loc[("b", "mse"), "unit"] == "tokenized target^2"  # from the details
    assert t.loc[("c", "mse_standardized"), "unit"] == "z-score^2" and t.loc[("c", "rmse"), "unit"] == "target"
    assert t.loc[("c", "mse_standardized"), "better"] == "" and t.loc[("c", "rmse"), "better"] == "model"
    md = markdown_report(metrics, {}, details=details)
    assert "| metric | unit | model |" in md and "| c | depth | mse_standardized | z-score^2 | 0.2000 |" in md
    assert "`z-score^2`" in md and "`target`" in md  # the legend explains every unit
    assert "mse_standardized" in md.split("|")[0]  # ... and which metrics are lower-is-better
    # every metric evaluation can write has a unit and a direction
    for names in METRICS_BY_KIND.values():
        for name in names:
            assert name in DEFAULT_UNITS, name
            assert (name in LOWER_IS_BETTER) == (name not in ("accuracy", "macro_f1", "miou")), name


@pytest.mark.parametrize("names", [["negative", "neutral", "positive"], ["x", "y"],
                                   [f"a_rather_long_class_name_{i}" for i in range(30)]])
def test_confusion_figure_shows_its_whole_title_and_labels(names) -> None:
    import numpy as np

    k = len(names)
    cm = (np.eye(k, dtype=int) * 5 + 1).tolist()
    fig = confusion_figures({"text.classification": {"confusion": cm, "class_names": names}})[
        "text.classification.png"]
    fig.canvas.draw()
    bbox = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, every artist drawn
    w, h = fig.get_size_inches()
    assert bbox.x0 >= 0 and bbox.y0 >= 0 and bbox.x1 <= w and bbox.y1 <= h, (bbox, w, h)
    assert "text.classification" in fig.get_suptitle()


def test_val_curves_beside_the_training_loss() -> None:
    hist = {"multitask": pd.DataFrame({"step": [0, 1, 2, 3], "loss": [2.0, 1.0, 0.5, 0.4],
                                       "elapsed_s": [0.1, 0.2, 0.3, 0.4],
                                       "val.score": [None, 0.2, None, 0.1]})}
    md = markdown_report(METRICS, hist)
    assert "| multitask | 4 | 2.0000 | 0.4000 | 0.2000 (2) |" in md  # the best val step, 1-based
    fig = loss_figures(hist)["multitask.png"]
    (val,) = fig.axes[1].get_lines()[:1]
    assert val.get_label() == "val score" and list(val.get_ydata()) == [0.2, 0.1]


PROBES = {**METRICS, "a.classification.probe.multitask.accuracy": 0.95,
          "a.classification.probe.pretrain_unimodal.accuracy": 0.7,
          "b.forecasting.probe.pretrain_unimodal.mse": 0.1, "b.forecasting.probe.multitask.mse": 0.4}


def test_probe_table_has_a_column_per_probed_stage_and_the_best_per_direction() -> None:
    t = probe_table(PROBES).set_index(["modality", "metric"])
    # the stages present, in the method's order (no pretrain_paired column: it was not probed)
    assert list(t.columns) == ["task", "unit", "baseline", "probe.pretrain_unimodal", "probe.multitask", "model",
                               "best"]
    assert t.loc[("a", "accuracy"), "best"] == "probe.multitask"  # higher is better
    assert t.loc[("b", "mse"), "best"] == "probe.pretrain_unimodal"  # lower is better
    assert t.loc[("b", "mse"), "unit"] == "target^2" and len(t) == 2  # c.depth has no probe: no row
    # the probes stay out of the model-vs-baseline table
    assert len(metrics_table(PROBES)) == len(metrics_table(METRICS)) == 3
    assert probe_table(METRICS).empty


def test_report_shows_the_probe_table_only_when_probes_ran() -> None:
    md = markdown_report(PROBES, {})
    assert "## Linear probes" in md
    assert "| modality | task | metric | unit | baseline | probe.pretrain_unimodal | probe.multitask | model |" in md
    assert "| a | classification | accuracy | fraction (0-1) | 0.8000 | 0.7000 | **0.9500** | 0.9000 |" in md
    assert "| b | forecasting | mse | target^2 | 0.2000 | **0.1000** | 0.4000 | 0.3000 |" in md
    assert "probe" not in markdown_report(METRICS, {})


def test_report_gives_the_bootstrap_interval_of_the_main_metric() -> None:
    metrics = {**METRICS, "a.classification.vs_baseline.accuracy.diff": 0.1,
               "a.classification.vs_baseline.accuracy.ci_low": 0.02,
               "a.classification.vs_baseline.accuracy.ci_high": 0.18,
               "b.forecasting.vs_baseline.mse.diff": 0.1, "b.forecasting.vs_baseline.mse.ci_low": -0.05,
               "b.forecasting.vs_baseline.mse.ci_high": 0.25}
    t = metrics_table(metrics).set_index(["modality", "metric"])
    assert len(t) == 3  # the interval keys are no rows of their own
    assert (t.loc[("a", "accuracy"), "ci_low"], t.loc[("a", "accuracy"), "ci_high"]) == (0.02, 0.18)
    assert pd.isna(t.loc[("c", "rmse"), "ci_low"])
    md = markdown_report(metrics, {})
    assert "| [+0.02, +0.18] (excludes 0) |" in md  # the split is sure: model better
    assert "| [-0.05, +0.25] |" in md  # contains 0: cannot tell

from __future__ import annotations

import pandas as pd

from omnivec2_pipelines.reporting import confusion_figures, loss_figures, markdown_report, metrics_table

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
    assert "| a | classification | accuracy | 0.9000 | 0.8000 | model |" in md
    assert "| multitask | 3 | 2.0000 |" in md
    figs = loss_figures(hist)
    assert list(figs) == ["multitask.png"]
    labels = [line.get_label() for line in figs["multitask.png"].axes[0].get_lines()]
    assert labels == ["a.classification", "total"]
    cm = confusion_figures({"a.classification": {"confusion": [[3, 1], [0, 4]], "class_names": ["x", "y"]}})
    assert list(cm) == ["a.classification.png"]
    assert "accuracy 0.875" in cm["a.classification.png"].axes[0].get_title()

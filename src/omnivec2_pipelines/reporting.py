"""Human-readable evaluation report: a Markdown metrics table, loss curves, confusion matrices.

Pure pandas/matplotlib (no Kedro); the evaluation pipeline's ``report`` node calls these.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

#: Metrics where lower is better (the others: higher is better).
LOWER_IS_BETTER = {"mse", "mae", "rmse", "abs_rel"}


def metrics_table(metrics: Mapping[str, float]) -> pd.DataFrame:
    """One row per (modality, task, metric): model value, baseline value, and which is better."""
    rows = []
    for key, value in sorted(metrics.items()):
        parts = key.split(".")
        if "baseline" in parts:
            continue
        modality, task, metric = parts[0], parts[1], ".".join(parts[2:])
        base = metrics.get(f"{modality}.{task}.baseline.{metric}")
        better = None
        if base is not None and np.isfinite(base) and np.isfinite(value):
            better = "model" if (value < base if metric in LOWER_IS_BETTER else value > base) else (
                "tie" if value == base else "baseline")
        rows.append({"modality": modality, "task": task, "metric": metric, "model": value, "baseline": base,
                     "better": better or ""})
    return pd.DataFrame(rows, columns=["modality", "task", "metric", "model", "baseline", "better"])


def markdown_report(metrics: Mapping[str, float], histories: Mapping[str, pd.DataFrame],
                    split: str = "test") -> str:
    """The report as Markdown: metrics beside baselines, then per-stage training summaries."""
    table = metrics_table(metrics)
    lines = ["# OmniVec2 evaluation report", "",
             f"Held-out split: `{split}`. Baselines are classical models (logistic / ridge regression) fitted on "
             "the train split of the same arrays. Lower is better for mse, mae, rmse and abs_rel.", "",
             "| modality | task | metric | model | baseline | better |", "|---|---|---|---:|---:|---|"]
    for r in table.itertuples(index=False):
        base = "" if r.baseline is None or pd.isna(r.baseline) else f"{r.baseline:.4f}"
        lines.append(f"| {r.modality} | {r.task} | {r.metric} | {r.model:.4f} | {base} | {r.better} |")
    lines += ["", "## Training", "", "| stage | steps | first loss | last loss (mean of last 10%) | seconds |",
              "|---|---:|---:|---:|---:|"]
    for stage, h in histories.items():
        if len(h):
            tail = max(1, len(h) // 10)
            lines.append(f"| {stage} | {len(h)} | {h['loss'].iloc[0]:.4f} | {h['loss'].tail(tail).mean():.4f} | "
                         f"{h['elapsed_s'].iloc[-1]:.0f} |")
    lines += ["", "Figures: `figures/loss/<stage>.png` (loss curves) and "
              "`figures/confusion/<modality>.<task>.png` (confusion matrices).", ""]
    return "\n".join(lines)


def loss_figures(histories: Mapping[str, pd.DataFrame], smooth: int = 25) -> dict[str, Any]:
    """One figure per stage: the total loss and each part's loss, smoothed with a rolling mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    for stage, h in histories.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for col in sorted(c for c in h.columns if c.startswith("loss.")):
            part = h[["step", col]].dropna()
            if len(part):
                ax.plot(part["step"], part[col].rolling(smooth, min_periods=1).mean(), lw=0.8, label=col[5:])
        ax.plot(h["step"], h["loss"].rolling(smooth, min_periods=1).mean(), color="black", lw=1.6, label="total")
        ax.set(title=f"{stage} loss (rolling mean of {smooth})", xlabel="step", ylabel="loss")
        ax.set_yscale("log")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        figs[f"{stage}.png"] = fig
    return figs


def confusion_figures(details: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One confusion-matrix figure per classification task (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    for key, d in details.items():
        if "confusion" not in d:
            continue
        cm = np.asarray(d["confusion"], dtype=float)
        names = list(d.get("class_names") or range(len(cm)))
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        size = max(3.5, 0.45 * len(names) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set(title=f"{key} (accuracy {np.trace(cm) / max(cm.sum(), 1):.3f})", xlabel="predicted", ylabel="true")
        fig.tight_layout()
        figs[f"{key}.png"] = fig
    return figs

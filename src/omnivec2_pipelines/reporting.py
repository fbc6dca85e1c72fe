"""Human-readable evaluation report: Markdown metrics and linear-probe tables, loss curves, confusion matrices.

Pure pandas/matplotlib (no Kedro); the evaluation pipeline's ``report`` node calls these.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from omnivec2_pipelines.params_schema import STAGES
from omnivec2_pipelines.tasks.base import LOWER_IS_BETTER, METRIC_UNITS
from omnivec2_pipelines.training.scores import VS_BASELINE

#: The unit of each metric name (``training.evaluation.metric_units`` refines "target" per task; the
#: evaluation details say it for every task they list).
DEFAULT_UNITS = METRIC_UNITS

UNITS_LEGEND = (
    "Units: `fraction (0-1)` and `0-1` are shares (1 = perfect); `ratio` is the mean of abs(error) / target. "
    "`target` (`target^2` for squared errors) is the task target's own unit, de-standardised with the train "
    "mean/std the tokenizer stored: depth as in the depth files (disparity in pixels for the embedded "
    "stereo_motorcycle data), tabular and infrared regression in the target column's unit. `tokenized target` "
    "is the target as tokenization wrote it when no scale is stored (time-series forecasting: z-scores of "
    "each series and channel, from its context window). `z-score^2` is the squared error of the standardised "
    "target, the scale of the training loss (`mse_standardized` = (rmse / std)^2).")


#: What a metric key's third part names when the value is not the trained model's: the classical baseline
#: (``<modality>.<task>.baseline.<metric>``), a linear probe (``<modality>.<task>.probe.<stage>.<metric>``) or
#: the model-minus-baseline difference with its bootstrap interval (``<modality>.<task>.vs_baseline.<metric>.*``).
OTHER_SOURCES = ("baseline", "probe", VS_BASELINE)


def metric_unit(key: str, details: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The unit of the metric ``"<modality>.<task>[.baseline | .probe.<stage>].<metric>"`` (from ``details``
    when it says)."""
    parts = key.split(".")
    metric = parts[-1]
    units = ((details or {}).get(f"{parts[0]}.{parts[1]}") or {}).get("units") or {}
    return str(units.get(metric) or DEFAULT_UNITS.get(metric, ""))


def metrics_table(metrics: Mapping[str, float],
                  details: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (modality, task, metric): its unit, model value, baseline value, which is better, and
    (where the evaluation computed it: the main metric, ``evaluation.bootstrap``) the 95 % paired-bootstrap
    interval of model minus baseline (``ci_low``, ``ci_high``; NaN elsewhere).

    Args:
        metrics: Flat ``"<modality>.<task>[.baseline].<metric>"`` values (``metrics.json``; the probes'
            keys are left to :func:`probe_table`).
        details: Evaluation details (``evaluation_details.json``); their ``units`` name each metric's
            unit, otherwise :data:`DEFAULT_UNITS` does.
    """
    rows = []
    for key, value in sorted(metrics.items()):
        parts = key.split(".")
        if len(parts) > 3 and parts[2] in OTHER_SOURCES:
            continue
        modality, task, metric = parts[0], parts[1], ".".join(parts[2:])
        base = metrics.get(f"{modality}.{task}.baseline.{metric}")
        better = None
        if base is not None and np.isfinite(base) and np.isfinite(value):
            better = "model" if (value < base if metric in LOWER_IS_BETTER else value > base) else (
                "tie" if value == base else "baseline")
        ci = [metrics.get(f"{modality}.{task}.{VS_BASELINE}.{metric}.{k}", np.nan) for k in ("ci_low", "ci_high")]
        rows.append({"modality": modality, "task": task, "metric": metric, "unit": metric_unit(key, details),
                     "model": value, "baseline": base, "better": better or "", "ci_low": ci[0], "ci_high": ci[1]})
    return pd.DataFrame(rows, columns=["modality", "task", "metric", "unit", "model", "baseline", "better",
                                       "ci_low", "ci_high"])


def _ci_cell(low: float, high: float) -> str:
    """The report's interval cell: ``[low, high]``, marked when it excludes 0 (the split is sure which is
    better); empty without an interval."""
    if pd.isna(low) or pd.isna(high):
        return ""
    sure = " (excludes 0)" if low > 0 or high < 0 else ""
    return f"[{low:+.4g}, {high:+.4g}]{sure}"


def probe_table(metrics: Mapping[str, float],
                details: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (modality, task, metric) with linear-probe values: its unit, the baseline on raw
    features, the probe of each stage's checkpoint (columns ``probe.<stage>``, in the method's order)
    and the trained model, and which of these is best.

    Args:
        metrics: Flat metrics (``metrics.json``) with ``"<modality>.<task>.probe.<stage>.<metric>"`` keys.
        details: Evaluation details, for the units (see :func:`metrics_table`).
    """
    probes: dict[tuple[str, str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split(".")
        if len(parts) == 5 and parts[2] == "probe":
            probes.setdefault((parts[0], parts[1], parts[4]), {})[parts[3]] = value
    order = {s: i for i, s in enumerate(STAGES)}  # the method's order, then any other name
    stages = sorted({s for v in probes.values() for s in v}, key=lambda s: (order.get(s, len(order)), s))
    columns = ["modality", "task", "metric", "unit", "baseline", *(f"probe.{s}" for s in stages), "model", "best"]
    rows = []
    for (m, t, metric), per_stage in sorted(probes.items()):
        row = {"modality": m, "task": t, "metric": metric, "unit": metric_unit(f"{m}.{t}.{metric}", details),
               "baseline": metrics.get(f"{m}.{t}.baseline.{metric}"),
               **{f"probe.{s}": per_stage.get(s) for s in stages}, "model": metrics.get(f"{m}.{t}.{metric}")}
        values = {c: row[c] for c in columns[4:-1] if row[c] is not None and np.isfinite(row[c])}
        pick = min if metric in LOWER_IS_BETTER else max
        rows.append({**row, "best": pick(values, key=values.__getitem__) if values else ""})
    return pd.DataFrame(rows, columns=columns)


def _probe_lines(metrics: Mapping[str, float], details: Mapping[str, Mapping[str, Any]] | None,
                 split: str) -> list[str]:
    """The report's linear-probe section (nothing when ``metrics`` has no probe values)."""
    table = probe_table(metrics, details)
    if table.empty:
        return []
    values = list(table.columns[4:-1])
    lines = ["", "## Linear probes", "",
             f"Frozen-feature linear probes of each stage's checkpoint (`probe.<stage>`): the task kind's classical "
             f"model (logistic regression for classification, ridge for regression) fitted on the train split's g "
             f"features (mean over tokens; per token for dense regression, per point for segmentation), scored on "
             f"`{split}`. `baseline`: the same kind of model on raw features; `model`: the trained heads. "
             f"**Bold**: the best in the row.", "",
             "| modality | task | metric | unit | " + " | ".join(values) + " |",
             "|---|---|---|---|" + "---:|" * len(values)]
    for r in table.to_dict("records"):
        cells = ["" if r[c] is None or pd.isna(r[c]) else (f"**{r[c]:.4f}**" if c == r["best"] else f"{r[c]:.4f}")
                 for c in values]
        lines.append(f"| {r['modality']} | {r['task']} | {r['metric']} | {r['unit']} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(metrics: Mapping[str, float], histories: Mapping[str, pd.DataFrame],
                    split: str = "test", details: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The report as Markdown: metrics (with their units) beside baselines, the linear probes of the stages'
    checkpoints (when ``metrics`` has any), then per-stage training summaries."""
    table = metrics_table(metrics, details)
    lower = ", ".join(sorted(LOWER_IS_BETTER))
    lines = ["# OmniVec2 evaluation report", "",
             f"Held-out split: `{split}`. Baselines are classical models (logistic / ridge regression) fitted on "
             f"the train split of the same arrays. Lower is better for {lower}; higher for the others.", "",
             UNITS_LEGEND, "",
             "`model − baseline, 95% CI`: the paired-bootstrap interval of the difference of each task's main metric "
             "over the evaluated samples (`evaluation.bootstrap` resamples); where it contains 0, this split cannot "
             "tell the two apart.", "",
             "| modality | task | metric | unit | model | baseline | better | model − baseline, 95% CI |",
             "|---|---|---|---|---:|---:|---|---|"]
    for r in table.itertuples(index=False):
        base = "" if r.baseline is None or pd.isna(r.baseline) else f"{r.baseline:.4f}"
        lines.append(f"| {r.modality} | {r.task} | {r.metric} | {r.unit} | {r.model:.4f} | {base} | {r.better} "
                     f"| {_ci_cell(r.ci_low, r.ci_high)} |")
    lines += _probe_lines(metrics, details, split)
    lines += ["", "## Training", "",
              "| stage | steps | first loss | last loss (mean of last 10%) | best val score (step) | seconds |",
              "|---|---:|---:|---:|---:|---:|"]
    for stage, h in histories.items():
        if len(h):
            tail = max(1, len(h) // 10)
            best = ""
            if "val.score" in h and h["val.score"].notna().any():
                i = h["val.score"].idxmax()
                best = f"{h['val.score'][i]:.4f} ({int(h['step'][i]) + 1})"
            lines.append(f"| {stage} | {len(h)} | {h['loss'].iloc[0]:.4f} | {h['loss'].tail(tail).mean():.4f} | "
                         f"{best} | {h['elapsed_s'].iloc[-1]:.0f} |")
    lines += ["", "Val score: pretraining, minus the mean masked-reconstruction loss on val rows; multitask, the mean "
              "normalised score of every task's main metric on val rows against its baseline (positive = better "
              "than the baseline). Each stage keeps the weights of its best val step (`trainer.select_best`); with "
              "`trainer.select_window` N > 1, of the step that ends the best mean of N evaluations, which can differ "
              "from the single best score in the table (the checkpoint's `meta.training.chosen_step` says which)."]
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
        ax.legend(fontsize=6, ncol=2, loc="upper left")
        if "val.score" in h and h["val.score"].notna().any():  # validation beside the training loss
            val = h[["step", "val.score"]].dropna()
            ax2 = ax.twinx()
            ax2.plot(val["step"], val["val.score"], color="tab:red", marker="o", ms=3, lw=1.2, label="val score")
            best = val.loc[val["val.score"].idxmax()]
            ax2.axvline(best["step"], color="tab:red", ls=":", lw=1)
            ax2.set_ylabel("val score (higher is better)", color="tab:red")
            ax2.legend(fontsize=6, loc="upper right")
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
        names = [str(n) for n in (d.get("class_names") or range(len(cm)))]
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        size = max(3.5, 0.45 * len(names) + 2)
        fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        # the task on one line, the accuracy on the next: short lines, centred over the figure
        ax.set(xlabel="predicted", ylabel="true")
        fig.suptitle(f"{key}\naccuracy {np.trace(cm) / max(cm.sum(), 1):.3f} ({int(cm.sum())} samples)",
                     fontsize=9)
        _fit_texts(fig)
        figs[f"{key}.png"] = fig
    return figs


def _fit_texts(fig: Any, pad_in: float = 0.15) -> None:
    """Widen/heighten ``fig`` until every title and label lies inside it (long names, many classes)."""
    for _ in range(3):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        bbox = fig.get_tightbbox(renderer)  # in inches, everything drawn
        w, h = fig.get_size_inches()
        need_w = max(w, bbox.width + 2 * pad_in)
        need_h = max(h, bbox.height + 2 * pad_in)
        outside = bbox.x0 < 0 or bbox.y0 < 0 or bbox.x1 > w or bbox.y1 > h
        if not outside and need_w <= w and need_h <= h:
            return
        fig.set_size_inches(need_w + (0.2 if outside else 0), need_h + (0.2 if outside else 0))


# ------------------------------------------------------------------------------------------------ finetune


def _finetune_by_task(summary: Mapping[str, Any]) -> dict[str, dict[float, dict[str, Any]]]:
    """``{task: {fraction: {start: run row}}}`` from :func:`~omnivec2_pipelines.training.finetune.summarise`."""
    out: dict[str, dict[float, dict[str, Any]]] = {}
    for row in summary.get("runs", []):
        out.setdefault(row["task"], {}).setdefault(row["fraction"], {})[row["start"]] = row
    return out


def finetune_markdown(summary: Mapping[str, Any]) -> str:
    """One table per fine-tuned task: labelled fraction, train rows, the main metric from the checkpoint,
    from scratch and of the baseline fitted on the same rows (best in bold), then what changed in the network."""
    lines = ["# Fine-tuning", "",
             "Each row trains one model on the given share of the train rows (stratified by class, seeded) and "
             "scores it on the evaluated split; the baseline is fitted on the same rows.", ""]
    for task, by_fraction in sorted(_finetune_by_task(summary).items()):
        first = next(iter(next(iter(by_fraction.values())).values()))
        main, lower = first["main_metric"], first["direction"] == "min"
        starts = sorted({s for runs in by_fraction.values() for s in runs}, key=["pretrained", "scratch"].index)
        lines += [f"## {task} ({main} {'↓' if lower else '↑'})", "",
                  "| labelled fraction | train rows | " + " | ".join(starts) + " | baseline |",
                  "|---|---|" + "---|" * (len(starts) + 1)]
        for fraction, runs in sorted(by_fraction.items()):
            any_run = next(iter(runs.values()))
            vals = {s: runs[s]["model"].get(main) for s in starts if s in runs}
            vals["baseline"] = any_run["baseline"].get(main)
            known = [v for v in vals.values() if v is not None]
            best = (min if lower else max)(known) if known else None
            cells = [("**%.4g**" if v == best else "%.4g") % v if v is not None else "–"
                     for v in (vals.get(s) for s in [*starts, "baseline"])]
            lines.append(f"| {fraction:g} | {any_run['train_rows']} | " + " | ".join(cells) + " |")
        notes = []
        for runs in by_fraction.values():
            for row in (r for r in runs.values() if r["start"] == "pretrained"):  # scratch builds everything
                notes += [f"head {k} re-created ({why})" for k, why in row["recreated_heads"].items()]
                notes += [f"new tokenizer for {m}" for m in row["new_modalities"]]
                notes += [f"new head {k}" for k in row["new_heads"]]
        if notes:
            lines += ["", "Changes to the checkpoint's network: " + "; ".join(dict.fromkeys(notes)) + "."]
        lines.append("")
    return "\n".join(lines)


def finetune_figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Per task: the main metric against the labelled fraction, from the checkpoint and from scratch,
    with the baseline (fitted on the same rows) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    for task, by_fraction in sorted(_finetune_by_task(summary).items()):
        fractions = sorted(by_fraction)
        first = next(iter(by_fraction[fractions[0]].values()))
        main = first["main_metric"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for start, style in (("pretrained", "o-"), ("scratch", "s-")):
            pts = [(f, by_fraction[f][start]["model"].get(main)) for f in fractions if start in by_fraction[f]]
            if pts:
                ax.plot(*zip(*pts), style, label=start)
        base = [(f, next(iter(by_fraction[f].values()))["baseline"].get(main)) for f in fractions]
        base = [(f, v) for f, v in base if v is not None]
        if base:
            ax.plot(*zip(*base), "k--", lw=1, label="baseline")
        if len(fractions) > 1:
            ax.set_xscale("log")
        ax.set(title=task, xlabel="labelled fraction of train", ylabel=main)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs[f"{task}.png"] = fig
    return figs

"""Fine-tuning a trained network on (modality, task) pairs, and the label-efficiency curve (pure torch).

One fine-tuning run starts from a checkpoint (or, for the comparison, from a fresh network of the
same architecture), adapts it to the data it is given and trains it with the one trainer:

* a modality the checkpoint has never seen gets a new tokenizer (and decoder); the shared body
  (f, reduction, fusion, g) comes from the checkpoint;
* a task the checkpoint has no head for gets a new head; a head whose kind, output size or class
  names differ from the data's is **re-created** (logged, and listed in the checkpoint's meta),
  never silently reused;
* ``mode: full`` trains everything, the body at ``lr * body_lr_scale`` (optionally with layer-wise
  decay ``layer_decay``: each block closer to the input gets that factor once more);
  ``mode: head`` freezes the body (a linear/MLP probe: only heads and new tokenizers train).

Every step is single stream (the path inference takes); the trainer's validation and best-step
selection apply as in every stage. :func:`label_efficiency` trains one model per labelled fraction
of the train split (stratified by class, seeded), from the checkpoint and optionally from scratch
with the same budget, and scores each on the evaluated split beside the classical baseline fitted
on the same labelled rows.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2, head_key
from omnivec2_pipelines.tasks import get_task_kind
from omnivec2_pipelines.training import augment
from omnivec2_pipelines.training.checkpoint import Checkpoint, load_init
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.evaluation import evaluate
from omnivec2_pipelines.training.objectives import Multitask, TaskData
from omnivec2_pipelines.training.params import FinetuneSpec, modality_augment
from omnivec2_pipelines.training.scores import normalised_score
from omnivec2_pipelines.training.stages import _data_meta, _run, attach_modalities, body_parameters
from omnivec2_pipelines.training.trainer import TrainerConfig
from omnivec2_pipelines.training.validation import TaskValidator

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ data


def _stratify_labels(bundle: ArrayBundle) -> np.ndarray | None:
    """Train labels of the bundle's first task (by name) whose targets are one class per sample, or None."""
    for name, spec in sorted(bundle.tasks.items()):
        if get_task_kind(spec.kind).sample_labels:
            return np.asarray(bundle.get("train", spec.target_key)).reshape(-1)
    return None


def label_subset_rows(n: int, labels: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``fraction`` of ``n`` train rows, stratified by ``labels`` when given.

    Every class keeps ``round(fraction * its count)`` rows, at least one; without labels the rows
    are a seeded random subset of ``max(1, round(fraction * n))``. ``fraction == 1`` keeps all.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"finetune.label_fractions: every fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=max(1, round(fraction * n)), replace=False))
    keep = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        keep.append(rng.choice(rows, size=max(1, round(fraction * len(rows))), replace=False))
    return np.sort(np.concatenate(keep))


def label_subset(bundle: ArrayBundle, fraction: float, seed: int) -> ArrayBundle:
    """The bundle with only ``fraction`` of its train rows (every ``train.*`` array, row-aligned)."""
    train_keys = [k for k in bundle.arrays if k.startswith("train.")]
    n = len(bundle.arrays[train_keys[0]]) if train_keys else 0
    if fraction == 1.0 or n == 0:
        return bundle
    rows = label_subset_rows(n, _stratify_labels(bundle), fraction, seed)
    arrays = {k: (np.asarray(v)[rows] if k.startswith("train.") else v) for k, v in bundle.arrays.items()}
    meta = copy.deepcopy(bundle.meta)
    meta.setdefault("splits", {})["train"] = int(len(rows))
    meta["label_fraction"] = fraction
    return ArrayBundle(arrays, meta)


# ------------------------------------------------------------------------------------------------ model


def _head_mismatch(model: OmniVec2, meta: Mapping[str, Any], modality: str, task: str, spec: TaskSpec) -> str | None:
    """Why the checkpoint's head of (modality, task) does not fit ``spec`` (None when it fits)."""
    old = model.cfg.heads[head_key(modality, task)]
    if old.kind != spec.kind:
        return f"kind {old.kind} -> {spec.kind}"
    if old.out_dim != spec.out_dim:
        return f"{old.out_dim} -> {spec.out_dim} outputs"
    old_spec = (meta.get("data", {}).get(modality, {}).get("tasks", {}) or {}).get(task)
    old_names = tuple((old_spec or {}).get("class_names") or ())
    if get_task_kind(spec.kind).sample_labels and old_names and old_names != tuple(spec.class_names):
        return f"class names {list(old_names)} -> {list(spec.class_names)}"
    return None


def adapt_model(model: OmniVec2, meta: Mapping[str, Any], bundles: Mapping[str, ArrayBundle],
                pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Fit ``model`` (in place) to the data of ``pairs``; returns what changed.

    Adds tokenizers for new modalities and heads for new tasks, re-creates heads that no longer
    fit (other classes, sizes or kind). The result lists ``new_modalities``, ``new_heads``,
    ``recreated_heads`` (``{key: reason}``) and ``reused_heads``.
    """
    new_modalities = sorted(m for m in bundles if m not in model.tokenizers)
    attach_modalities(model, bundles)
    changes: dict[str, Any] = {"new_modalities": new_modalities, "new_heads": [], "recreated_heads": {},
                               "reused_heads": []}
    for m, t in pairs:
        spec, key, name = bundles[m].tasks[t], head_key(m, t), f"{m}.{t}"
        if key in model.heads:
            why = _head_mismatch(model, meta, m, t, spec)
            if why is None:
                changes["reused_heads"].append(name)
                continue
            log.warning("finetune: the checkpoint's %s head does not fit the data (%s): re-created", name, why)
            changes["recreated_heads"][name] = why
            del model.heads[key]
            del model.cfg.heads[key]
        else:
            changes["new_heads"].append(name)
        model.add_head(HeadConfig(m, t, spec.kind, spec.out_dim))
    for key in changes["new_heads"]:
        log.info("finetune: new head %s", key)
    return changes


def fresh_like(model: OmniVec2, bundles: Mapping[str, ArrayBundle], seed: int) -> OmniVec2:
    """A freshly initialised network with ``model``'s architecture (sizes), for the scratch comparison."""
    sizes = {k: v for k, v in model.cfg.to_dict().items() if k not in ("tokenizers", "heads")}
    torch.manual_seed(seed)
    fresh = OmniVec2(ModelConfig.from_dict(sizes))
    attach_modalities(fresh, bundles)
    return fresh


def _layer_depth(name: str, model: OmniVec2) -> int | None:
    """Depth of a body parameter counted from the output (0 = g's last block), for layer-wise decay."""
    depth_f, depth_g = len(model.f.blocks), len(model.g.blocks)
    total = depth_f + depth_g + 2  # tokenizers + f blocks + reduce/fusion + g blocks
    parts = name.split(".")
    if parts[0] == "g":
        return depth_g - 1 - int(parts[2]) if parts[1] == "blocks" else 0
    if parts[0] in ("fusion", "reduce"):
        return depth_g
    if parts[0] == "f":
        return depth_g + 1 + (depth_f - 1 - int(parts[2])) if parts[1] == "blocks" else depth_g + 1
    if parts[0] in ("tokenizers", "modality_embed"):
        return total - 1
    return None


class FinetuneObjective(Multitask):
    """Single-stream steps over the fine-tuned pairs, with the learning rate of each part scaled.

    Args:
        tasks: The (modality, task) pairs and their (possibly subsampled) training rows.
        batch_size: Samples per step (half from each of two pairs when they span two modalities).
        label_smoothing: As in multitask.
        scales: ``{parameter name: factor}`` (0 freezes it); names not listed train at factor 1.
    """

    name = "finetune"

    def __init__(self, tasks: list[TaskData], batch_size: int, label_smoothing: float,
                 scales: Mapping[str, float]) -> None:
        super().__init__(tasks, batch_size, single_stream=1.0, label_smoothing=label_smoothing, sampling="size",
                         temperature=2.0, lr_scales=scales)


def lr_scales(model: OmniVec2, spec: FinetuneSpec, known_modalities: set[str]) -> dict[str, float]:
    """Learning-rate factor of every body parameter (:func:`~omnivec2_pipelines.training.stages.body_parameters`:
    f, reduction, fusion, g, and the tokenizers of modalities the checkpoint already had): ``body_lr_scale``
    (× ``layer_decay`` per block from the top) in ``full`` mode, 0 (frozen) in ``head`` mode; heads,
    decoders and new tokenizers are not listed (factor 1)."""
    out = {}
    for name in body_parameters(model, known_modalities):
        if spec.mode == "head":
            out[name] = 0.0
            continue
        depth = _layer_depth(name, model) if spec.layer_decay else None
        out[name] = spec.body_lr_scale * (spec.layer_decay ** depth if depth is not None else 1.0)
    return out


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class FinetuneResult:
    """One fine-tuning run: what it trained, from what, and how it scored."""

    pairs: list[tuple[str, str]]
    fraction: float
    start: str                      # "pretrained" | "scratch"
    checkpoint: Checkpoint
    history: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)


def finetune_once(init: Checkpoint, bundles: Mapping[str, ArrayBundle], pairs: list[tuple[str, str]],
                  spec: FinetuneSpec, trainer_params: Mapping[str, Any],
                  modality_params: Mapping[str, Mapping[str, Any]] | None, fraction: float = 1.0,
                  start: str = "pretrained", split: str = "test") -> FinetuneResult:
    """Fine-tune a copy of ``init`` (or a fresh network like it, ``start="scratch"``) on ``pairs``
    with ``fraction`` of their train rows, then score it on ``split`` beside the baseline."""
    tcfg = TrainerConfig.from_params(trainer_params, spec.trainer)
    mods = sorted({m for m, _ in pairs})
    data = {m: label_subset(bundles[m], fraction, tcfg.seed) for m in mods}
    if start == "scratch":
        model = fresh_like(init.model, data, tcfg.seed)
        known: set[str] = set()
        init_meta: Mapping[str, Any] = {}
    else:
        model = copy.deepcopy(init.model)
        known = set(model.tokenizers)
        init_meta = init.meta
    torch.manual_seed(tcfg.seed)  # new tokenizers and heads start from seeded weights
    changes = adapt_model(model, init_meta, data, pairs)
    aug = modality_augment({"augment": spec.augment}, modality_params, mods)
    tasks = []
    for i, (m, t) in enumerate(pairs):
        ts = data[m].tasks[t]
        src = BatchSource(data[m].get("train", ts.input_key), data[m].get("train", ts.target_key), tcfg.seed + i,
                          f"{m}.train.{ts.input_key}")
        tasks.append(TaskData(m, t, ts.kind, src, augment.for_task(aug.get(m, {}), ts.kind)))
    obj = FinetuneObjective(tasks, spec.batch_size, spec.label_smoothing, lr_scales(model, spec, known))
    validator = TaskValidator.from_bundles(pairs, data, tcfg.eval_samples, tcfg.seed) if tcfg.eval_every else None
    tag = f"finetune[{'+'.join(f'{m}.{t}' for m, t in pairs)} {start} {fraction:g}]"
    log.info("%s: %s mode, %d train rows", tag, spec.mode, sum(len(t.source) for t in tasks))
    ckpt, history = _run("finetune", model, obj, tcfg, data, {**spec.as_dict(), "fraction": fraction,
                                                               "start": start}, validator)
    ckpt.meta.update({"stage": "finetune", "finetune": {
        "pairs": [f"{m}.{t}" for m, t in pairs], "fraction": fraction, "start": start, "mode": spec.mode,
        "body_lr_scale": spec.body_lr_scale, "layer_decay": spec.layer_decay,
        "init": None if start == "scratch" else {"stage": init.meta.get("stage"), "path": spec.init},
        **changes}, "data": _data_meta(data)})
    wanted = {f"{m}.{t}." for m, t in pairs}
    metrics = {k: v for k, v in evaluate(ckpt.model, data, split, 256, tcfg.device, True, tcfg.seed).items()
               if any(k.startswith(w) for w in wanted)}
    history = history.assign(run="+".join(f"{m}.{t}" for m, t in pairs), fraction=fraction, start=start)
    return FinetuneResult(list(pairs), fraction, start, ckpt, history, metrics)


def run_groups(pairs: list[tuple[str, str]], per_task: bool) -> list[list[tuple[str, str]]]:
    """The pair groups that each get their own model: one per pair, or all pairs together."""
    return [[p] for p in pairs] if per_task else [list(pairs)]


def label_efficiency(init: Checkpoint, bundles: Mapping[str, ArrayBundle], pairs: list[tuple[str, str]],
                     spec: FinetuneSpec, trainer_params: Mapping[str, Any],
                     modality_params: Mapping[str, Mapping[str, Any]] | None = None,
                     split: str = "test") -> list[FinetuneResult]:
    """Every (pair group, labelled fraction, start) run of the fine-tuning block, in order."""
    starts = ["pretrained", "scratch"] if spec.scratch else ["pretrained"]
    out = []
    for group in run_groups(pairs, spec.per_task):
        for fraction in spec.label_fractions:
            for start in starts:
                out.append(finetune_once(init, bundles, group, spec, trainer_params, modality_params, fraction,
                                         start, split))
    return out


def summarise(results: list[FinetuneResult], bundles: Mapping[str, ArrayBundle]) -> dict[str, Any]:
    """JSON summary: one row per (task, fraction, start) with every metric, the baseline's metrics on
    the same labelled rows, the main metric and the normalised score (positive: ahead of the baseline)."""
    rows = []
    for r in results:
        for m, t in r.pairs:
            kind = get_task_kind(bundles[m].tasks[t].kind)
            ours, base = split_metrics(r.metrics, f"{m}.{t}")
            main = kind.main_metric
            score = normalised_score(ours[main], base[main], kind.direction) if main in ours and main in base \
                else None
            ft = r.checkpoint.meta["finetune"]
            rows.append({"task": f"{m}.{t}", "fraction": r.fraction, "start": r.start,
                         "train_rows": int(r.checkpoint.meta["data"][m]["splits"].get("train", 0)),
                         "main_metric": main, "direction": kind.direction, "model": ours, "baseline": base,
                         "score": score, "chosen_step": r.checkpoint.meta.get("training", {}).get("chosen_step"),
                         **{k: ft[k] for k in ("new_modalities", "new_heads", "recreated_heads")}})
    return {"runs": rows}


def split_metrics(metrics: Mapping[str, float], task: str) -> tuple[dict[str, float], dict[str, float]]:
    """``{"<task>.<metric>": v, "<task>.baseline.<metric>": v}`` → (model's, baseline's) by metric name."""
    ours, base = {}, {}
    for k, v in metrics.items():
        if not k.startswith(task + "."):
            continue
        name = k[len(task) + 1:]
        if name.startswith("baseline."):
            base[name.removeprefix("baseline.")] = v
        else:
            ours[name] = v
    return ours, base


def run_name(result: FinetuneResult) -> str:
    """``<modality>.<task>[+...]__<start>__<fraction>``: the checkpoint's folder name."""
    return f"{'+'.join(f'{m}.{t}' for m, t in result.pairs)}__{result.start}__{result.fraction:g}"


def finetune_stage(init: Checkpoint | None, bundles: Mapping[str, ArrayBundle], finetune_params: Mapping[str, Any],
                   trainer_params: Mapping[str, Any],
                   modality_params: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> tuple[dict[str, Checkpoint], pd.DataFrame, dict[str, Any]]:
    """The whole ``finetune`` block: every run, its checkpoint, history and the results summary.

    Args:
        init: The checkpoint to start from when ``finetune.init`` is not set (the run's multitask one).
        bundles: Tokenized data of the modalities fine-tuned on.
        finetune_params: The ``finetune`` block.
        trainer_params: The ``trainer`` block (``finetune``'s trainer keys override it).
        modality_params: ``{modality: {"augment": ...}}`` of the modalities' own blocks.
    """
    from omnivec2_pipelines.training.params import finetune_spec
    from omnivec2_pipelines.training.stages import select_tasks

    spec = finetune_spec(finetune_params, trainer_params, enabled=list(bundles))
    missing = [m for m in spec.modalities if m not in bundles]
    if missing:
        raise ValueError(f"finetune: no tokenized data for {missing} (finetune.modalities {list(spec.modalities)})")
    if spec.init:
        init = load_init(spec.init, "finetune.init")
    elif init is None:
        raise ValueError("finetune: no checkpoint to start from: set finetune.init or run the multitask stage")
    data = {m: bundles[m] for m in spec.modalities}
    pairs = select_tasks(data, spec.tasks)
    log.info("finetune: %d run(s) from %s (%s), tasks %s, fractions %s%s", len(run_groups(pairs, spec.per_task))
             * len(spec.label_fractions) * (2 if spec.scratch else 1), spec.init or "the multitask checkpoint",
             init.meta.get("stage", "?"), [f"{m}.{t}" for m, t in pairs], list(spec.label_fractions),
             ", and from scratch" if spec.scratch else "")
    results = label_efficiency(init, data, pairs, spec, trainer_params, modality_params, spec.split)
    summary = {**summarise(results, data), "init": spec.init or "multitask_checkpoint",
               "init_stage": init.meta.get("stage"), "split": spec.split, "mode": spec.mode}
    history = pd.concat([r.history for r in results], ignore_index=True)
    return {run_name(r): r.checkpoint for r in results}, history, summary

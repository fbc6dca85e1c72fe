"""The study: what each stage of the method buys, on the run's own tokenized data.

A study trains a declared set of *variants* of the recipe (which stages run, plus any parameter
overrides) for every seed, each through the project's real stage and evaluation pipelines on an
in-memory catalog (:func:`~omnivec2_pipelines.pipelines.nested.run_nested`), and compares their
main metric per task beside the classical baseline.

* **Caching.** Every trained stage is stored under ``study.cache_dir`` by a key over the data, the
  model and trainer settings and the chain of stages (with their parameters) that produced it, so
  variants sharing a prefix (``unimodal`` and ``full`` share stage 1 for one seed) train it once.
* **Resuming.** Each finished (variant, seed) run's metrics are written as it completes; a study
  started again skips them (and an interrupted stage resumes from its resume state).
* **Normalised score** of a task, defined once in
  :func:`~omnivec2_pipelines.training.scores.normalised_score`: ``(metric - baseline) /
  |baseline|`` for metrics where higher is better, ``(baseline - metric) / |baseline|`` where lower
  is better, so positive always means better than the baseline; clipped to [-1, 1].
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from omnivec2_pipelines.params_schema import STAGE_MODALITY_KEYS, STAGES, modality_params, unknown_key_error
from omnivec2_pipelines.training.scores import MAIN_METRIC, better, normalised_score
from omnivec2_pipelines.utils import atomic_path

__all__ = ["MAIN_METRIC", "StudyRunner", "StudySpec", "Variant", "better", "normalised_score", "run_study",
           "summarise", "validate_study_params"]

if TYPE_CHECKING:
    from kedro.pipeline import Pipeline

    from omnivec2_pipelines.modalities.base import ArrayBundle
    from omnivec2_pipelines.training.checkpoint import Checkpoint

log = logging.getLogger(__name__)

STUDY_KEYS = ("variants", "seeds", "budget", "split", "cache_dir", "pairs")
VARIANT_KEYS = ("stages", "params", "single_task", "description")
OVERRIDE_BLOCKS = ("model", "trainer", *STAGES)
#: The keys of a modality's block a variant may override: those the stages read (the tokenized data stays as it is).
MODALITY_OVERRIDE_KEYS = tuple(dict.fromkeys(k for keys in STAGE_MODALITY_KEYS.values() for k in keys))
DEFAULT_PAIRS = (("full", "scratch"), ("full", "unimodal"), ("full", "single_task"))


@dataclass(frozen=True)
class Variant:
    """One recipe of a study.

    Attributes:
        name: Its name in the study's tables.
        stages: The stages it runs, in the method's order, ending with ``multitask``; the first one
            starts from a freshly initialised network (stage 1 always does).
        params: Parameter overrides, ``{block: {key: value}}`` for ``model``, ``trainer``, the
            three stages and the modalities (their ``mask_ratio`` and ``augment``), merged key by key
            into the run's parameters.
        single_task: Train one network per (modality, task), single stream, each with the number
            of training samples that task gets in the multitask stage.
        description: Free text for the report.
    """

    name: str
    stages: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    single_task: bool = False
    description: str = ""


@dataclass(frozen=True)
class StudySpec:
    """The ``study`` parameters (see ``conf/base/parameters_study.yml``)."""

    variants: dict[str, Variant]
    seeds: tuple[int, ...] = (0,)
    budget: float = 1.0
    split: str = "test"
    cache_dir: str = "data/07_model_output/study"
    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_params(cls, p: Any) -> "StudySpec":
        """Parse and check the ``study`` block; raises ``ValueError`` naming the key."""
        if not isinstance(p, Mapping):
            raise ValueError(f"'study' must be a mapping, got {type(p).__name__}")
        for key in p:
            if key not in STUDY_KEYS:
                raise unknown_key_error(str(key), STUDY_KEYS, "study")
        variants = p.get("variants")
        if not isinstance(variants, Mapping) or not variants:
            raise ValueError(f"study.variants must be a non-empty mapping name -> variant, got {variants!r}")
        # `name: null` (e.g. in conf/local/) drops a variant that a lower config layer declares
        parsed = {str(name): _variant(str(name), v) for name, v in variants.items() if v is not None}
        if not parsed:
            raise ValueError("study.variants: every variant is null; declare at least one")
        dropped = {str(name) for name, v in variants.items() if v is None}
        seeds = p.get("seeds", [0])
        if (not isinstance(seeds, (list, tuple)) or not seeds
                or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds)):
            raise ValueError(f"study.seeds must be a non-empty list of integers, got {seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"study.seeds has repeated seeds: {list(seeds)}")
        budget = p.get("budget", 1.0)
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
            raise ValueError(f"study.budget must be a number > 0 (the factor on every stage's steps), got {budget!r}")
        split = p.get("split", "test")
        if split not in ("train", "val", "test"):
            raise ValueError(f"study.split must be one of train, val, test; got {split!r}")
        cache_dir = p.get("cache_dir", "data/07_model_output/study")
        if not isinstance(cache_dir, str) or not cache_dir:
            raise ValueError(f"study.cache_dir must be a non-empty path, got {cache_dir!r}")
        pairs = p.get("pairs")
        if pairs is None:
            pairs = [pair for pair in DEFAULT_PAIRS if pair[0] in parsed and pair[1] in parsed]
        pairs_t: list[tuple[str, str]] = []
        for pair in pairs:
            if isinstance(pair, (list, tuple)) and dropped.intersection(map(str, pair)):
                continue  # a comparison with a variant that was set to null goes with it
            if not isinstance(pair, (list, tuple)) or len(pair) != 2 or any(x not in parsed for x in pair):
                raise ValueError(f"study.pairs: each entry must be two variant names of {sorted(parsed)}, "
                                 f"got {pair!r}")
            pairs_t.append((str(pair[0]), str(pair[1])))
        return cls(parsed, tuple(seeds), float(budget), split, cache_dir, tuple(pairs_t))


def _variant(name: str, v: Any) -> Variant:
    where = f"study.variants.{name}"
    if not isinstance(v, Mapping):
        raise ValueError(f"{where} must be a mapping with 'stages' (and optional 'params', 'single_task'), "
                         f"got {v!r}")
    for key in v:
        if key not in VARIANT_KEYS:
            raise unknown_key_error(str(key), VARIANT_KEYS, where)
    stages = v.get("stages", list(STAGES))
    if isinstance(stages, str):
        stages = [stages]
    if not isinstance(stages, (list, tuple)) or not stages or any(s not in STAGES for s in stages):
        raise ValueError(f"{where}.stages must be a non-empty list of {list(STAGES)}, got {stages!r}")
    if list(stages) != sorted(set(stages), key=STAGES.index) or stages[-1] != "multitask":
        raise ValueError(f"{where}.stages must follow the method's order without repeats and end with "
                         f"'multitask', got {list(stages)}")
    params = v.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{where}.params must be a mapping block -> {{key: value}}, got {params!r}")
    from omnivec2_pipelines.modalities.base import registered_modalities

    modalities = registered_modalities()
    for block, over in params.items():
        if block not in OVERRIDE_BLOCKS and block not in modalities:
            raise unknown_key_error(str(block), [*OVERRIDE_BLOCKS, *modalities], f"{where}.params")
        if not isinstance(over, Mapping):
            raise ValueError(f"{where}.params.{block} must be a mapping, got {over!r}")
        if block in modalities:
            for key in over:
                if key not in MODALITY_OVERRIDE_KEYS:
                    raise unknown_key_error(str(key), MODALITY_OVERRIDE_KEYS, f"{where}.params.{block}")
    single = v.get("single_task", False)
    if not isinstance(single, bool):
        raise ValueError(f"{where}.single_task must be true or false, got {single!r}")
    return Variant(name, tuple(stages), copy.deepcopy(dict(params)), single, str(v.get("description", "")))


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` key by key (mappings recursively); returns ``base``."""
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
            base[k] = _merge(dict(base[k]), v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def run_params(params: Mapping[str, Any], variant: Variant, seed: int, budget: float) -> dict[str, Any]:
    """The parameters one (variant, seed) run trains with: overrides merged, seed set, steps scaled."""
    p = _merge(copy.deepcopy(dict(params)), variant.params)
    trainer = p.setdefault("trainer", {})
    for stage in STAGES:
        block = p.setdefault(stage, {})
        block["seed"] = seed
        steps = block.get("steps", trainer.get("steps", 300))
        block["steps"] = max(1, int(round(steps * budget)))
    return p


def validate_study_params(study: Any, params: Mapping[str, Any]) -> StudySpec:
    """Every problem of a study that needs no data, raised before any training, naming the key.

    Checks the ``study`` block itself and, for every variant and seed, the stage, trainer and model
    parameters it would train with (unknown keys, ranges, types).
    """
    from omnivec2_pipelines.models.config import ModelConfig
    from omnivec2_pipelines.training.params import validate_stage_params

    spec = StudySpec.from_params(study)
    modalities = list(params.get("modalities") or [])
    for v in spec.variants.values():
        p = run_params(params, v, spec.seeds[0], spec.budget)
        try:
            for stage in v.stages:
                validate_stage_params(stage, p.get(stage) or {}, p.get("trainer") or {}, modalities,
                                      p.get("model") or {} if stage == "pretrain_unimodal" else None,
                                      modality_params(p, modalities, stage))
            ModelConfig.from_dict({k: x for k, x in (p.get("model") or {}).items() if k not in ("tokenizers", "heads")})
        except (TypeError, ValueError) as e:
            raise ValueError(f"study.variants.{v.name}: {e}") from e
    return spec


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return float(statistics.fmean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _write_json(path: Path, doc: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))


class StudyRunner:
    """Runs every (variant, seed) of a study with caching of shared stage prefixes.

    Args:
        spec: The study.
        params: All run parameters.
        bundles: Tokenized data by modality.
        pipelines: The project's pipelines (the stages and ``evaluation`` are used).
    """

    def __init__(self, spec: StudySpec, params: Mapping[str, Any], bundles: Mapping[str, ArrayBundle],
                 pipelines: Mapping[str, Pipeline]) -> None:
        from omnivec2_pipelines.training.resume import fingerprint

        self.spec, self.params, self.bundles, self.pipelines = spec, params, bundles, pipelines
        self.cache = Path(spec.cache_dir)
        tensors = [(f"{m}/{k}", a) for m, b in sorted(bundles.items()) for k, a in sorted(b.arrays.items())]
        self.data_key = fingerprint({m: b.meta for m, b in sorted(bundles.items())}, tensors)
        self.trained: list[dict[str, Any]] = []  # stages trained by this invocation
        self.baseline_file = self.cache / f"baseline-{_digest([self.data_key, spec.split])}.json"
        self.baseline: dict[str, dict[str, float]] = (json.loads(self.baseline_file.read_text())
                                                      if self.baseline_file.is_file() else {})

    # ---- stage chains --------------------------------------------------------------------------------
    def _chain_keys(self, stages: tuple[str, ...], p: Mapping[str, Any]) -> list[str]:
        from dataclasses import asdict

        from omnivec2_pipelines.models.config import ModelConfig
        from omnivec2_pipelines.training.config import TrainerConfig
        from omnivec2_pipelines.training.stages import _NOT_IN_FINGERPRINT

        # the resolved settings, defaults filled in: writing out a key at its default value keeps the cached
        # stages, and a changed default retrains them. A new ModelConfig / TrainerConfig field changes every
        # key once (safe: a stale stage is never reused)
        trainer = {k: v for k, v in asdict(TrainerConfig.from_params(p.get("trainer") or {})).items()
                   if k not in _NOT_IN_FINGERPRINT}
        model = ModelConfig.from_dict({k: v for k, v in (p.get("model") or {}).items()
                                       if k not in ("tokenizers", "heads")}).to_dict()
        model = {k: v for k, v in model.items() if k not in ("tokenizers", "heads")}
        base = {"data": self.data_key, "model": model, "trainer": trainer,
                "init": "fresh" if stages[0] != "pretrain_unimodal" else "stage1"}
        chain = [[s, p.get(s), modality_params(p, sorted(self.bundles), s)] for s in stages]
        return [_digest({**base, "chain": chain[:i + 1]}) for i in range(len(stages))]

    def _train_chain(self, stages: tuple[str, ...], p: dict[str, Any],
                     run: str) -> tuple[Checkpoint, list[dict[str, Any]]]:
        """The final checkpoint of ``stages``, training only what no earlier run cached."""
        from omnivec2_pipelines.pipelines.nested import run_nested
        from omnivec2_pipelines.training.checkpoint import Checkpoint
        from omnivec2_pipelines.training.stages import fresh_checkpoint

        keys = self._chain_keys(stages, p)
        done = max((i + 1 for i, k in enumerate(keys) if (self.cache / "checkpoints" / k / "config.json").is_file()),
                   default=0)
        used = [{"stage": s, "key": k, "trained": False} for s, k in zip(stages[:done], keys[:done])]
        ckpt = None
        if done:
            ckpt = Checkpoint.load(self.cache / "checkpoints" / keys[done - 1])
        elif stages[0] != "pretrain_unimodal":
            ckpt = fresh_checkpoint(self.bundles, p.get("model") or {}, p[stages[0]]["seed"])
        for stage, key in zip(stages[done:], keys[done:]):
            inputs: dict[str, Any] = {f"{m}.tokenized": b for m, b in self.bundles.items()}
            if stage != "pretrain_unimodal":
                inputs[f"{STAGES[STAGES.index(stage) - 1]}_checkpoint"] = ckpt
            t0 = time.perf_counter()
            log.info("study %s: training %s", run, stage)
            ckpt = run_nested(self.pipelines[stage], p, inputs)[f"{stage}_checkpoint"]
            seconds = time.perf_counter() - t0
            ckpt.save(self.cache / "checkpoints" / key)
            entry = {"stage": stage, "key": key, "trained": True, "seconds": round(seconds, 2)}
            used.append(entry)
            self.trained.append({**entry, "run": run})
        return ckpt, used

    def _evaluate(self, ckpt: Checkpoint, p: dict[str, Any]) -> dict[str, dict[str, float]]:
        """``{task: {metric: value}}`` of ``ckpt`` on the study's split; fills the baseline cache.

        Only the ``evaluate`` node runs: the study compares the variants' trained heads, so the
        evaluation's linear probes of the stages' checkpoints are left out (``probe_metrics={}``).
        """
        from omnivec2_pipelines.pipelines.nested import run_nested

        tasks = {f"{h.modality}.{h.task}" for h in ckpt.model.cfg.heads.values() if h.modality in self.bundles}
        ev = {**(p.get("evaluation") or {}), "split": self.spec.split, "bootstrap": 0,  # seeds give the study's spread
              "baselines": any(t not in self.baseline for t in tasks)}
        inputs = {"multitask_checkpoint": ckpt, "probe_metrics": {},
                  **{f"{m}.tokenized": b for m, b in self.bundles.items()}}
        flat = run_nested(self.pipelines["evaluation"].only_nodes("evaluate"), {**p, "evaluation": ev},
                          inputs)["metrics"]
        metrics: dict[str, dict[str, float]] = {}
        for key, value in flat.items():
            m, t, rest = key.split(".", 2)
            if rest.startswith("baseline."):
                self.baseline.setdefault(f"{m}.{t}", {})[rest.removeprefix("baseline.")] = float(value)
            else:
                metrics.setdefault(f"{m}.{t}", {})[rest] = float(value)
        if ev["baselines"]:
            _write_json(self.baseline_file, self.baseline)
        return metrics

    # ---- runs ----------------------------------------------------------------------------------------
    def _single_task_params(self, p: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """One parameter set per (modality, task): its share of multitask's samples, single stream."""
        from omnivec2_pipelines.training.params import stage_sampling
        from omnivec2_pipelines.training.sampling import SamplerItem, TaskSampler
        from omnivec2_pipelines.training.stages import select_tasks

        mt = p["multitask"]
        pairs = select_tasks(self.bundles, mt.get("tasks", "all"))
        items = [SamplerItem(m, f"{m}.{t}", len(self.bundles[m].get("train", self.bundles[m].tasks[t].input_key)))
                 for m, t in pairs]
        several = len({m for m, _ in pairs}) > 1
        # P(task takes part in a step) under multitask's own sampling; batch / 2P each time (one modality: all)
        per_step = 2 * mt.get("pairs_per_step", 1) if several else 1
        share = TaskSampler(items, per_step, *stage_sampling("multitask", mt)).inclusion()
        bs, steps = mt.get("batch_size", 64), mt["steps"]
        batch = bs // per_step
        out = []
        for (m, t), it in zip(pairs, items):
            q = copy.deepcopy(p)
            q["multitask"].update(tasks={m: [t]}, batch_size=max(1, batch), pairs_per_step=1,
                                  steps=max(1, int(round(steps * share[it.name]))))
            out.append((f"{m}.{t}", q))
        return out

    def run_one(self, variant: Variant, seed: int) -> dict[str, Any]:
        """Train and evaluate ``variant`` with ``seed`` (or load its stored result)."""
        name = f"{variant.name}/seed{seed}"
        p = run_params(self.params, variant, seed, self.spec.budget)
        p["trainer"]["resume_dir"] = str(self.cache / ".resume")  # an interrupted stage resumes
        jobs = self._single_task_params(p) if variant.single_task else [("all", p)]
        run_key = _digest([self.spec.split, [(j, self._chain_keys(variant.stages, q)) for j, q in jobs]])
        record_file = self.cache / "runs" / variant.name / f"seed{seed}.json"
        if record_file.is_file():
            record = json.loads(record_file.read_text())
            if record.get("key") == run_key:
                log.info("study %s: finished earlier, metrics loaded from %s", name, record_file)
                return {**record, "cached": True}
            log.info("study %s: its parameters or data changed since %s; running it again", name, record_file)
        t0 = time.perf_counter()
        metrics: dict[str, dict[str, float]] = {}
        stages: list[dict[str, Any]] = []
        for job, q in jobs:
            ckpt, used = self._train_chain(variant.stages, q, name if job == "all" else f"{name}/{job}")
            evaluated = self._evaluate(ckpt, q)
            metrics.update(evaluated if job == "all" else {job: evaluated[job]})
            stages += [{**u, "task": job} for u in used]
        record = {"variant": variant.name, "seed": seed, "key": run_key, "metrics": metrics, "stages": stages,
                  "seconds": round(time.perf_counter() - t0, 2)}
        _write_json(record_file, record)
        log.info("study %s: done in %.0f s", name, record["seconds"])
        return {**record, "cached": False}

    def run(self) -> list[dict[str, Any]]:
        """Every (variant, seed) run, seed by seed (so a quick look at seed 0 comes first)."""
        return [self.run_one(v, s) for s in self.spec.seeds for v in self.spec.variants.values()]


def task_kinds(bundles: Mapping[str, ArrayBundle]) -> dict[str, str]:
    """``{"<modality>.<task>": kind}`` of every task in the data."""
    return {f"{m}.{t}": spec.kind for m, b in sorted(bundles.items()) for t, spec in sorted(b.tasks.items())}


def summarise(spec: StudySpec, runs: list[dict[str, Any]], baseline: Mapping[str, Mapping[str, float]],
              kinds: Mapping[str, str]) -> dict[str, Any]:
    """The study's results document (``study.json``): per run, per variant (mean/std), scores, pairs."""
    variants: dict[str, dict[str, dict[str, Any]]] = {}
    for v in spec.variants:
        for task in sorted({t for r in runs if r["variant"] == v for t in r["metrics"]}):
            per_metric: dict[str, dict[str, float]] = {}
            for r in (r for r in runs if r["variant"] == v and task in r["metrics"]):
                for metric, value in r["metrics"][task].items():
                    per_metric.setdefault(metric, {})[str(r["seed"])] = value
            variants.setdefault(v, {})[task] = {
                metric: {"mean": mean_std(list(seeds.values()))[0], "std": mean_std(list(seeds.values()))[1],
                         "n": len(seeds), "seeds": seeds}
                for metric, seeds in sorted(per_metric.items())}
    main = {t: {"metric": MAIN_METRIC[k][0], "direction": MAIN_METRIC[k][1]} for t, k in kinds.items()
            if any(t in variants.get(v, {}) for v in spec.variants)}
    scores: dict[str, dict[str, float]] = {}
    for v, per_task in variants.items():
        for t, mm in main.items():
            value, base = per_task.get(t, {}).get(mm["metric"]), baseline.get(t, {}).get(mm["metric"])
            if value is not None and base is not None and all(map(math.isfinite, (value["mean"], base))):
                scores.setdefault(v, {})[t] = normalised_score(value["mean"], base, mm["direction"])
    pairs = []
    for a, b in spec.pairs:
        common = sorted(set(scores.get(a, {})) & set(scores.get(b, {})))
        wins = [t for t in common if better(variants[a][t][main[t]["metric"]]["mean"],
                                            variants[b][t][main[t]["metric"]]["mean"], main[t]["direction"])]
        pairs.append({"a": a, "b": b, "tasks": len(common), "a_better": len(wins), "a_better_on": wins,
                      "mean_score_a": statistics.fmean([scores[a][t] for t in common]) if common else float("nan"),
                      "mean_score_b": statistics.fmean([scores[b][t] for t in common]) if common else float("nan")})
    beats = {v: sum(s > 0 for s in per.values()) for v, per in scores.items()}
    return {"spec": {"variants": {n: {"stages": list(v.stages), "params": v.params, "single_task": v.single_task,
                                      "description": v.description} for n, v in spec.variants.items()},
                     "seeds": list(spec.seeds), "budget": spec.budget, "split": spec.split},
            "main_metric": main, "baseline": {t: dict(m) for t, m in sorted(baseline.items()) if t in main},
            "variants": variants, "normalised_score": scores,
            "mean_normalised_score": {v: statistics.fmean(s.values()) for v, s in scores.items() if s},
            "beats_baseline": beats, "pairs": pairs,
            "runs": [{k: r[k] for k in ("variant", "seed", "metrics", "stages", "seconds", "cached")} for r in runs]}


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def markdown(doc: Mapping[str, Any], seconds: float) -> str:
    """``study.md``: one row per task (baseline, each variant's main metric as mean ± std, best in bold)."""
    spec, names = doc["spec"], list(doc["spec"]["variants"])
    lines = ["# Study: what each stage of the method buys", "",
             f"Split `{spec['split']}`, seeds {spec['seeds']}, budget x{spec['budget']:g} on every stage's steps, "
             f"{len(doc['runs'])} run(s) ({sum(r['cached'] for r in doc['runs'])} loaded from earlier), "
             f"{seconds / 60:.1f} min.", "",
             "Each cell: the task's main metric, mean ± standard deviation over seeds (↑ higher is better, "
             "↓ lower is better); **bold** = best variant; the baseline is a logistic / ridge regression fitted "
             "on the same train split.", "",
             "| task | metric | baseline | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for task, mm in doc["main_metric"].items():
        metric, direction = mm["metric"], mm["direction"]
        means = {v: doc["variants"][v][task][metric] for v in names if task in doc["variants"].get(v, {})}
        best = (max if direction == "max" else min)(means, key=lambda v: means[v]["mean"]) if means else None
        cells = []
        for v in names:
            if v not in means:
                cells.append("–")
                continue
            cell = _fmt(means[v]["mean"]) + (f" ± {_fmt(means[v]['std'])}" if means[v]["n"] > 1 else "")
            cells.append(f"**{cell}**" if v == best else cell)
        base = doc["baseline"].get(task, {}).get(metric)
        lines.append(f"| {task} | {metric} {'↑' if direction == 'max' else '↓'} | "
                     f"{_fmt(base) if base is not None else '–'} | " + " | ".join(cells) + " |")
    lines += ["", "Normalised score per task: (metric − baseline) / |baseline|, signed so that positive is better "
              "than the baseline (lower-is-better metrics: (baseline − metric) / |baseline|), clipped to [−1, 1].",
              ""]
    for v in names:
        if v in doc["mean_normalised_score"]:
            lines.append(f"- `{v}`: beats the baseline on {doc['beats_baseline'][v]} of "
                         f"{len(doc['normalised_score'][v])} tasks; mean normalised score "
                         f"{doc['mean_normalised_score'][v]:+.3f}")
    if doc["pairs"]:
        lines += ["", "| comparison | tasks where the first is better | mean normalised score (first, second) |",
                  "|---|---|---|"]
        for pr in doc["pairs"]:
            lines.append(f"| `{pr['a']}` vs `{pr['b']}` | {pr['a_better']} of {pr['tasks']} | "
                         f"{pr['mean_score_a']:+.3f}, {pr['mean_score_b']:+.3f} |")
    return "\n".join(lines) + "\n"


def figures(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One bar chart per task: each variant's main metric (mean, std as error bar), baseline as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    names = list(doc["spec"]["variants"])
    for task, mm in doc["main_metric"].items():
        vals = [doc["variants"].get(v, {}).get(task, {}).get(mm["metric"]) for v in names]
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.2), layout="constrained")
        xs = [i for i, v in enumerate(vals) if v]
        ax.bar(xs, [vals[i]["mean"] for i in xs], yerr=[vals[i]["std"] for i in xs], capsize=4, color="#4c78a8")
        base = doc["baseline"].get(task, {}).get(mm["metric"])
        if base is not None:
            ax.axhline(base, color="#e45756", linestyle="--", label="baseline")
            ax.legend(loc="best", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_ylabel(f"{mm['metric']} ({'higher' if mm['direction'] == 'max' else 'lower'} is better)")
        ax.set_title(task, fontsize=10)
        out[f"{task}.png"] = fig
        plt.close(fig)
    return out


def run_study(study: Mapping[str, Any], params: Mapping[str, Any], bundles: Mapping[str, ArrayBundle],
              pipelines: Mapping[str, Pipeline]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Run (or continue) the study; returns ``study.json``'s document, ``study.md`` and the figures."""
    spec = validate_study_params(study, params)
    t0 = time.perf_counter()
    runner = StudyRunner(spec, params, bundles, pipelines)
    runs = runner.run()
    doc = summarise(spec, runs, runner.baseline, task_kinds(bundles))
    seconds = time.perf_counter() - t0
    doc["seconds"] = round(seconds, 1)
    doc["trained_stages"] = runner.trained
    log.info("study: %d run(s), %d stage(s) trained in this invocation, %.0f s", len(runs), len(runner.trained),
             seconds)
    return doc, markdown(doc, seconds), figures(doc)

"""Optuna hyperparameter sweeps over the real Kedro pipelines.

Every trial runs the tuned training stage and the evaluation node — the project's own pipelines
(no second copy of the training code) — on an in-memory catalog holding the run's parameters with
the trial's values, the tokenized data and the previous stage's checkpoint. The training loss is
reported every ``report_every`` steps so the pruner (median by default) stops bad trials early.
Studies live in SQLite (default), a journal file (``journal:<path>``, safe for parallel workers) or
any RDB URL.

A worker that dies mid-trial (killed, out of memory, a lost machine) would leave its trial RUNNING
forever. Every running trial therefore records a heartbeat every ``heartbeat_interval`` seconds
(Optuna's heartbeat: ``RDBStorage(heartbeat_interval=...)``; for journal files, which Optuna 5.0's
``JournalStorage`` does not monitor, :class:`HeartbeatJournalStorage` adds the same mechanism). When
a worker starts a trial, trials whose last heartbeat is older than twice the interval are failed
and queued again with the same parameters (``RetryHeartbeatStaleTrialCallback``, at most
:data:`MAX_RETRY` times), so the study still ends with ``n_trials`` finished trials.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import pandas as pd
from kedro.pipeline import Pipeline
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat  # not re-exported; RDBStorage implements it the same way
from optuna.trial import FrozenTrial, TrialState

from omnivec2_pipelines.params_schema import STAGES
from omnivec2_pipelines.pipelines.nested import run_nested
from omnivec2_pipelines.tasks import task_kinds
from omnivec2_pipelines.training import trainer as trainer_module

log = logging.getLogger(__name__)

#: Metric names evaluation writes per task kind (each kind's ``metrics``, :mod:`omnivec2_pipelines.tasks`).
METRICS_BY_KIND = {name: k.metrics for name, k in task_kinds().items()}
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")
#: Seconds between heartbeats of a running trial (``sweep.heartbeat_interval``); a trial without one
#: for twice as long is failed and retried.
DEFAULT_HEARTBEAT_INTERVAL = 60
#: How many times a trial whose worker died is run again (then it stays FAIL).
MAX_RETRY = 2


@dataclass
class SweepSpec:
    """The ``sweep`` parameters.

    Attributes:
        stage: Training stage to tune (its previous stage's checkpoint must exist).
        space: ``{"<block>.<key>": {"type": float|int|categorical, "low", "high", "log", "choices"}}``.
        objective: A metric key evaluation writes, e.g. ``image.classification.accuracy``.
        direction: ``maximize`` or ``minimize``.
        n_trials: Trials in the study (shared by all workers).
        storage: ``sqlite:///data/...db``, ``journal:data/...log`` or an RDB URL.
        study_name: Study name in the storage.
        pruner: ``median`` or ``none``.
        report_every: Steps between intermediate values.
        split: Split the objective is measured on.
        seed: Sampler seed.
        heartbeat_interval: Seconds between heartbeats of a running trial; a RUNNING trial without
            one for twice as long (its worker died) is failed and retried. ``None`` turns it off.
    """

    stage: str
    space: dict[str, dict[str, Any]]
    objective: str
    direction: str = "maximize"
    n_trials: int = 10
    storage: str = "sqlite:///data/07_model_output/sweep.db"
    study_name: str = "omnivec2"
    pruner: str = "median"
    report_every: int = 10
    split: str = "val"
    seed: int = 0
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT_INTERVAL
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> "SweepSpec":
        known = set(cls.__dataclass_fields__) - {"extra"}
        unknown = set(p) - known
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} under 'sweep'; allowed: {sorted(known)}")
        for key in ("stage", "space", "objective"):
            if key not in p:
                raise ValueError(f"sweep.{key} is required")
        d = dict(p)
        d["space"] = flatten_space(d["space"])
        spec = cls(**d)
        check_without_data(spec)  # so the parameter hook reports these before the first node
        return spec


def check_without_data(spec: SweepSpec) -> None:
    """The checks that need neither data nor other parameters: the heartbeat and a baseline objective."""
    hb = spec.heartbeat_interval
    if hb is not None and (not isinstance(hb, int) or isinstance(hb, bool) or hb < 1):
        raise ValueError(f"sweep.heartbeat_interval must be a positive integer (seconds) or null (off), got {hb!r}")
    if isinstance(spec.objective, str) and ".baseline." in f".{spec.objective}.":
        model_metric = spec.objective.replace(".baseline.", ".")
        raise ValueError(f"sweep.objective={spec.objective!r} is a baseline metric: the classical baseline is "
                         f"fitted on the data alone, so no trial's parameters can change it; tune the model's "
                         f"metric instead, e.g. sweep.objective={model_metric!r}")


def flatten_space(space: Mapping[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """``{multitask: {lr: {type: float, ...}}}`` (or dotted keys) → ``{"multitask.lr": {...}}``.

    A mapping with a ``type``, ``low`` or ``choices`` key is a distribution; other mappings nest.
    """
    if not isinstance(space, Mapping):
        raise ValueError(f"sweep.space{'.' + prefix if prefix else ''} must be a mapping, got {space!r}")
    out: dict[str, dict[str, Any]] = {}
    for key, value in space.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and ({"type", "low", "choices"} & set(value)):
            out[path] = dict(value)
        else:
            out.update(flatten_space(value, path))
    return out


def _lookup(params: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = params
    for k in path.split("."):
        if not isinstance(node, Mapping) or k not in node:
            return False, None
        node = node[k]
    return True, node


def _set(params: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = params
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def validate(spec: SweepSpec, params: Mapping[str, Any], available_metrics: set[str]) -> None:
    """Every problem a sweep can have, raised before any trial runs, naming the key."""
    if spec.stage not in STAGES:
        raise ValueError(f"sweep.stage={spec.stage!r}; expected one of {list(STAGES)}")
    if spec.direction not in ("maximize", "minimize"):
        raise ValueError(f"sweep.direction={spec.direction!r}; expected 'maximize' or 'minimize'")
    if not isinstance(spec.n_trials, int) or spec.n_trials < 1:
        raise ValueError(f"sweep.n_trials must be a positive integer, got {spec.n_trials!r}")
    if spec.pruner not in ("median", "none"):
        raise ValueError(f"sweep.pruner={spec.pruner!r}; expected 'median' or 'none'")
    check_without_data(spec)
    if not spec.space:
        raise ValueError("sweep.space is empty; declare at least one parameter to tune")
    merged = {**(params.get("trainer") or {}), **(params.get(spec.stage) or {})}
    if merged.get("nproc_per_node", 1) != 1 or merged.get("nnodes", 1) != 1:
        raise ValueError("sweep: trials train in the sweep's own process (the pruner follows their losses), so "
                         "trainer.nproc_per_node and trainer.nnodes must be 1; to use more cores or machines, "
                         "start several sweep workers on one journal or RDB storage")
    trainer_keys = set(trainer_module.TrainerConfig.__dataclass_fields__)
    for path, dist in spec.space.items():
        found, _ = _lookup(params, path)
        block, _, key = path.partition(".")
        if not found and not (block in STAGES and key in trainer_keys):
            raise ValueError(f"sweep.space: unknown parameter {path!r} (no such key in the parameters)")
        kind = dist.get("type", "float")
        if kind in ("float", "int"):
            low, high = dist.get("low"), dist.get("high")
            if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
                raise ValueError(f"sweep.space.{path}: {kind} ranges need numeric 'low' and 'high'")
            if low > high:
                raise ValueError(f"sweep.space.{path}: low={low} > high={high}")
            if dist.get("log") and low <= 0:
                raise ValueError(f"sweep.space.{path}: a log range needs low > 0, got {low}")
        elif kind == "categorical":
            if not dist.get("choices"):
                raise ValueError(f"sweep.space.{path}: categorical needs a non-empty 'choices' list")
        else:
            raise ValueError(f"sweep.space.{path}: type={kind!r}; expected float, int or categorical")
    storage_kind(spec.storage)
    if spec.objective not in available_metrics:
        raise ValueError(f"sweep.objective={spec.objective!r} is not a metric evaluation produces; "
                         f"available: {sorted(available_metrics)}")


def storage_kind(url: str) -> str:
    """``journal`` or ``rdb``; anything else is an error naming ``sweep.storage``."""
    if isinstance(url, str) and url.startswith("journal:"):
        return "journal"
    scheme = url.split(":", 1)[0].split("+", 1)[0] if isinstance(url, str) and "://" in url else ""
    if scheme in RDB_SCHEMES:
        return "rdb"
    raise ValueError(f"sweep.storage={url!r}: unknown scheme; use 'sqlite:///path.db', 'journal:path.log' "
                     f"(parallel workers) or an RDB URL ({', '.join(RDB_SCHEMES)})")


_HEARTBEAT_ATTR = "omnivec2:heartbeat"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage with Optuna's heartbeat (which ``RDBStorage`` has and ``JournalStorage`` lacks).

    A running trial's heartbeat is a system attribute holding the time of its last beat, written to
    the journal every ``heartbeat_interval`` seconds by Optuna's heartbeat thread. A RUNNING trial
    whose last beat (or start) is older than ``grace_period`` seconds is stale: at the start of every
    trial, :func:`optuna.storages.fail_stale_trials` fails it and calls
    ``heartbeat_stale_trial_callback``. Workers on several machines must share a clock (as with RDB).

    Args:
        backend: The journal backend (e.g. ``JournalFileBackend``).
        heartbeat_interval: Seconds between beats (positive).
        grace_period: Seconds without a beat before a trial is stale; default twice the interval.
        heartbeat_stale_trial_callback: Called with ``(study, failed_trial)`` for each stale trial.
    """

    def __init__(self, backend: Any, heartbeat_interval: int, grace_period: float | None = None,
                 heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> None:
        super().__init__(backend)
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be positive, got {heartbeat_interval!r}")
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it meanwhile (it looked stale); its retry runs elsewhere

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        now = time.time()
        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = t.datetime_start.timestamp() if t.datetime_start else now
            # a retried trial inherits its predecessor's system attributes: a beat counts from the start on
            last = max(float(t.system_attrs.get(_HEARTBEAT_ATTR, started)), started)
            if now - last > grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback


def make_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> Any:
    """The Optuna storage for ``url`` (parent folders created).

    With ``heartbeat_interval`` (seconds), running trials record heartbeats, and trials whose worker
    died (no beat for ``grace_period``, default twice the interval) are failed and retried with the
    same parameters, at most :data:`MAX_RETRY` times.
    """
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kind = storage_kind(url)
    with warnings.catch_warnings():  # heartbeats and retries are "experimental" in Optuna since 2.8
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY) if heartbeat_interval else None
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = JournalFileBackend(str(path))
            if not heartbeat_interval:
                return JournalStorage(backend)
            return HeartbeatJournalStorage(backend, heartbeat_interval, grace_period, retry)
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        if not heartbeat_interval:
            return url
        return RDBStorage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                          heartbeat_stale_trial_callback=retry)


def available_metrics(bundles: Mapping[str, Any], tasks_spec: Any) -> set[str]:
    """Metric keys evaluation will write for the enabled tasks."""
    from omnivec2_pipelines.training.stages import select_tasks

    out = set()
    for m, t in select_tasks(bundles, tasks_spec):
        for metric in METRICS_BY_KIND[bundles[m].tasks[t].kind]:
            out |= {f"{m}.{t}.{metric}", f"{m}.{t}.baseline.{metric}"}
    return out


def _suggest(trial: optuna.Trial, path: str, dist: Mapping[str, Any]) -> Any:
    kind = dist.get("type", "float")
    if kind == "float":
        return trial.suggest_float(path, dist["low"], dist["high"], log=bool(dist.get("log")))
    if kind == "int":
        return trial.suggest_int(path, int(dist["low"]), int(dist["high"]), log=bool(dist.get("log")))
    return trial.suggest_categorical(path, list(dist["choices"]))


def run_sweep(spec: SweepSpec, params: Mapping[str, Any], pipelines: Mapping[str, Pipeline],
              inputs: Callable[[], dict[str, Any]]) -> optuna.Study:
    """Run (or join) the study; returns it when ``spec.n_trials`` trials have finished.

    Args:
        spec: The sweep.
        params: All run parameters (the trial's values are set on a deep copy).
        pipelines: The project's pipelines (``spec.stage`` and ``evaluation`` are used).
        inputs: Called per trial: fresh non-parameter inputs of the stage (tokenized data, previous
            checkpoint), keyed by dataset name.
    """
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=spec.report_every) \
        if spec.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=spec.study_name,
                                storage=make_storage(spec.storage, spec.heartbeat_interval),
                                direction=spec.direction, load_if_exists=True, pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=spec.seed))
    # the tuned stage, the stages after it, then evaluation: pretraining is judged by downstream metrics
    pipe = sum((pipelines[s] for s in STAGES[STAGES.index(spec.stage):]), Pipeline([])) \
        + pipelines["evaluation"].only_nodes("evaluate")
    sign = -1.0 if spec.direction == "maximize" else 1.0

    def objective(trial: optuna.Trial) -> float:
        trial_params = copy.deepcopy(dict(params))
        for path, dist in spec.space.items():
            _set(trial_params, path, _suggest(trial, path, dist))
        _set(trial_params, "evaluation.split", spec.split)
        _set(trial_params, "trainer.resume_dir", "")  # trials never resume each other
        losses: list[float] = []

        def report(stage: str, step: int, loss: float) -> None:
            if stage != spec.stage:
                return
            losses.append(loss)
            if (step + 1) % spec.report_every == 0:
                window = [x for x in losses[-spec.report_every:] if math.isfinite(x)]
                # intermediate value in the study's direction: -loss when maximising, loss when minimising
                trial.report(sign * sum(window) / max(len(window), 1), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step + 1}")

        trainer_module.STEP_CALLBACKS.append(report)
        try:
            outputs = run_nested(pipe, trial_params, {**inputs(), "probe_metrics": {}})  # heads only, no probes
        finally:
            trainer_module.STEP_CALLBACKS.remove(report)
        value = float(outputs["metrics"][spec.objective])
        log.info("sweep trial %d: %s = %.4f with %s", trial.number, spec.objective, value, trial.params)
        return value

    from optuna.study import MaxTrialsCallback

    study.optimize(objective, n_trials=spec.n_trials, catch=(),
                   callbacks=[MaxTrialsCallback(spec.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))])
    return study


def study_outputs(study: optuna.Study) -> tuple[pd.DataFrame, dict[str, Any], Any]:
    """Trials table, best parameters as a nested dict (drop into conf/local/), history figure."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization.matplotlib import plot_optimization_history

    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "datetime_start",
                                           "datetime_complete"))
    trials["state"] = trials["state"].astype(str)
    best: dict[str, Any] = {}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        for path, value in study.best_params.items():
            _set(best, path, value)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_optimization_history(study)
    return trials, best, ax.figure

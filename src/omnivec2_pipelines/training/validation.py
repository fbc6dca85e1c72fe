"""Validation during training: a score per evaluation (higher is better), the metrics behind it, and
the model selection (best step, early stopping) that the trainer runs on it.

* Pretraining stages: masked-reconstruction loss on at most ``trainer.eval_samples`` val rows per
  modality, with the same masks at every evaluation (a fixed generator), single stream; score =
  minus the mean loss over modalities.
* Multitask: every task's main metric on at most ``trainer.eval_samples`` val rows, through the
  single-stream path that evaluation and inference take; score = mean normalised score over tasks
  (:func:`~omnivec2_pipelines.training.scores.normalised_score`, against the classical baseline
  fitted on train and predicting the same val rows), each task's own as ``val.score.<modality>.<task>``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.training.objectives import masked_reconstruction_loss
from omnivec2_pipelines.training.scores import MAIN_METRIC, SCORE_PREFIX, better, normalised_score

log = logging.getLogger(__name__)


class Validator(Protocol):
    """Scores a model on held-out rows: ``(score, metrics)``, higher score = better."""

    def __call__(self, model: OmniVec2, device: torch.device) -> tuple[float, dict[str, float]]: ...


def val_rows(bundle: ArrayBundle, key: str, limit: int) -> np.ndarray | None:
    """The first ``limit`` val rows of ``key`` (the val split is already shuffled by ingestion), or
    None when the bundle has no val rows."""
    if not bundle.has("val", key) or len(bundle.get("val", key)) == 0:
        return None
    return np.asarray(bundle.get("val", key)[:limit])


class ReconstructionValidator:
    """Masked-reconstruction loss on val rows (fixed masks), for the pretraining stages.

    Args:
        inputs: ``{modality: val inputs}``.
        ratios: Mask ratio per modality.
        norm_target: As in training.
        seed: Seed of the (fixed) masks.
        batch_size: Rows per forward pass.
    """

    def __init__(self, inputs: Mapping[str, np.ndarray], ratios: Mapping[str, float], norm_target: bool,
                 seed: int = 0, batch_size: int = 128) -> None:
        self.inputs = {m: torch.from_numpy(np.require(x, requirements=["C", "W"])) for m, x in sorted(inputs.items())}
        self.ratios, self.norm, self.seed, self.batch_size = dict(ratios), norm_target, seed, batch_size

    @torch.no_grad()
    def __call__(self, model: OmniVec2, device: torch.device) -> tuple[float, dict[str, float]]:
        gen = torch.Generator().manual_seed(self.seed)  # the same masks at every evaluation
        losses = {}
        for m, x in self.inputs.items():
            total = 0.0
            for i in range(0, len(x), self.batch_size):
                xb = x[i:i + self.batch_size].to(device)
                (s,) = model.forward_features(model.encode(m, xb, float(self.ratios[m]), gen))
                total += float(masked_reconstruction_loss(model, s, xb, self.norm)) * len(xb)
            losses[m] = total / len(x)
        return -float(np.mean(list(losses.values()))), {f"val.loss.{m}": v for m, v in losses.items()}


@dataclass
class ValTask:
    """One (modality, task) scored on val rows, with its baseline's main metric on the same rows."""

    modality: str
    task: str
    spec: TaskSpec
    x: np.ndarray
    y: np.ndarray
    baseline: float
    scale: Mapping[str, float] | None = None

    @property
    def metric(self) -> tuple[str, str]:
        return MAIN_METRIC[self.spec.kind]


_BASELINES: dict[tuple[Any, ...], tuple[Any, float]] = {}  # (id(train x), ...) -> (train x kept alive, value)


def baseline_metric(modality: str, bundle: ArrayBundle, spec: TaskSpec, x_val: np.ndarray, y_val: np.ndarray,
                    seed: int = 0, max_train: int = 4000) -> float:
    """Main metric of the classical baseline (fitted on at most ``max_train`` train rows) on val rows.

    Cached per data set in the process: a study trains many models on the same arrays.
    """
    from omnivec2_pipelines.training.evaluation import baseline_predictions, task_baseline_features, task_metrics

    x_tr_all = bundle.get("train", spec.input_key)
    key = (id(x_tr_all), modality, spec.name, len(x_val), seed, max_train)
    if key in _BASELINES and _BASELINES[key][0] is x_tr_all:
        return _BASELINES[key][1]
    n = min(len(x_tr_all), max_train)
    x_tr, y_tr = np.asarray(x_tr_all[:n]), np.asarray(bundle.get("train", spec.target_key)[:n])
    f_tr, f_val = task_baseline_features(modality, bundle, spec, x_tr), task_baseline_features(modality, bundle,
                                                                                               spec, x_val)
    pred = baseline_predictions(spec, f_tr, y_tr, f_val, seed)
    scale = bundle.meta.get("tasks_scale", {}).get(spec.name)
    value = task_metrics(spec, y_val, pred, scale)[MAIN_METRIC[spec.kind][0]]
    _BASELINES[key] = (x_tr_all, value)
    return value


class TaskValidator:
    """Every task's main metric on val rows, single stream; score = mean normalised score.

    Args:
        tasks: The tasks to score.
        batch_size: Rows per forward pass.
    """

    def __init__(self, tasks: list[ValTask], batch_size: int = 256) -> None:
        self.tasks, self.batch_size = tasks, batch_size

    @classmethod
    def from_bundles(cls, pairs: list[tuple[str, str]], bundles: Mapping[str, ArrayBundle], limit: int,
                     seed: int = 0) -> "TaskValidator | None":
        """Validator over the val rows of ``pairs``; tasks without val rows are left out (and logged)."""
        tasks = []
        for m, t in pairs:
            b, spec = bundles[m], bundles[m].tasks[t]
            x, y = val_rows(b, spec.input_key, limit), val_rows(b, spec.target_key, limit)
            if x is None or y is None:
                log.warning("validation: %s has no val rows, so %s.%s is not validated during training (give the "
                            "data set a val split, or %s.source.val_fraction > 0)", m, m, t, m)
                continue
            tasks.append(ValTask(m, t, spec, x, y, baseline_metric(m, b, spec, x, y, seed),
                                 b.meta.get("tasks_scale", {}).get(t)))
        return cls(tasks) if tasks else None

    @torch.no_grad()
    def __call__(self, model: OmniVec2, device: torch.device) -> tuple[float, dict[str, float]]:
        from omnivec2_pipelines.training.evaluation import predict, task_metrics

        scores, metrics = [], {}
        for vt in self.tasks:
            name, direction = vt.metric
            pred = predict(model, vt.modality, vt.task, vt.x, self.batch_size, str(device))
            value = task_metrics(vt.spec, vt.y, pred, vt.scale)[name]
            metrics[f"val.{vt.modality}.{vt.task}.{name}"] = value
            scores.append(normalised_score(value, vt.baseline, direction) if math.isfinite(value) else -1.0)
            metrics[f"{SCORE_PREFIX}{vt.modality}.{vt.task}"] = scores[-1]
        return float(np.mean(scores)), metrics


@dataclass
class Selection:
    """Best-step tracking and early stopping over the validation scores of one stage.

    Attributes:
        patience: Evaluations without improvement that end the stage (0: never stop early).
        min_delta: Smallest score gain that counts as an improvement.
        window: Evaluations averaged into the score that is compared (1: each evaluation's own; N: the
            mean of the last N, so one lucky evaluation on a small val set cannot win alone). The weights
            kept are those of the window's last evaluation.
    """

    patience: int = 0
    min_delta: float = 0.0
    window: int = 1
    best_score: float = -math.inf
    best_step: int = 0
    evaluations: int = 0
    since_best: int = 0
    stopped: str = ""
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    recent: list[float] = field(default_factory=list)

    def _record(self, score: float) -> float:
        """The compared score after recording ``score``: the mean of the last ``window`` evaluations."""
        self.recent = (self.recent + [score])[-self.window:]
        return float(np.mean(self.recent)) if all(math.isfinite(v) for v in self.recent) else -math.inf

    def update(self, step: int, score: float, model: torch.nn.Module) -> bool:
        """Record the score after ``step`` completed steps; returns whether training should stop."""
        self.evaluations += 1
        score = self._record(score)
        if math.isfinite(score) and better(score, self.best_score + self.min_delta, "max"):
            self.best_score, self.best_step, self.since_best = score, step, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.since_best += 1
        if self.patience and self.since_best >= self.patience:
            self.stopped = (f"early stopping: no val improvement in {self.since_best} evaluations "
                            f"(trainer.early_stopping={self.patience})")
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """JSON-able counters (the best weights travel separately, as tensors)."""
        return {"best_score": self.best_score if math.isfinite(self.best_score) else None,
                "best_step": self.best_step, "evaluations": self.evaluations, "since_best": self.since_best,
                "recent": [v if math.isfinite(v) else None for v in self.recent]}

    def load_state_dict(self, state: Mapping[str, Any], best_state: dict[str, torch.Tensor] | None) -> None:
        score = state.get("best_score")
        self.best_score = -math.inf if score is None else float(score)
        self.best_step, self.evaluations = int(state["best_step"]), int(state["evaluations"])
        self.since_best, self.best_state = int(state["since_best"]), best_state
        self.recent = [-math.inf if v is None else float(v) for v in state.get("recent", [])]

    def summary(self, steps_run: int, steps: int) -> dict[str, Any]:
        """What the checkpoint records: the chosen step, its val score and why training stopped."""
        if not self.evaluations:
            return {"chosen_step": steps_run, "val_score": None, "evaluations": 0,
                    "stopped": f"completed {steps_run} steps (no validation)"}
        return {"chosen_step": self.best_step, "val_score": self.best_score if math.isfinite(self.best_score)
                else None, "evaluations": self.evaluations,
                "stopped": self.stopped or f"completed all {steps} steps"}


"""Which modalities / (modality, task) pairs a training step draws, and how often.

One sampler serves every stage: stage 1 draws one modality per step, stage 2 and multitask draw
two items of *different* modalities per step (multitask: a task of each; ``multitask.pairs_per_step``
P draws 2P). Each item gets a weight:

* ``uniform``: every modality is equally likely, and the tasks of one modality share its weight
  equally (the method's default);
* ``size``: the weight of an item is ``n ** (1 / temperature)`` for its ``n`` training rows
  (temperature 1: proportional to data-set size; larger temperatures flatten it towards
  uniform), the temperature-scaled sampling of multilingual / multitask training.

A step draws the first modality with probability proportional to its items' total weight, each
further one from the remaining modalities in proportion to theirs (successive sampling without
replacement), and within a modality an item in proportion to its weight. :meth:`TaskSampler.inclusion`
gives the exact probability that an item takes part in a step, which is what the study uses to give
its ``single_task`` variant the samples a task sees in multitask training (before any focus below).

**Focus on the tasks behind** (``multitask.sampling_focus`` F > 0): after every validation, each
task's weight becomes its ``uniform``/``size`` weight times ``exp(-F * s)``, where ``s`` is the
task's val normalised score against its classical baseline (clipped to [-1, 1]; 0 = level with
it, the score the model selection uses). A task behind its baseline is drawn more often, one far
ahead less often, but never not at all: with F = 1 the factors span e^-1 .. e^1. This is dynamic task
prioritisation (Guo et al., ECCV 2018) on the score the project is judged by, not on a training
loss whose scale differs between kinds.

**Task-wise early stopping of the draws** (``multitask.sampling_patience`` P > 0): a task whose val
main metric (the raw metric, not the clipped score) has not improved on its best for P evaluations in
a row is drawn ``multitask.sampling_patience_factor`` times as often (e.g. 0.25) until it improves
again. Small data sets reach their best val metric early and then over-fit while large ones are
still learning; their steps go to the tasks that still gain. A stale task keeps a share of the steps
(its head and the body stay fitted to it: the factor is > 0). This is the task-wise early stopping
of Zhang et al. (ECCV 2014) with the task kept in the mix at a lower rate. With focus as well, the
two factors multiply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from omnivec2_pipelines.training.scores import better

SAMPLING = ("uniform", "size")


@dataclass(frozen=True)
class SamplerItem:
    """One thing a step can draw: a modality (pretraining) or a (modality, task) pair."""

    modality: str
    name: str
    size: int


def check_focus(where: str, focus: Any) -> float:
    """Validate ``<stage>.sampling_focus``: a number in [0, 10] (0: off)."""
    if isinstance(focus, bool) or not isinstance(focus, (int, float)) or not 0 <= focus <= 10:
        raise ValueError(f"{where}.sampling_focus must be a number in [0, 10] (0: off; the strength with which "
                         f"tasks behind their baseline on val are drawn more often), got {focus!r}")
    return float(focus)


def focus_factors(scores: dict[str, float], focus: float) -> dict[str, float]:
    """``{item: exp(-focus * clip(score, -1, 1))}``; a non-finite score counts as -1 (the worst)."""
    return {k: float(np.exp(-focus * (float(np.clip(v, -1.0, 1.0)) if np.isfinite(v) else -1.0)))
            for k, v in scores.items()}


def check_patience(where: str, patience: Any, factor: Any) -> tuple[int, float]:
    """Validate ``<stage>.sampling_patience`` (an integer >= 0, 0: off) and ``<stage>.sampling_patience_factor``
    (a number in (0, 1])."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValueError(f"{where}.sampling_patience must be an integer >= 0 (evaluations without val improvement "
                         f"after which a task is drawn less often; 0: off), got {patience!r}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ValueError(f"{where}.sampling_patience_factor must be a number in (0, 1] (the factor on a stale "
                         f"task's sampling weight), got {factor!r}")
    return patience, float(factor)


class PlateauFactors:
    """Per task: its best val metric so far and the evaluations since it last improved.

    Args:
        directions: ``{item name: "max" | "min"}``, each task's main metric direction.
        patience: Evaluations without improvement after which a task is stale.
        factor: The sampling factor of a stale task (others: 1).
    """

    def __init__(self, directions: dict[str, str], patience: int, factor: float) -> None:
        self.directions, self.patience, self.factor = dict(directions), patience, factor
        self.best: dict[str, float] = {}
        self.stale: dict[str, int] = {}

    def update(self, values: dict[str, float]) -> dict[str, float]:
        """Record one evaluation's ``{item name: val main metric}`` (a non-finite value never improves);
        returns ``{item name: factor}`` for every task seen so far."""
        for name, value in values.items():
            improved = np.isfinite(value) and (name not in self.best or better(value, self.best[name],
                                                                               self.directions[name]))
            if improved:
                self.best[name], self.stale[name] = float(value), 0
            else:
                self.stale[name] = self.stale.get(name, 0) + 1
        return {k: self.factor if n >= self.patience else 1.0 for k, n in sorted(self.stale.items())}

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best), "stale": dict(self.stale)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = {k: float(v) for k, v in state["best"].items()}
        self.stale = {k: int(v) for k, v in state["stale"].items()}


def check_sampling(where: str, sampling: Any, temperature: Any) -> tuple[str, float]:
    """Validate ``<stage>.sampling`` and ``<stage>.sampling_temperature``."""
    if sampling not in SAMPLING:
        raise ValueError(f"{where}.sampling must be one of {list(SAMPLING)}, got {sampling!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"{where}.sampling_temperature must be a number > 0, got {temperature!r}")
    return str(sampling), float(temperature)


class TaskSampler:
    """Draws the items of one training step.

    Args:
        items: What can be drawn, each with its modality and training-set size.
        per_step: Items of different modalities per step (at most the number of modalities).
        sampling: ``uniform`` or ``size`` (see the module docstring).
        temperature: Flattening of ``size`` weights (ignored by ``uniform``).
    """

    def __init__(self, items: Sequence[SamplerItem], per_step: int, sampling: str = "uniform",
                 temperature: float = 1.0) -> None:
        if not items:
            raise ValueError("task sampler: nothing to sample")
        sampling, temperature = check_sampling("sampler", sampling, temperature)
        self.items = list(items)
        self.modalities = sorted({it.modality for it in self.items})
        if isinstance(per_step, bool) or not isinstance(per_step, int) or not 1 <= per_step <= len(self.modalities):
            raise ValueError(f"task sampler: cannot draw {per_step} different modalities from {self.modalities}")
        self.per_step = per_step
        counts = {m: sum(it.modality == m for it in self.items) for m in self.modalities}
        if sampling == "uniform":
            w = np.array([1.0 / counts[it.modality] for it in self.items])
        else:
            if any(it.size <= 0 for it in self.items):
                raise ValueError(f"task sampler: sizes must be > 0, got {[(it.name, it.size) for it in self.items]}")
            w = np.array([float(it.size) ** (1.0 / temperature) for it in self.items])
        self.base = w / w.sum()
        self.factors: dict[str, float] = {}
        self._set(self.base)

    def _set(self, w: np.ndarray) -> None:
        self.weights = w / w.sum()
        self.modality_mass = np.array([self.weights[self._of(m)].sum() for m in self.modalities])

    def reweight(self, factors: dict[str, float]) -> None:
        """Weights = the sampling's own weights times ``factors[item name]`` (unnamed items: 1).

        Raises:
            ValueError: an unknown item name, or a factor that is not a finite number > 0.
        """
        names = {it.name for it in self.items}
        bad = {k: v for k, v in factors.items() if k not in names or not (np.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"task sampler: factors must be finite numbers > 0 for items of {sorted(names)}, got "
                             f"{bad}")
        self.factors = {k: float(v) for k, v in sorted(factors.items())}
        self._set(self.base * np.array([self.factors.get(it.name, 1.0) for it in self.items]))

    def _of(self, modality: str) -> np.ndarray:
        return np.array([i for i, it in enumerate(self.items) if it.modality == modality])

    def draw(self, rng: np.random.Generator) -> list[int]:
        """Indices of the items of one step (one per drawn modality, in draw order)."""
        mass = self.modality_mass.copy()
        out = []
        for _ in range(self.per_step):
            m = int(rng.choice(len(mass), p=mass / mass.sum()))
            mass[m] = 0.0
            idx = self._of(self.modalities[m])
            w = self.weights[idx]
            out.append(int(idx[int(rng.choice(len(idx), p=w / w.sum()))]))
        return out

    def inclusion(self) -> dict[str, float]:
        """``{item name: probability that it takes part in a step}`` (exact, not estimated)."""
        p_mod = _successive_inclusion(tuple(float(v) for v in self.modality_mass), self.per_step)
        out = {}
        for k, m in enumerate(self.modalities):
            idx = self._of(m)
            for i in idx:
                out[self.items[i].name] = float(p_mod[k] * self.weights[i] / self.weights[idx].sum())
        return out

    def describe(self) -> dict[str, float]:
        """Inclusion probabilities rounded for logs and checkpoint metadata."""
        return {k: round(v, 4) for k, v in self.inclusion().items()}


def _successive_inclusion(mass: tuple[float, ...], draws: int) -> np.ndarray:
    """P(each index is among ``draws`` successive draws without replacement, each in proportion to ``mass``).

    Exact: a recursion over the set of indices drawn so far (at most 2^n states, memoised; n is the
    number of modalities, so a few thousand at most).
    """
    n = len(mass)
    memo: dict[int, np.ndarray] = {}

    def rest(taken: int, left: int) -> np.ndarray:
        # inclusion probabilities of the remaining `left` draws, given the indices in bitmask `taken`
        if left == 0:
            return np.zeros(n)
        key = taken * (n + 1) + left
        if key not in memo:
            free = [i for i in range(n) if not taken >> i & 1 and mass[i] > 0]
            total = sum(mass[i] for i in free)
            out = np.zeros(n)
            for i in free:
                p = mass[i] / total
                out[i] += p
                out += p * rest(taken | 1 << i, left - 1)
            memo[key] = out
        return memo[key]

    return rest(0, min(draws, sum(m > 0 for m in mass)))

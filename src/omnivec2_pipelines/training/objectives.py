"""Training objectives: what one step of a stage samples and which loss it computes.

The single :class:`~omnivec2_pipelines.training.trainer.Trainer` runs any of them; the three
stages of OmniVec2 differ only by the objective object they pass.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from omnivec2_pipelines.models import OmniVec2, Stream
from omnivec2_pipelines.models.layers import masked_mean
from omnivec2_pipelines.tasks import get_task_kind
from omnivec2_pipelines.training import augment
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.params import check_contrastive, check_pairs_per_step
from omnivec2_pipelines.training.sampling import (PlateauFactors, SamplerItem, TaskSampler, check_focus,
                                                   check_patience, focus_factors)
from omnivec2_pipelines.training.scores import MAIN_METRIC, SCORE_PREFIX


@dataclass
class StepContext:
    """What an objective may use in a step.

    Attributes:
        step: Index of the optimiser step.
        rng: Sampling RNG (same sequence on every rank).
        generator: Masking RNG (same sequence on every rank).
        device: Where batches go.
        shard: ``(rank, world_size)``: this process computes that slice of every global batch.
        pin_memory: Page-lock host batches before their non-blocking copy to the device.
    """

    step: int
    rng: np.random.Generator
    generator: torch.Generator
    device: torch.device
    shard: tuple[int, int] = (0, 1)
    pin_memory: bool = False

    def draw(self, source: BatchSource, n: int) -> tuple[Tensor, Tensor | None]:
        """This rank's slice of the next global batch of ``n`` rows of ``source``, on the device."""
        return source.draw(n, self.device, self.shard, self.pin_memory)


@dataclass
class StepOutput:
    """Loss of one step and what it was computed on.

    Attributes:
        loss: The scalar to minimise (on the device).
        parts: Detached per-part losses (e.g. per modality or task), also on the device: the trainer
            reads them with the loss every ``log_every`` steps, not in the step.
        what: What the step trained (names of the modalities / tasks).
        samples: Samples in the step (host-side count).
    """

    loss: Tensor
    parts: dict[str, Tensor]
    what: str
    samples: int


class Objective(abc.ABC):
    """One kind of training step."""

    name: str = ""

    @abc.abstractmethod
    def step(self, model: OmniVec2, ctx: StepContext) -> StepOutput:
        """Sample a batch, run the model, return the loss."""

    @abc.abstractmethod
    def batch_sources(self) -> dict[str, BatchSource]:
        """The data sources this objective draws from, by a stable name (for resume state)."""

    def lr_scale(self, name: str) -> float:
        """Factor on the learning rate of the parameter ``name`` (0: frozen); 1 for every parameter here."""
        return 1.0

    def on_validation(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Told each validation's metrics (the same on every rank); returns extra history columns.

        Nothing here; the multitask objective's ``sampling_focus`` reweights its tasks from them.
        """
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {name: src.state_dict() for name, src in sorted(self.batch_sources().items())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sources = self.batch_sources()
        if set(state) != set(sources):
            raise ValueError(f"{self.name}: resume state has sources {sorted(state)}, objective {sorted(sources)}")
        for name, src_state in state.items():
            sources[name].load_state_dict(src_state)


def masked_reconstruction_loss(model: OmniVec2, stream: Stream, x: Tensor, norm_target: bool) -> Tensor:
    """The modality tokenizer's reconstruction loss on hidden, real tokens only.

    Args:
        model: The network (its tokenizer defines targets and loss).
        stream: A masked stream that went through g.
        x: The unmasked input the stream was encoded from.
        norm_target: Normalise target patches (for tokenizers with continuous targets).
    """
    tok = model.tokenizers[stream.modality]
    weight = (stream.mask.masked & stream.full_valid).float()
    return tok.reconstruction_loss(model.reconstruct(stream), tok.patchify(x, stream.aux), weight, norm_target)


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE (NT-Xent) between two views: row ``i`` of ``a`` and of ``b`` are the positive
    pair, every other row of both views a negative (SimCLR; CAN adds it to masked reconstruction).

    Args:
        a: (B, D) pooled features of the first view.
        b: (B, D) pooled features of the second view.
        temperature: Softmax temperature of the cosine similarities.
    """
    n = len(a)
    z = torch.nn.functional.normalize(torch.cat([a, b]).float(), dim=-1)  # (2B, D)
    sim = z @ z.T / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(sim.device)  # each row's other view
    return torch.nn.functional.cross_entropy(sim, target)


def _check_ratios(ratios: dict[str, float], modalities: list[str]) -> None:
    for m in modalities:
        if m not in ratios:
            raise ValueError(f"mask_ratio: no ratio for modality {m!r} (have {sorted(ratios)})")
        if not 0.0 < float(ratios[m]) < 1.0:
            raise ValueError(f"mask_ratio.{m} must be in (0, 1), got {ratios[m]}")


def _modality_sampler(sources: dict[str, BatchSource], per_step: int, sampling: str,
                      temperature: float) -> TaskSampler:
    return TaskSampler([SamplerItem(m, m, len(sources[m])) for m in sorted(sources)], per_step, sampling, temperature)


class MaskedUnimodal(Objective):
    """Stage 1: one modality per step, hide tokens, reconstruct them.

    Args:
        sources: ``{modality: BatchSource}`` of pretraining inputs.
        mask_ratios: ``{modality: ratio}``.
        batch_size: Samples per step.
        norm_target: See :func:`masked_reconstruction_loss`.
        sampling: ``uniform`` (round robin: every modality equally often, in a fixed order) or
            ``size`` (drawn by temperature-scaled data-set size, see :mod:`.sampling`).
        temperature: Temperature of ``size`` sampling.
        contrastive_weight: With a weight > 0 every sample is encoded twice, with two independent
            masks; the loss is the mean reconstruction loss of both views plus this weight times the
            :func:`info_nce` of their pooled g features (negatives: the other samples of the batch, of
            this rank's slice under data parallelism). 0: one view, reconstruction only (MAE).
        contrastive_temperature: Temperature of the InfoNCE.
    """

    name = "pretrain_unimodal"

    def __init__(self, sources: dict[str, BatchSource], mask_ratios: dict[str, float], batch_size: int,
                 norm_target: bool = True, sampling: str = "uniform", temperature: float = 1.0,
                 contrastive_weight: float = 0.0, contrastive_temperature: float = 0.2) -> None:
        if not sources:
            raise ValueError("pretrain_unimodal needs at least one modality")
        _check_ratios(mask_ratios, list(sources))
        self.contrast, self.contrast_t = check_contrastive(contrastive_weight, contrastive_temperature)
        self.sources, self.ratios, self.batch_size, self.norm = sources, mask_ratios, batch_size, norm_target
        self.order = sorted(sources)
        self.sampler = _modality_sampler(sources, 1, sampling, temperature)
        self.round_robin = sampling == "uniform"

    def batch_sources(self) -> dict[str, BatchSource]:
        return dict(self.sources)

    def step(self, model: OmniVec2, ctx: StepContext) -> StepOutput:
        m = self.order[ctx.step % len(self.order)] if self.round_robin \
            else self.sampler.items[self.sampler.draw(ctx.rng)[0]].modality
        x, _ = ctx.draw(self.sources[m], self.batch_size)
        ratio = float(self.ratios[m])
        if self.contrast <= 0:
            (s,) = model.forward_features(model.encode(m, x, ratio, ctx.generator, ctx.shard))
            loss = masked_reconstruction_loss(model, s, x, self.norm)
            return StepOutput(loss, {m: loss.detach()}, m, len(x))
        views = model.forward_features(model.encode_streams([(m, x, ratio), (m, x, ratio)], ctx.generator,
                                                            ctx.shard), fuse=False)
        rec = sum(masked_reconstruction_loss(model, v, x, self.norm) for v in views) / 2
        nce = info_nce(*(masked_mean(v.tokens, v.valid) for v in views), self.contrast_t)
        return StepOutput(rec + self.contrast * nce, {m: rec.detach(), f"{m}.contrastive": nce.detach()}, m, len(x))


class MaskedPaired(Objective):
    """Stage 2: two different modalities per step, fused by cross-attention; reconstruct both.

    The two halves of the batch come from unrelated samples of the two data sets; sharing
    happens through the weights and the cross-attention (OmniVec2 §3.2). ``sampling`` and
    ``temperature`` choose how often each modality is drawn (:mod:`.sampling`).
    """

    name = "pretrain_paired"

    def __init__(self, sources: dict[str, BatchSource], mask_ratios: dict[str, float], batch_size: int,
                 norm_target: bool = True, sampling: str = "uniform", temperature: float = 1.0) -> None:
        if len(sources) < 2:
            raise ValueError(f"pretrain_paired needs at least two modalities, got {sorted(sources)}")
        if batch_size < 2:
            raise ValueError(f"pretrain_paired.batch_size must be >= 2 (half per modality), got {batch_size}")
        _check_ratios(mask_ratios, list(sources))
        self.sources, self.ratios, self.half, self.norm = sources, mask_ratios, batch_size // 2, norm_target
        self.sampler = _modality_sampler(sources, 2, sampling, temperature)

    def batch_sources(self) -> dict[str, BatchSource]:
        return dict(self.sources)

    def step(self, model: OmniVec2, ctx: StepContext) -> StepOutput:
        ma, mb = (self.sampler.items[i].modality for i in self.sampler.draw(ctx.rng))
        xa, _ = ctx.draw(self.sources[ma], self.half)
        xb, _ = ctx.draw(self.sources[mb], self.half)
        fa, fb = model.forward_features(model.encode_streams(
            [(ma, xa, float(self.ratios[ma])), (mb, xb, float(self.ratios[mb]))], ctx.generator, ctx.shard))
        la = masked_reconstruction_loss(model, fa, xa, self.norm)
        lb = masked_reconstruction_loss(model, fb, xb, self.norm)
        return StepOutput(la + lb, {ma: la.detach(), mb: lb.detach()}, f"{ma}+{mb}", len(xa) + len(xb))


@dataclass(frozen=True)
class TaskData:
    """A supervised (modality, task) pair, its training rows, the augmentation of its batches and
    the weight of its loss in the step's sum."""

    modality: str
    task: str
    kind: str
    source: BatchSource
    augment: Mapping[str, float] = field(default_factory=dict)
    weight: float = 1.0


def task_loss(kind: str, out: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """The loss of task kind ``kind`` (:mod:`omnivec2_pipelines.tasks`); label smoothing applies
    to the cross-entropy kinds."""
    return get_task_kind(kind).loss(out, y, label_smoothing)


class Multitask(Objective):
    """Stage 3: one task from each of two different modalities per step; loss = sum of both.

    With ``pairs_per_step`` P > 1 a step draws tasks of 2P different modalities, ``batch_size / 2P``
    samples each; fused steps fuse them two by two (as drawn), and the loss is the sum over the tasks
    divided by P (the scale of one pair's sum, so the learning rate keeps its meaning).

    With tasks of a single modality (e.g. ``multitask.tasks: {image: [classification]}``, or the
    study's ``single_task`` variant) every step draws one of its tasks for the whole batch and the
    network runs as one stream (no fusion), as at inference.

    Args:
        tasks: The (modality, task) pairs and their training rows.
        batch_size: Samples per step (an equal share from each drawn (modality, task) pair).
        single_stream: Share of steps whose two halves run as two single streams (no fusion), the
            path evaluation and inference take; the other steps fuse them (the method's training).
        label_smoothing: Label smoothing of the classification and segmentation losses.
        sampling: ``uniform`` (every modality equally often, its tasks sharing that) or ``size``
            (temperature-scaled training-set size), see :mod:`.sampling`.
        temperature: Temperature of ``size`` sampling.
        lr_scales: ``{parameter name: factor}`` on the learning rate (0 freezes it); unlisted names: 1.
        pairs_per_step: Pairs of modalities per step (each pair fused on fused steps).
        focus: ``sampling_focus``: after every validation, each task's weight times
            ``exp(-focus * its val normalised score)`` (0: off), see :mod:`.sampling`.
        patience: ``sampling_patience``: a task whose val main metric has not improved for this many
            evaluations is drawn ``patience_factor`` times as often until it does (0: off), see :mod:`.sampling`.
        patience_factor: ``sampling_patience_factor``, in (0, 1].
    """

    name = "multitask"
    _SAMPLER = "_sampler"  # the key of the focus factors in the resume state (beside the sources)
    _PLATEAU = "_plateau"  # the key of the tasks' best val metrics and staleness in the resume state

    def __init__(self, tasks: list[TaskData], batch_size: int, single_stream: float = 0.0,
                 label_smoothing: float = 0.0, sampling: str = "uniform", temperature: float = 1.0,
                 lr_scales: Mapping[str, float] | None = None, pairs_per_step: int = 1, focus: float = 0.0,
                 patience: int = 0, patience_factor: float = 0.25) -> None:
        if not 0.0 <= single_stream <= 1.0:
            raise ValueError(f"multitask.single_stream must be in [0, 1], got {single_stream}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"multitask.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.single_stream, self.label_smoothing = float(single_stream), float(label_smoothing)
        self.lr_scales = dict(lr_scales or {})
        by_mod: dict[str, list[TaskData]] = {}
        for t in tasks:
            by_mod.setdefault(t.modality, []).append(t)
        if not by_mod:
            raise ValueError("multitask needs at least one (modality, task) pair")
        self.single = len(by_mod) == 1
        if self.single and pairs_per_step != 1:
            raise ValueError(f"multitask.pairs_per_step ({pairs_per_step}) needs tasks of at least two modalities; the "
                             f"tasks are all {next(iter(by_mod))!r} (one stream per step: leave pairs_per_step at 1)")
        self.pairs = 1 if self.single else check_pairs_per_step(pairs_per_step, batch_size, len(by_mod))
        self.half = batch_size if self.single else batch_size // (2 * self.pairs)
        self.tasks = list(tasks)
        self.sampler = TaskSampler([SamplerItem(t.modality, f"{t.modality}.{t.task}", len(t.source)) for t in tasks],
                                   1 if self.single else 2 * self.pairs, sampling, temperature)
        self.focus = check_focus("multitask", focus)
        patience, patience_factor = check_patience("multitask", patience, patience_factor)
        self.plateau = PlateauFactors({f"{t.modality}.{t.task}": MAIN_METRIC[t.kind][1] for t in tasks}, patience,
                                      patience_factor) if patience else None

    def batch_sources(self) -> dict[str, BatchSource]:
        return {f"{t.modality}.{t.task}": t.source for t in self.tasks}

    def on_validation(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """With ``focus`` and/or ``patience``: reweight the tasks by their val normalised scores / by how
        long their val main metric has not improved (a task without a val value keeps its weight);
        returns each task's probability of taking part in a step from now on (``sampling.<modality>.<task>``
        history columns)."""
        if not self.focus and self.plateau is None:
            return {}
        factors: dict[str, float] = {}
        if self.focus:
            factors = focus_factors({it.name: float(metrics[SCORE_PREFIX + it.name]) for it in self.sampler.items
                                     if SCORE_PREFIX + it.name in metrics}, self.focus)
        if self.plateau is not None:
            keys = {f"{t.modality}.{t.task}": f"val.{t.modality}.{t.task}.{MAIN_METRIC[t.kind][0]}"
                    for t in self.tasks}  # the validator's raw main metric of each task
            stale = self.plateau.update({k: float(metrics[v]) for k, v in keys.items() if v in metrics})
            factors = {k: factors.get(k, 1.0) * stale.get(k, 1.0) for k in set(factors) | set(stale)}
        self.sampler.reweight(factors)
        return {f"sampling.{k}": v for k, v in self.sampler.inclusion().items()}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.focus or self.plateau is not None:
            state[self._SAMPLER] = dict(self.sampler.factors)
        if self.plateau is not None:
            state[self._PLATEAU] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        factors, plateau = state.pop(self._SAMPLER, None), state.pop(self._PLATEAU, None)
        if (self.focus or self.plateau is not None) and factors is not None:
            self.sampler.reweight(factors)
        if self.plateau is not None and plateau is not None:
            self.plateau.load_state_dict(plateau)
        super().load_state_dict(state)

    def lr_scale(self, name: str) -> float:
        return self.lr_scales.get(name, 1.0)

    def step(self, model: OmniVec2, ctx: StepContext) -> StepOutput:
        picked = [self.tasks[i] for i in self.sampler.draw(ctx.rng)]
        batches = [(augment.apply(x, t.augment, ctx.generator), y)
                   for t, (x, y) in ((t, ctx.draw(t.source, self.half)) for t in picked)]
        encoded = model.encode_streams([(t.modality, x, 0.0) for t, (x, _) in zip(picked, batches)])
        # drawn every step (also for single-modality runs), so the sampling stays the same whatever the share
        alone = bool(ctx.rng.random() < self.single_stream)
        streams = model.forward_features(encoded, fuse=not alone)
        losses = {f"{t.modality}.{t.task}": task_loss(t.kind, model.forward_head(s, t.task, x), y,
                                                      self.label_smoothing)
                  for t, s, (x, y) in zip(picked, streams, batches)}
        total = sum(t.weight * v for t, v in zip(picked, losses.values()))
        if self.pairs > 1:
            total = total / self.pairs
        return StepOutput(total, {k: v.detach() for k, v in losses.items()}, "+".join(losses),
                          sum(len(x) for x, _ in batches))

"""One trainer for every stage: optimisation, device placement, logging, loss history."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.training import distributed as ddp
from omnivec2_pipelines.training.config import TrainerConfig
from omnivec2_pipelines.training.ema import WeightAverage
from omnivec2_pipelines.training.objectives import Objective, StepContext, StepOutput
from omnivec2_pipelines.training.tracking import TrainingCallback
from omnivec2_pipelines.training.validation import Selection, Validator
from omnivec2_pipelines.training.resume import (
    ResumeConfig,
    TrainingState,
    capture_state,
    clear_resume_state,
    load_resume_state,
    restore_state,
    save_resume_state,
)

log = logging.getLogger(__name__)

#: Callbacks ``fn(stage, step, loss)`` called for every step of every stage (e.g. a hyperparameter
#: sweep reporting intermediate values to its pruner), in step order, when the trainer reads the losses
#: back from the device (every ``log_every`` steps, at validations, resume saves and the stage's end; a
#: step never waits for its loss). They may raise to stop the stage. For more than
#: the loss (validations, the end of a stage) give :meth:`Trainer.fit` a
#: :class:`~omnivec2_pipelines.training.tracking.TrainingCallback`.
STEP_CALLBACKS: list[Callable[[str, int, float], None]] = []


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is checked for availability.

    Inside a data-parallel CUDA job every rank takes the GPU of its local rank.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    if dev.type == "cuda" and ddp.rank_world()[1] > 1:
        dev = torch.device("cuda", ddp.local_rank())
    return dev


def _lr_factor(step: int, cfg: TrainerConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _schedule_at(opt: torch.optim.Optimizer, sched: Any, step: int, cfg: TrainerConfig) -> None:
    """Put the schedule of this run's ``cfg`` at ``step`` completed steps (after restoring a state).

    The learning rates are this run's (``lr``, ``warmup_steps``, ``min_lr_ratio``, ``steps``): a crash-resumed
    run continues its own schedule exactly; a continued finished stage (``resume_from``) follows the schedule
    of one run of the new total ``steps`` from ``step`` on.
    """
    sched.last_epoch = step
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] * _lr_factor(step, cfg)


#: Compiled graphs kept per compiled module: the shapes of a step vary by modality pair (token counts,
#: masked or not, dense or padded); beyond this many variants torch falls back to eager for new ones.
COMPILE_RECOMPILE_LIMIT = 16


def compile_backbone(model: OmniVec2) -> list[str]:
    """``torch.compile`` the shared encoder ``f``, the fusion and ``g`` in place, each as one graph.

    The step's Python (sampling, tokenizers, masking, heads, losses) stays eager: it branches on the
    modality pair and would break the graph anyway, while the three backbone modules hold nearly all
    the FLOPs. Shapes are dynamic (token counts vary by modality and masking) and the recompiles of
    each module are bounded by :data:`COMPILE_RECOMPILE_LIMIT`. Weights and state-dict keys are
    unchanged, so checkpoints stay portable. Returns the compiled modules' names.
    """
    import torch._dynamo

    key = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), COMPILE_RECOMPILE_LIMIT))
    names = ["f", "fusion", "g"]
    for name in names:
        getattr(model, name).compile(dynamic=True)
    return names


class _StepModule(torch.nn.Module):
    """One objective step as ``forward``, so DistributedDataParallel sees (and syncs) the whole step."""

    def __init__(self, model: OmniVec2, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, ctx: StepContext) -> StepOutput:
        return self.objective.step(self.model, ctx)


def param_groups(model: torch.nn.Module, objective: Objective, cfg: TrainerConfig) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (not on biases, norms, position embeddings), and the
    learning rate of each parameter scaled by :meth:`Objective.lr_scale` (0 freezes it: no group, no grad)."""
    groups: dict[tuple[bool, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        scale = float(objective.lr_scale(name))
        if scale <= 0.0:
            p.requires_grad_(False)
            continue
        groups.setdefault((p.ndim >= 2 and "pos" not in name, scale), []).append(p)
    return [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr": cfg.lr * scale}
            for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1]))]


class Trainer:
    """Runs ``cfg.steps`` optimiser steps of an :class:`Objective` on a model.

    In a process group (see :mod:`~omnivec2_pipelines.training.distributed`) the step runs under
    DistributedDataParallel: every rank computes its slice of each global batch, gradients are
    averaged, and only rank 0 shows progress, logs and saves resume states.

    Args:
        cfg: Optimisation settings.
    """

    def __init__(self, cfg: TrainerConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        #: After :meth:`fit`: the chosen step, its val score, why training stopped, which weights were kept.
        self.selection: dict[str, Any] = {}
        #: After :meth:`fit` (rank 0): the training state after the last step, to continue the stage later.
        self.final_state: TrainingState | None = None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _load_resume(self, resume: ResumeConfig, stage: str) -> TrainingState | None:
        """The crash-resume state, read on rank 0 and handed to every rank (the others may not see its disk)."""
        rank, world = ddp.rank_world()
        state = load_resume_state(resume, stage, self.device) if rank == 0 else None
        return ddp.broadcast_from_rank0(state) if world > 1 else state

    def _restore(self, state: TrainingState, stage: str, model: OmniVec2, opt: torch.optim.Optimizer, sched: Any,
                 ctx: StepContext, objective: Objective, selection: Selection) -> tuple[int, list[dict[str, Any]]]:
        """Continue from ``state`` in place; ``(first step, history rows so far)``."""
        restore_state(state, model, opt, ctx.generator, ctx.rng, stage, torch_rng=ctx.shard[0] == 0)
        objective.load_state_dict(state.doc["objective"])
        if state.doc.get("selection") is not None:
            selection.load_state_dict(state.doc["selection"], state.best_weights())
        _schedule_at(opt, sched, state.step, self.cfg)
        return state.step, [dict(r) for r in state.doc["rows"]]

    def fit(self, model: OmniVec2, objective: Objective, stage: str, resume: ResumeConfig | None = None,
            on_step: Callable[[int], None] | None = None, validator: Validator | None = None,
            continue_from: TrainingState | None = None,
            callbacks: Sequence[TrainingCallback] = ()) -> pd.DataFrame:
        """Train in place; returns the loss history (one row per step, averaged over ranks).

        With a ``validator`` and ``trainer.eval_every`` > 0, the model is scored on held-out rows
        every ``eval_every`` steps and after the last one (columns ``val.score`` and the validator's
        metrics in the history); the stage ends early after ``trainer.early_stopping`` evaluations
        without improvement, and with ``trainer.select_best`` the model ends with the weights of its
        best evaluation. With ``trainer.ema_decay`` > 0 a moving average of the weights
        (:mod:`~omnivec2_pipelines.training.ema`) is what validation scores, the selection keeps and the
        stage ends with. :attr:`selection` then says which step was chosen and why training stopped,
        and :attr:`final_state` holds the state after the last step (to continue the stage later).

        Args:
            model: The network (moved to the trainer's device).
            objective: What a step samples and optimises.
            stage: Name for logs and errors.
            resume: Where to save the resume state every N steps and resume from it.
            on_step: Called with the step index after every completed step.
            validator: Scores the model on val rows (higher is better).
            continue_from: The final state of a finished run of this stage: training goes on from its
                step to ``cfg.steps`` (the new total), as one run of ``cfg.steps`` would from there; the
                early-stopping patience counts afresh. A crash-resume state, when there is one, is newer
                and wins.
            callbacks: Told of every step, every validation and the end of the stage (e.g. experiment
                tracking, :mod:`~omnivec2_pipelines.training.tracking`).

        Raises:
            FloatingPointError: on a non-finite loss, naming stage, step and what was trained.
        """
        cfg = self.cfg
        rank, world = ddp.rank_world()
        torch.manual_seed(cfg.seed + rank)  # dropout differs per rank; batches and masks do not
        model.to(self.device).train()
        if cfg.compile:
            log.info("%s: compiled %s with torch.compile", stage, ", ".join(compile_backbone(model)))
        opt = torch.optim.AdamW(param_groups(model, objective, cfg), lr=cfg.lr,
                                fused=self.device.type in ("cpu", "cuda"))  # one kernel for all parameters
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
        # masking and augmentation noise is drawn on the device: no host-to-device copy in the step
        ctx = StepContext(0, np.random.default_rng(cfg.seed), torch.Generator(self.device).manual_seed(cfg.seed),
                          self.device, (rank, world), cfg.pin_memory and self.device.type == "cuda")
        sel = Selection(cfg.early_stopping, window=cfg.select_window)
        validate = validator is not None and cfg.eval_every > 0
        state = self._load_resume(resume, stage) if resume else None
        first, rows = 0, []
        if state is None and continue_from is not None:
            first, rows = self._restore(continue_from, stage, model, opt, sched, ctx, objective, sel)
            sel.since_best = 0
        elif state is not None:
            first, rows = self._restore(state, stage, model, opt, sched, ctx, objective, sel)
        # the weight average starts from the (restored) weights; a saved average replaces it
        ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        restored = state if state is not None else continue_from
        if ema is not None and restored is not None and restored.ema_weights() is not None:
            ema.load_state_dict(restored.ema_weights(), f"{stage} resume state")
        runner: torch.nn.Module = _StepModule(model, objective)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # each step trains only some tokenizers/heads; DDP leaves the others' gradients None (no update)
            runner = DistributedDataParallel(runner, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None, find_unused_parameters=True)
        start = time.perf_counter()
        samples = self.skipped = 0
        if rank == 0:
            log.info("%s: %d steps on %s x %d rank(s) (%d parameters, %d micro-batch(es) per step)", stage,
                     cfg.steps, self.device, world, sum(p.numel() for p in model.parameters()),
                     cfg.grad_accum_steps)
        bar = tqdm(range(first, cfg.steps), desc=stage, disable=None if cfg.progress and rank == 0 else True,
                   dynamic_ncols=True, leave=False, initial=first, total=cfg.steps)
        pending: list[_Pending] = []
        for step in bar:
            ctx.step = step
            outs, ok, norm = self._step(runner, opt, ctx, world)
            if self._device_skip:
                opt.found_inf = (~ok).float()  # the fused AdamW kernel skips the update on device when set
                opt.grad_scale = None
                opt.step()
            elif bool(ok):  # other optimisers: one host read decides
                opt.step()
            sched.step()
            if ema is not None:
                ema.update(step)
            samples += sum(o.samples for o in outs) * world
            elapsed = time.perf_counter() - start
            pending.append(_Pending.of(step, outs, ok, norm, opt.param_groups[0]["lr"], elapsed, samples))
            last = step + 1 == cfg.steps
            logged = (step + 1) % cfg.log_every == 0 or last
            validating = validate and ((step + 1) % cfg.eval_every == 0 or last)
            saving = bool(resume is not None and resume.every and (step + 1) % resume.every == 0 and not last)
            # device values are read only here (the same steps on every rank): never inside a step
            flushed = self._flush(pending, rows, stage, world) if logged or validating or saving else []
            if flushed:
                bar.set_postfix(loss=f"{rows[-1]['loss']:.4f}", samples_per_s=f"{samples / elapsed:.0f}")
            if rank == 0 and logged:
                recent = np.mean([r["loss"] for r in rows[-cfg.log_every:]])
                log.info("%s step %d/%d loss %.4f (%.0f samples/s)", stage, step + 1, cfg.steps, recent,
                         samples / elapsed)
            stop = False
            if validating:
                with ema.applied() if ema is not None else contextlib.nullcontext():
                    stop = self._validate(validator, model, sel, step, rows[-1], stage, rank)
                rows[-1].update(objective.on_validation(rows[-1]))
                for cb in callbacks:
                    cb.on_eval(stage, step, rows[-1])
            if saving and rank == 0 and not stop:
                save_resume_state(resume, capture_state(step + 1, model, opt, ctx.generator, ctx.rng,
                                                        objective.state_dict(), rows, sel.state_dict(),
                                                        sel.best_state, {"stage": stage, "steps": cfg.steps},
                                                        ema.state_dict() if ema is not None else None))
            if on_step is not None:
                on_step(step)
            _tell_callbacks(stage, flushed, callbacks, stop or last)  # after the save: a callback may raise
            if stop:
                break
        _tell_callbacks(stage, self._flush(pending, rows, stage, world), callbacks, True)
        bar.close()
        if resume is not None and rank == 0:
            clear_resume_state(resume)
        self.final_state = capture_state(len(rows), model, opt, ctx.generator, ctx.rng, objective.state_dict(),
                                         rows, sel.state_dict(), sel.best_state,
                                         {"stage": stage, "steps": cfg.steps},
                                         ema.state_dict() if ema is not None else None) if rank == 0 else None
        self.selection = sel.summary(len(rows), cfg.steps)
        self.selection["best_step"] = sel.best_step if sel.evaluations else None
        self.selection["ema_decay"] = cfg.ema_decay
        averaged = f" (weight average, decay {cfg.ema_decay:g})" if ema is not None else ""
        if cfg.select_best and sel.best_state is not None:
            model.load_state_dict(sel.best_state)  # the average's, when there is one: it was validated
            self.selection["weights"] = "best val step" + averaged
        else:
            if ema is not None:
                ema.copy_to_model()
            self.selection["weights"] = "last step" + averaged
            self.selection["chosen_step"] = len(rows)
        if rank == 0 and sel.evaluations:
            log.info("%s: %s; keeping the weights of step %d (val score %.4f)", stage, self.selection["stopped"],
                     self.selection["chosen_step"], sel.best_score)
        if callbacks:
            elapsed = time.perf_counter() - start
            summary = {**self.selection, "steps_run": len(rows), "final_loss": rows[-1]["loss"] if rows else None,
                       "samples_per_s": samples / elapsed if elapsed > 0 else None}
            for cb in callbacks:
                cb.on_end(stage, summary)
        model.eval()
        return pd.DataFrame(rows)

    def _validate(self, validator: Validator, model: OmniVec2, sel: Selection, step: int, row: dict[str, Any],
                  stage: str, rank: int) -> bool:
        """Score the model (every rank scores the same rows, so all take the same decision); the
        scores go into the history ``row``. Returns whether the stage should stop."""
        model.eval()
        with self._autocast():
            score, metrics = validator(model, self.device)
        model.train()
        row.update({"val.score": score, **metrics})
        stop = sel.update(step + 1, score, model)
        if rank == 0:
            log.info("%s step %d: val score %.4f (best %.4f at step %d)", stage, step + 1, score, sel.best_score,
                     sel.best_step)
        return stop

    def _flush(self, pending: list[_Pending], rows: list[dict[str, Any]], stage: str,
               world: int) -> list[tuple[dict[str, Any], float]]:
        """Read the pending steps' device values (one host read), append their history rows and empty
        ``pending``; a non-finite step raises or is counted as skipped (``trainer.nonfinite``).

        Returns ``(row, samples/s so far)`` of every new row.
        """
        new = _read_pending(pending, world)
        pending.clear()
        out = []
        for row, samples_per_s, problem in new:
            rows.append(row)
            if problem is not None:
                if self.cfg.nonfinite == "raise":
                    raise FloatingPointError(f"{stage}: {problem} at step {row['step']} ({row['what']}); lower the "
                                             "learning rate, check the inputs, or set trainer.nonfinite: skip")
                self.skipped += 1
                if ddp.rank_world()[0] == 0:
                    log.warning("%s: %s at step %d (%s); update skipped (%d so far)", stage, problem, row["step"],
                                row["what"], self.skipped)
            out.append((row, samples_per_s))
        return out

    @property
    def _device_skip(self) -> bool:
        """Whether a non-finite update is skipped on the device (fused AdamW honours ``found_inf``)."""
        return self.device.type in ("cpu", "cuda")

    def _step(self, runner: torch.nn.Module, opt: torch.optim.Optimizer, ctx: StepContext, world: int
              ) -> tuple[list[StepOutput], Tensor, Tensor]:
        """Forward/backward of ``grad_accum_steps`` micro-batches and gradient clipping, with no host read.

        Returns the micro-batch outputs, a device bool: whether the losses and the gradient norm are
        finite (the update may be applied), and the gradient norm. A non-finite loss makes the gradients non-finite too; under
        DDP the gradients are averaged and the flag is reduced over ranks, so every rank decides alike.
        """
        cfg = self.cfg
        k = cfg.grad_accum_steps
        opt.zero_grad(set_to_none=True)
        outs: list[StepOutput] = []
        for micro in range(k):
            last = micro == k - 1
            sync = contextlib.nullcontext() if world == 1 or last else runner.no_sync()
            with sync:
                with self._autocast():
                    out = runner(ctx)
                outs.append(out)
                (out.loss / k).backward()
        norm = torch.nn.utils.clip_grad_norm_(runner.parameters(),
                                              cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        losses = torch.stack([o.loss.detach().float() for o in outs])
        ok = torch.isfinite(losses).all() & torch.isfinite(norm.to(losses.device))
        if world > 1:
            ok = _all_ranks(ok)
        return outs, ok, norm.detach()


@dataclass
class _Pending:
    """A finished step whose device values (losses, gradient norm, finiteness) are not read yet."""

    step: int
    losses: list[Tensor]
    parts: list[dict[str, Tensor]]
    ok: Tensor
    norm: Tensor
    what: str
    lr: float
    elapsed: float
    samples: int

    @classmethod
    def of(cls, step: int, outs: list[StepOutput], ok: Tensor, norm: Tensor, lr: float, elapsed: float,
           samples: int) -> "_Pending":
        """The detached values of a step's micro-batch outputs (their autograd graphs are not kept)."""
        return cls(step, [o.loss.detach() for o in outs], [o.parts for o in outs], ok, norm,
                   ",".join(dict.fromkeys(o.what for o in outs)), lr, elapsed, samples)


def _read_pending(pending: list[_Pending], world: int) -> list[tuple[dict[str, Any], float, str | None]]:
    """``(history row, samples/s so far, problem)`` of every ``pending`` step, from one host read of all
    their device values (after one all-reduce across ranks).

    A row holds the mean loss and per-part losses over micro-batches (then over ranks) and whether the
    update was skipped; ``problem`` says what was non-finite (None when the update was applied).
    """
    if not pending:
        return []
    layout, values = [], []
    for p in pending:
        keys = sorted({key for micro in p.parts for key in micro})
        parts = [torch.stack([micro[key].detach().float() for micro in p.parts if key in micro]).mean()
                 for key in keys]
        loss = torch.stack([v.float() for v in p.losses]).mean()
        layout.append(keys)
        values += [loss, p.norm.float().to(loss.device), p.ok.float().to(loss.device), *parts]
    flat = torch.stack(values)
    if world > 1:
        flat = _mean_over_ranks(flat)
    host = flat.tolist()  # the one host read
    out, i = [], 0
    for p, keys in zip(pending, layout):
        loss, norm, ok = host[i:i + 3]
        parts = dict(zip(keys, host[i + 3:i + 3 + len(keys)]))
        i += 3 + len(keys)
        row: dict[str, Any] = {"step": p.step, "loss": loss, "lr": p.lr, "what": p.what, "elapsed_s": p.elapsed,
                               "skipped": ok < 1.0, **{f"loss.{k}": v for k, v in parts.items()}}
        problem = None if ok >= 1.0 else (f"non-finite loss {loss}" if not math.isfinite(loss)
                                          else f"non-finite gradient (norm {norm})")
        out.append((row, p.samples / p.elapsed if p.elapsed > 0 else 0.0, problem))
    return out


def _tell_callbacks(stage: str, flushed: list[tuple[dict[str, Any], float]],
                    callbacks: Sequence[TrainingCallback], ends: bool) -> None:
    """Hand the rows read at a flush, in step order, to the tracking callbacks and :data:`STEP_CALLBACKS`;
    ``ends``: the last of them is the stage's last step."""
    for i, (row, samples_per_s) in enumerate(flushed):
        if callbacks:
            info = {**row, "samples_per_s": samples_per_s, "last": ends and i == len(flushed) - 1}
            for cb in callbacks:
                cb.on_step(stage, row["step"], info)
        for callback in STEP_CALLBACKS:
            callback(stage, row["step"], row["loss"])


def _all_ranks(flag: Tensor) -> Tensor:
    """A device bool that is true only where ``flag`` is true on every rank (an all-reduce, no host read)."""
    import torch.distributed as dist

    t = flag.to(torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.bool()


def _mean_over_ranks(values: Tensor) -> Tensor:
    """``values`` averaged over the ranks (float64, on the device of the process group's backend)."""
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = values.to(device, torch.float64)
    dist.all_reduce(t)
    return t / dist.get_world_size()

"""One trainer for every stage: optimisation, device placement, logging, loss history."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.models.layers import Block
from omnivec2_pipelines.training import distributed as ddp
from omnivec2_pipelines.training.config import TrainerConfig
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

#: Callbacks ``fn(stage, step, loss)`` called after every step of every stage (e.g. a hyperparameter
#: sweep reporting intermediate values to its pruner). They may raise to stop the stage. For more than
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


def compile_blocks(model: torch.nn.Module) -> int:
    """``torch.compile`` every transformer block in place (dynamic shapes: token counts vary by
    modality and masking); returns how many were compiled. Weights and state-dict keys are unchanged."""
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for blk in blocks:
        blk.compile(dynamic=True)
    return len(blocks)


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
        state = load_resume_state(resume, stage) if rank == 0 else None
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
        best evaluation. :attr:`selection` then says which step was chosen and why training stopped,
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
            log.info("%s: compiled %d transformer blocks", stage, compile_blocks(model))
        opt = torch.optim.AdamW(param_groups(model, objective, cfg), lr=cfg.lr,
                                fused=self.device.type in ("cpu", "cuda"))  # one kernel for all parameters
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
        ctx = StepContext(0, np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed), self.device,
                          (rank, world), cfg.pin_memory and self.device.type == "cuda")
        sel = Selection(cfg.early_stopping)
        validate = validator is not None and cfg.eval_every > 0
        state = self._load_resume(resume, stage) if resume else None
        first, rows = 0, []
        if state is None and continue_from is not None:
            first, rows = self._restore(continue_from, stage, model, opt, sched, ctx, objective, sel)
            sel.since_best = 0
        elif state is not None:
            first, rows = self._restore(state, stage, model, opt, sched, ctx, objective, sel)
        runner: torch.nn.Module = _StepModule(model, objective)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # each step trains only some tokenizers/heads; DDP leaves the others' gradients None (no update)
            runner = DistributedDataParallel(runner, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None, find_unused_parameters=True)
        start = time.perf_counter()
        samples = skipped = 0
        if rank == 0:
            log.info("%s: %d steps on %s x %d rank(s) (%d parameters, %d micro-batch(es) per step)", stage,
                     cfg.steps, self.device, world, sum(p.numel() for p in model.parameters()),
                     cfg.grad_accum_steps)
        bar = tqdm(range(first, cfg.steps), desc=stage, disable=None if cfg.progress and rank == 0 else True,
                   dynamic_ncols=True, leave=False, initial=first, total=cfg.steps)
        for step in bar:
            ctx.step = step
            outs, problem = self._step(runner, opt, ctx, world)
            what = ",".join(dict.fromkeys(o.what for o in outs))
            if problem is not None:
                if cfg.nonfinite == "raise":
                    raise FloatingPointError(f"{stage}: {problem} at step {step} ({what}); lower the "
                                             f"learning rate, check the inputs, or set trainer.nonfinite: skip")
                skipped += 1
                if rank == 0:
                    log.warning("%s: %s at step %d (%s); update skipped (%d so far)", stage, problem, step, what,
                                skipped)
            else:
                opt.step()
            sched.step()
            samples += sum(o.samples for o in outs) * world
            elapsed = time.perf_counter() - start
            loss, parts = _reduce_losses(outs)
            rows.append({"step": step, "loss": loss, "lr": opt.param_groups[0]["lr"], "what": what,
                         "elapsed_s": elapsed, "skipped": problem is not None,
                         **{f"loss.{k}": v for k, v in parts.items()}})
            bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{samples / elapsed:.0f}")
            if rank == 0 and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
                recent = np.mean([r["loss"] for r in rows[-cfg.log_every:]])
                log.info("%s step %d/%d loss %.4f (%.0f samples/s)", stage, step + 1, cfg.steps, recent,
                         samples / elapsed)
            stop = False
            if validate and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
                stop = self._validate(validator, model, sel, step, rows[-1], stage, rank)
                for cb in callbacks:
                    cb.on_eval(stage, step, rows[-1])
            if callbacks:
                info = {**rows[-1], "samples_per_s": samples / elapsed, "last": stop or step + 1 == cfg.steps}
                for cb in callbacks:
                    cb.on_step(stage, step, info)
            if (rank == 0 and resume is not None and resume.every and (step + 1) % resume.every == 0
                    and step + 1 < cfg.steps and not stop):
                save_resume_state(resume, capture_state(step + 1, model, opt, ctx.generator, ctx.rng,
                                                        objective.state_dict(), rows, sel.state_dict(),
                                                        sel.best_state, {"stage": stage, "steps": cfg.steps}))
            if on_step is not None:
                on_step(step)
            for callback in STEP_CALLBACKS:
                callback(stage, step, rows[-1]["loss"])
            if stop:
                break
        bar.close()
        if resume is not None and rank == 0:
            clear_resume_state(resume)
        self.final_state = capture_state(len(rows), model, opt, ctx.generator, ctx.rng, objective.state_dict(),
                                         rows, sel.state_dict(), sel.best_state,
                                         {"stage": stage, "steps": cfg.steps}) if rank == 0 else None
        self.selection = sel.summary(len(rows), cfg.steps)
        self.selection["best_step"] = sel.best_step if sel.evaluations else None
        if cfg.select_best and sel.best_state is not None:
            model.load_state_dict(sel.best_state)
            self.selection["weights"] = "best val step"
        else:
            self.selection["weights"] = "last step"
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

    def _step(self, runner: torch.nn.Module, opt: torch.optim.Optimizer, ctx: StepContext, world: int
              ) -> tuple[list[StepOutput], str | None]:
        """Forward/backward of ``grad_accum_steps`` micro-batches and gradient clipping.

        Returns the micro-batch outputs and what went wrong (None when the update may be applied).
        Every rank takes the same decision, so no rank waits for a collective another skipped.
        """
        cfg = self.cfg
        k = cfg.grad_accum_steps
        opt.zero_grad(set_to_none=True)
        outs: list[StepOutput] = []
        problem = None
        for micro in range(k):
            last = micro == k - 1
            sync = contextlib.nullcontext() if world == 1 or last else runner.no_sync()
            with sync:
                with self._autocast():
                    out = runner(ctx)
                outs.append(out)
                finite = ddp.all_ranks_true(bool(torch.isfinite(out.loss)))
                if not finite and problem is None:
                    problem = f"non-finite loss {out.loss.item()}" + (" on some rank" if world > 1 else "")
                # a skipped micro-batch still runs backward (on zero) so DDP's gradient hooks stay in step
                (out.loss / k if finite else out.loss.nan_to_num(0.0, 0.0, 0.0) * 0.0).backward()
        if problem is None:
            norm = torch.nn.utils.clip_grad_norm_(runner.parameters(),
                                                  cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            if not torch.isfinite(norm):
                problem = f"non-finite gradient (norm {norm.item()})"
        return outs, problem


def _reduce_losses(outs: list[StepOutput]) -> tuple[float, dict[str, float]]:
    """Mean loss and per-part losses over micro-batches, then over ranks (same on every rank)."""
    parts: dict[str, list[float]] = {}
    for o in outs:
        for key, v in o.parts.items():
            parts.setdefault(key, []).append(v)
    keys = sorted(parts)
    values = ddp.mean_across_ranks([float(np.mean([o.loss.item() for o in outs])),
                                    *(float(np.mean(parts[key])) for key in keys)])
    return values[0], dict(zip(keys, values[1:]))

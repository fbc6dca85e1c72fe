"""One trainer for every stage: optimisation, device placement, logging, loss history."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.training.objectives import Objective, StepContext
from omnivec2_pipelines.training.resume import (
    ResumeConfig,
    clear_resume_state,
    load_resume_state,
    save_resume_state,
)

log = logging.getLogger(__name__)

#: Callbacks ``fn(stage, step, loss)`` called after every step of every stage (e.g. a hyperparameter
#: sweep reporting intermediate values to its pruner). They may raise to stop the stage.
STEP_CALLBACKS: list[Callable[[str, int, float], None]] = []


@dataclass
class TrainerConfig:
    """Optimisation settings shared by all stages.

    Attributes:
        steps: Optimiser steps.
        lr: Peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps before the cosine decay.
        min_lr_ratio: Final learning rate as a share of ``lr``.
        grad_clip: Max global gradient norm (0 disables clipping).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        seed: Seeds sampling, masking and dropout.
        log_every: Log a line every N steps.
        progress: Show a progress bar (only when attached to a terminal).
        checkpoint_every: Save the full training state every N steps so a killed run resumes
            (0 disables saving and resuming).
        resume_dir: Folder for the resume states (one subfolder per stage; "" disables).
        nonfinite: What a non-finite loss or gradient does: ``"raise"`` (stop the stage with an
            error naming stage, step and modality/task) or ``"skip"`` (drop that update, count it).
    """

    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    device: str = "auto"
    seed: int = 0
    log_every: int = 50
    progress: bool = True
    checkpoint_every: int = 100
    resume_dir: str = ""
    nonfinite: str = "raise"

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 1, "lr": self.lr > 0, "weight_decay": self.weight_decay >= 0,
                  "warmup_steps": self.warmup_steps >= 0, "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
                  "grad_clip": self.grad_clip >= 0, "log_every": self.log_every >= 1,
                  "checkpoint_every": self.checkpoint_every >= 0,
                  "nonfinite": self.nonfinite in ("raise", "skip")}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"trainer.{key}={getattr(self, key)!r} is out of range")

    @classmethod
    def from_params(cls, *param_dicts: dict[str, Any]) -> "TrainerConfig":
        """Merge parameter mappings (later wins), keeping only trainer keys, with type checks."""
        known = {f.name: f for f in fields(cls)}
        merged: dict[str, Any] = {}
        for d in param_dicts:
            merged.update({k: v for k, v in (d or {}).items() if k in known})
        for k, v in merged.items():
            default = known[k].default
            expected = type(default)
            if expected is float and isinstance(v, int) and not isinstance(v, bool):
                merged[k] = float(v)
            elif not isinstance(v, expected) or (expected is int and isinstance(v, bool)):
                raise TypeError(f"trainer parameter {k!r} must be {expected.__name__}, got {v!r}")
        return cls(**merged)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is checked for availability."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def _lr_factor(step: int, cfg: TrainerConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """Runs ``cfg.steps`` steps of an :class:`Objective` on a model.

    Args:
        cfg: Optimisation settings.
    """

    def __init__(self, cfg: TrainerConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self, model: OmniVec2, objective: Objective, stage: str, resume: ResumeConfig | None = None,
            on_step: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Train in place; returns the loss history (one row per step).

        Args:
            model: The network (moved to the trainer's device).
            objective: What a step samples and optimises.
            stage: Name for logs and errors.
            resume: Where to save the resume state every N steps and resume from it.
            on_step: Called with the step index after every completed step.

        Raises:
            FloatingPointError: on a non-finite loss, naming stage, step and what was trained.
        """
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model.to(self.device).train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "pos" in n]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
        ctx = StepContext(0, np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed), self.device)
        rows: list[dict[str, Any]] = []
        first = 0
        if resume is not None:
            loaded = load_resume_state(resume, stage, model, opt, sched, ctx.generator, ctx.rng)
            if loaded is not None:
                first, objective_state, rows = loaded
                objective.load_state_dict(objective_state)
        start = time.perf_counter()
        samples = skipped = 0
        log.info("%s: %d steps on %s (%d parameters)", stage, cfg.steps, self.device,
                 sum(p.numel() for p in model.parameters()))
        bar = tqdm(range(first, cfg.steps), desc=stage, disable=None if cfg.progress else True,
                   dynamic_ncols=True, leave=False, initial=first, total=cfg.steps)
        for step in bar:
            ctx.step = step
            with self._autocast():
                out = objective.step(model, ctx)
            opt.zero_grad(set_to_none=True)
            problem = None
            if not torch.isfinite(out.loss):
                problem = f"non-finite loss {out.loss.item()}"
            else:
                out.loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                      cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                if not torch.isfinite(norm):
                    problem = f"non-finite gradient (norm {norm.item()})"
            if problem is not None:
                if cfg.nonfinite == "raise":
                    raise FloatingPointError(f"{stage}: {problem} at step {step} ({out.what}); lower the "
                                             f"learning rate, check the inputs, or set trainer.nonfinite: skip")
                skipped += 1
                log.warning("%s: %s at step %d (%s); update skipped (%d so far)", stage, problem, step, out.what,
                            skipped)
            else:
                opt.step()
            sched.step()
            samples += out.samples
            elapsed = time.perf_counter() - start
            rows.append({"step": step, "loss": out.loss.item(), "lr": opt.param_groups[0]["lr"],
                         "what": out.what, "elapsed_s": elapsed, "skipped": problem is not None,
                         **{f"loss.{k}": v for k, v in out.parts.items()}})
            bar.set_postfix(loss=f"{out.loss.item():.4f}", samples_per_s=f"{samples / elapsed:.0f}")
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                recent = np.mean([r["loss"] for r in rows[-cfg.log_every:]])
                log.info("%s step %d/%d loss %.4f (%.0f samples/s)", stage, step + 1, cfg.steps, recent,
                         samples / elapsed)
            if resume is not None and resume.every and (step + 1) % resume.every == 0 and step + 1 < cfg.steps:
                save_resume_state(resume, step + 1, model, opt, sched, ctx.generator, ctx.rng,
                                  objective.state_dict(), rows)
            if on_step is not None:
                on_step(step)
            for callback in STEP_CALLBACKS:
                callback(stage, step, rows[-1]["loss"])
        bar.close()
        if resume is not None:
            clear_resume_state(resume)
        model.eval()
        return pd.DataFrame(rows)

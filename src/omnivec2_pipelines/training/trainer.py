"""One trainer for every stage: optimisation, device placement, logging, loss history."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.training.objectives import Objective, StepContext

log = logging.getLogger(__name__)


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

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 1, "lr": self.lr > 0, "weight_decay": self.weight_decay >= 0,
                  "warmup_steps": self.warmup_steps >= 0, "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
                  "grad_clip": self.grad_clip >= 0, "log_every": self.log_every >= 1}
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

    def fit(self, model: OmniVec2, objective: Objective, stage: str) -> pd.DataFrame:
        """Train in place; returns the loss history (one row per step).

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
        start = time.perf_counter()
        samples = 0
        log.info("%s: %d steps on %s (%d parameters)", stage, cfg.steps, self.device,
                 sum(p.numel() for p in model.parameters()))
        bar = tqdm(range(cfg.steps), desc=stage, disable=None if cfg.progress else True,
                   dynamic_ncols=True, leave=False)
        for step in bar:
            ctx.step = step
            with self._autocast():
                out = objective.step(model, ctx)
            if not torch.isfinite(out.loss):
                raise FloatingPointError(f"{stage}: non-finite loss {out.loss.item()} at step {step} "
                                         f"({out.what}); lower the learning rate or check the inputs")
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            samples += out.samples
            elapsed = time.perf_counter() - start
            rows.append({"step": step, "loss": out.loss.item(), "lr": opt.param_groups[0]["lr"],
                         "what": out.what, "elapsed_s": elapsed,
                         **{f"loss.{k}": v for k, v in out.parts.items()}})
            bar.set_postfix(loss=f"{out.loss.item():.4f}", samples_per_s=f"{samples / elapsed:.0f}")
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                recent = np.mean([r["loss"] for r in rows[-cfg.log_every:]])
                log.info("%s step %d/%d loss %.4f (%.0f samples/s)", stage, step + 1, cfg.steps, recent,
                         samples / elapsed)
        bar.close()
        model.eval()
        return pd.DataFrame(rows)

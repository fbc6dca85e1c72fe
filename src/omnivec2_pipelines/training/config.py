"""Trainer settings as a dataclass (torch-free, so parameters can be checked without loading torch)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnivec2_pipelines.training.distributed import LaunchSpec


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
        resume_from: A finished stage's checkpoint directory to continue for more steps (its saved
            ``training_state/``: weights of the last step, optimizer, RNGs, data positions, history,
            model selection); ``steps`` is then the new total. "" (or null): the stage starts as usual.
            Not crash-resume, which is automatic (``checkpoint_every``, ``resume_dir``).
        nonfinite: What a non-finite loss or gradient does: ``"raise"`` (stop the stage with an
            error naming stage, step and modality/task) or ``"skip"`` (drop that update, count it).
        grad_accum_steps: Micro-batches whose gradients are summed into one optimiser step (the
            effective batch is ``batch_size x grad_accum_steps x world size``).
        compile: ``torch.compile`` the transformer blocks (dynamic shapes; needs a C++ compiler on CPU).
        pin_memory: Page-lock host batches and copy them without blocking (CUDA only).
        nproc_per_node: Data-parallel worker processes on this machine (1 = no torch.distributed).
        nnodes: Machines of a multi-node run (each runs the same command).
        rdzv_endpoint: ``host:port`` every node can reach ("" = this machine, single node).
        rdzv_backend: Elastic rendezvous backend (``c10d`` needs no extra service).
        rdzv_id: Job id shared by the nodes of one run ("" = a fresh id, single node).
        rdzv_timeout: Seconds to wait for all nodes to join before failing.
        max_restarts: Restarts of a failed worker group by the elastic agent (resuming from the
            last resume state).
        eval_every: Evaluate on the val split every N steps and at the last step (0: never; the
            stage then keeps its last step's weights).
        eval_samples: Val rows per modality (pretraining) or per task (multitask) in each evaluation.
        select_best: Keep the weights of the best validation step, not the last step's.
        early_stopping: End the stage after this many evaluations without a val improvement (0: off).
        select_window: The selection and early stopping compare the mean val score of the last N
            evaluations (1: each evaluation's own score).
        ema_decay: Keep an exponential moving average of the trained weights with this decay per step
            (warmed up as ``min(decay, (1 + t) / (10 + t))``); validation, the model selection and the
            saved checkpoint use the average (0: off, the live weights).
        track: Experiment tracking of the training stages: ``"dvclive"`` (DVCLive logs, see
            :mod:`~omnivec2_pipelines.training.tracking`) or ``"none"``.
        track_dir: The DVCLive folder (one subfolder per stage, and the ``dvc.yaml`` that declares them).
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
    resume_from: str = ""
    nonfinite: str = "raise"
    grad_accum_steps: int = 1
    compile: bool = False
    pin_memory: bool = True
    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str = ""
    rdzv_backend: str = "c10d"
    rdzv_id: str = ""
    rdzv_timeout: int = 300
    max_restarts: int = 0
    eval_every: int = 0
    eval_samples: int = 256
    select_best: bool = True
    early_stopping: int = 0
    select_window: int = 1
    ema_decay: float = 0.0
    track: str = "none"
    track_dir: str = "dvclive"

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 1, "lr": self.lr > 0, "weight_decay": self.weight_decay >= 0,
                  "warmup_steps": self.warmup_steps >= 0, "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
                  "grad_clip": self.grad_clip >= 0, "log_every": self.log_every >= 1,
                  "checkpoint_every": self.checkpoint_every >= 0,
                  "nonfinite": self.nonfinite in ("raise", "skip"), "grad_accum_steps": self.grad_accum_steps >= 1,
                  "nproc_per_node": self.nproc_per_node >= 1, "nnodes": self.nnodes >= 1,
                  "rdzv_timeout": self.rdzv_timeout >= 1, "max_restarts": self.max_restarts >= 0,
                  "eval_every": self.eval_every >= 0, "eval_samples": self.eval_samples >= 1,
                  "early_stopping": self.early_stopping >= 0, "select_window": self.select_window >= 1, "ema_decay": 0.0 <= self.ema_decay < 1.0,
                  "rdzv_backend": bool(self.rdzv_backend)}
        from omnivec2_pipelines.training.tracking import TRACKERS

        if self.track not in TRACKERS:
            raise ValueError(f"trainer.track={self.track!r} must be one of {list(TRACKERS)}")
        if self.track != "none" and not self.track_dir:
            raise ValueError(f"trainer.track_dir must name a folder when trainer.track={self.track!r}")
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
            if v is None and default == "":  # a path or id left empty in YAML (``resume_from: null``)
                merged[k] = ""
            elif v is None and k == "track":  # ``track: null``: no tracking
                merged[k] = "none"
            elif expected is float and isinstance(v, int) and not isinstance(v, bool):
                merged[k] = float(v)
            elif not isinstance(v, expected) or (expected is int and isinstance(v, bool)):
                raise TypeError(f"trainer parameter {k!r} must be {expected.__name__}, got {v!r}")
        return cls(**merged)

    @property
    def world_size(self) -> int:
        """Data-parallel ranks of a run (``nproc_per_node x nnodes``)."""
        return self.nproc_per_node * self.nnodes

    def launch_spec(self) -> LaunchSpec:
        """Workers and rendezvous of a data-parallel run of this config."""
        from omnivec2_pipelines.training.distributed import LaunchSpec
        from omnivec2_pipelines.training.trainer import resolve_device

        return LaunchSpec(self.nproc_per_node, self.nnodes, self.rdzv_endpoint, self.rdzv_backend, self.rdzv_id,
                          self.rdzv_timeout, self.max_restarts, resolve_device(self.device).type)

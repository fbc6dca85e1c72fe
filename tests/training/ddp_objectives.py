"""Objectives that fail on purpose in one rank (importable by spawned worker processes)."""

from __future__ import annotations

import os

from omnivec2_pipelines.training import distributed
from omnivec2_pipelines.training.objectives import MaskedUnimodal, StepContext, StepOutput


class FailingOnRank1(MaskedUnimodal):
    """Masked pretraining whose rank 1 raises (``mode="raise"``) or dies (``mode="exit"``) at step 2."""

    def __init__(self, *args, mode: str = "raise", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mode = mode

    def step(self, model, ctx: StepContext) -> StepOutput:
        if distributed.rank_world()[0] == 1 and ctx.step == 2:
            if self.mode == "exit":
                os._exit(3)
            raise RuntimeError("rank 1 fails on purpose")
        return super().step(model, ctx)


class MustResume(MaskedUnimodal):
    """Masked pretraining that refuses to run steps before ``first`` (they should come from a resume state)."""

    def __init__(self, *args, first: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.first = first

    def step(self, model, ctx: StepContext) -> StepOutput:
        if ctx.step < self.first:
            raise RuntimeError(f"step {ctx.step} ran again instead of being resumed")
        return super().step(model, ctx)

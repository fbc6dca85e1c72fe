"""No host read of device values inside a training step: the trainer reads losses every ``log_every`` steps."""

from __future__ import annotations

import pytest
import torch

from benchmarks.train_step import HostReads
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.config import TrainerConfig
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import MaskedPaired, MaskedUnimodal, Multitask
from omnivec2_pipelines.training.trainer import Trainer
from tests.conftest import classification_tasks

STEPS = 8


def _objective(name: str, bundles, model):
    sources = {m: BatchSource(b.get("train", "x"), seed=i, name=m) for i, (m, b) in enumerate(bundles.items())}
    if name == "unimodal":
        return MaskedUnimodal(sources, {m: 0.5 for m in bundles}, 8)
    if name == "paired":
        return MaskedPaired(sources, {m: 0.5 for m in bundles}, 8)
    return Multitask(classification_tasks(bundles, model), 8, single_stream=0.5)


def _reads_per_step(bundles, params, name: str, **cfg) -> tuple[list[int], object]:
    """Host reads counted between the ends of consecutive steps (the first step's set-up excluded)."""
    model = stages.build_model(params, bundles)
    objective = _objective(name, bundles, model)
    marks: list[int] = []
    with HostReads() as reads:
        reads.active = True
        history = Trainer(TrainerConfig(steps=STEPS, progress=False, eval_every=0, **cfg)).fit(
            model, objective, name, on_step=lambda step: marks.append(reads.count))
    return [b - a for a, b in zip(marks, marks[1:])], history


@pytest.mark.parametrize("name", ["unimodal", "paired", "multitask"])
def test_a_step_reads_nothing_back_from_the_device_between_log_flushes(bundles, tiny_model_params, name) -> None:
    per_step, history = _reads_per_step(bundles, tiny_model_params, name, log_every=4)
    # steps 2..8: one read (the flush of 4 steps' losses) at steps 4 and 8, none in between
    assert per_step == [0, 0, 1, 0, 0, 0, 1], per_step
    assert len(history) == STEPS and history["loss"].notna().all()
    assert any(c.startswith("loss.") for c in history.columns)  # per-part losses still recorded


def test_skipping_non_finite_updates_needs_no_per_step_read(bundles, tiny_model_params) -> None:
    per_step, history = _reads_per_step(bundles, tiny_model_params, "multitask", log_every=100,
                                        nonfinite="skip", lr=float("inf"))
    assert per_step[:-1] == [0] * (STEPS - 2)  # one flush at the end
    assert history["skipped"].iloc[1:].all()  # an infinite learning rate poisons every update after the first


def test_the_counter_sees_a_host_read() -> None:
    with HostReads() as reads:
        reads.active = True
        float(torch.ones(()).sum())
        torch.ones(2).tolist()
    assert reads.count == 2

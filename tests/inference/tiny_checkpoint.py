"""A tiny checkpoint trained on real tiny data of image classification and infrared regression (shared by tests)."""

from __future__ import annotations

from pathlib import Path

from omnivec2_pipelines.modalities.base import ArrayBundle
from tests.tiny import TINY, tiny_tables_and_bundles

#: The modalities of the tiny checkpoint: a classification task (image) and a regression one with a target
#: scale (infrared spectra, fat %).
MODALITIES = ("image", "infrared")


def tiny_data(root: Path) -> tuple[dict, dict[str, ArrayBundle]]:
    """Tiny raw data of :data:`MODALITIES` under ``root`` and ``({modality: table}, {modality: bundle})``."""
    return tiny_tables_and_bundles(root, MODALITIES)


def train_checkpoint(bundles: dict[str, ArrayBundle], path: Path, steps: int = 6) -> Path:
    """A few multitask steps of the tiny model on ``bundles``, saved at ``path``."""
    from omnivec2_pipelines.training import stages

    trainer = {**TINY["trainer"], "eval_every": 0, "checkpoint_every": 0}
    ck = stages.fresh_checkpoint(bundles, TINY["model"], 0)
    ck, _ = stages.multitask(ck, bundles, {"steps": steps, "batch_size": 8}, trainer)
    ck.save(path)
    return path

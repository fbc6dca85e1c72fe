"""Shared fixtures: small synthetic array bundles shaped like the real modalities' output."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# two threads for one pytest process; one each when `make test` runs two xdist workers on the two cores
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))

TINY_MODEL = {"width": 32, "depth_f": 1, "heads_f": 2, "reduced_width": 32, "depth_g": 1, "heads_g": 2,
              "fusion_depth": 1, "decoder_depth": 1, "mlp_ratio": 2.0, "dropout": 0.0}


def _classes(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.integers(0, k, size=n).astype(np.int64)


def grid_bundle(name: str, n: int = 48, k: int = 3, c: int = 1, hw: tuple[int, int] = (8, 8),
                seed: int = 0) -> ArrayBundle:
    """Images whose class sets the mean brightness of one quadrant: learnable by a tiny model."""
    rng = np.random.default_rng(seed)
    arrays, splits = {}, {}
    for split, size in (("train", n), ("val", n // 4), ("test", n // 2)):
        y = _classes(rng, size, k)
        x = rng.normal(size=(size, c, *hw)).astype(np.float32) * 0.3
        for i, cls in enumerate(y):
            x[i, :, : hw[0] // 2, : hw[1] // 2] += 2.0 * cls - (k - 1)
        arrays[f"{split}.x"], arrays[f"{split}.y.classification"] = x, y
        splits[split] = size
    task = TaskSpec("classification", "classification", "x", "y.classification", k, (k,),
                    tuple(f"c{i}" for i in range(k)))
    meta = {"modality": name, "pretrain_input_key": "x", "splits": splits,
            "tokenizer": {"kind": "patch2d", "in_channels": c, "input_size": list(hw), "patch_size": [4, 4]},
            "tasks": {"classification": task.to_dict()}}
    return ArrayBundle(arrays, meta)


def series_bundle(name: str = "series", n: int = 48, k: int = 2, c: int = 2, length: int = 32, horizon: int = 8,
                  seed: int = 1) -> ArrayBundle:
    """Sinusoids whose frequency is the class; forecasting = their continuation."""
    rng = np.random.default_rng(seed)
    arrays, splits = {}, {}
    t = np.arange(length, dtype=np.float32)
    for split, size in (("train", n), ("val", n // 4), ("test", n // 2)):
        y = _classes(rng, size, k)
        phase = rng.uniform(0, 2 * np.pi, size=(size, c, 1))
        x = np.sin(2 * np.pi * (y[:, None, None] + 1) * t / 16 + phase).astype(np.float32)
        x += rng.normal(scale=0.05, size=x.shape).astype(np.float32)
        arrays[f"{split}.x"], arrays[f"{split}.y.classification"] = x, y
        arrays[f"{split}.x_context"], arrays[f"{split}.y.forecasting"] = x[:, :, :-horizon], x[:, :, -horizon:]
        splits[split] = size
    tasks = {"classification": TaskSpec("classification", "classification", "x", "y.classification", k, (k,),
                                        ("slow", "fast")).to_dict(),
             "forecasting": TaskSpec("forecasting", "regression", "x_context", "y.forecasting", c * horizon,
                                     (c, horizon)).to_dict()}
    meta = {"modality": name, "pretrain_input_key": "x", "splits": splits, "tasks": tasks,
            "tokenizer": {"kind": "time_patch", "in_channels": c, "length": length, "patch_size": [8]}}
    return ArrayBundle(arrays, meta)


@pytest.fixture
def bundles() -> dict[str, ArrayBundle]:
    return {"grid": grid_bundle("grid"), "series": series_bundle("series")}


@pytest.fixture
def tiny_model_params() -> dict:
    return dict(TINY_MODEL)


@pytest.fixture(scope="session")
def raw_root(tmp_path_factory):
    """Tiny embedded data of all thirteen modalities, written once per session."""
    from tests.tiny import make_raw

    return make_raw(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def tiny_bundles(raw_root) -> dict[str, ArrayBundle]:
    """Tokenized arrays of all thirteen modalities (tiny data), once per session."""
    from tests.tiny import make_bundles

    return make_bundles(raw_root)


def classification_tasks(bundles: dict[str, ArrayBundle], model) -> list:
    """A classification head on ``model`` and a multitask ``TaskData`` (train rows) for every bundle."""
    from omnivec2_pipelines.models import HeadConfig
    from omnivec2_pipelines.training.data import BatchSource
    from omnivec2_pipelines.training.objectives import TaskData

    tasks = []
    for i, (m, b) in enumerate(bundles.items()):
        spec = b.tasks["classification"]
        model.add_head(HeadConfig(m, "classification", spec.kind, spec.out_dim))
        tasks.append(TaskData(m, "classification", spec.kind,
                              BatchSource(b.get("train", "x"), b.get("train", "y.classification"), i, m)))
    return tasks

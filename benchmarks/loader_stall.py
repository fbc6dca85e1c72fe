"""Section ``loader_stall``: share of training-step time spent waiting for data.

A synthetic image-like bundle is written as a sharded bundle on disk (the format the tokenization
pipeline writes), read back lazily (memory-mapped shards) and trained with the project's
:class:`~omnivec2_pipelines.training.trainer.Trainer` on masked unimodal pretraining. Every batch
source counts the seconds the training loop was blocked in ``draw`` (reading rows, waiting for the
read-ahead thread, the host-side copy); the stall is that sum over the fit's wall time.
The same run on in-memory arrays is reported beside it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.core import Check, SectionResult

#: (rows, image side, model width, depth, batch, steps) per mode.
SIZES = {"smoke": (64, 16, 32, 1, 8, 4), "full": (20000, 32, 256, 4, 32, 40)}


def _bundle(rows: int, side: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3, side, side)).astype(np.float32)  # (N, C, H, W)
    meta = {"modality": "image", "pretrain_input_key": "x", "splits": {"train": rows}, "tasks": {},
            "tokenizer": {"kind": "patch2d", "in_channels": 3, "input_size": [side, side], "patch_size": [4, 4]}}
    return {"train.x": x}, meta


def _fit(arrays: dict[str, Any], meta: dict[str, Any], width: int, depth: int, batch: int, steps: int,
         device: torch.device) -> dict[str, float]:
    from omnivec2_pipelines.modalities.base import ArrayBundle
    from omnivec2_pipelines.training.data import BatchSource
    from omnivec2_pipelines.training.objectives import MaskedUnimodal
    from omnivec2_pipelines.training.stages import build_model
    from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig

    torch.manual_seed(0)
    model = build_model({"width": width, "depth_f": depth, "heads_f": max(1, width // 64), "reduced_width": width,
                         "depth_g": 1, "heads_g": max(1, width // 64)}, {"image": ArrayBundle(arrays, meta)})
    source = BatchSource(arrays["train.x"], None, seed=0, name="image.train.x")
    objective = MaskedUnimodal({"image": source}, {"image": 0.75}, batch)
    cfg = TrainerConfig(steps=steps, warmup_steps=1, device=device.type, progress=False, log_every=10**6,
                        checkpoint_every=0)
    start = time.perf_counter()
    Trainer(cfg).fit(model, objective, "loader_stall")
    wall = time.perf_counter() - start
    return {"wall_s": wall, "wait_s": source.wait_s, "stall": source.wait_s / wall,
            "samples_s": steps * batch / wall}


def run(smoke: bool, device: torch.device) -> SectionResult:
    """Loader stall of streamed (sharded, memory-mapped) vs in-memory data; target < 5% streamed."""
    from omnivec2_pipelines.shards import load_bundle, save_bundle

    rows, side, width, depth, batch, steps = SIZES["smoke" if smoke else "full"]
    arrays, meta = _bundle(rows, side)
    result = SectionResult(info={"rows": rows, "sample_shape": [3, side, side], "width": width, "depth": depth,
                                 "batch": batch, "steps": steps, "data_mib": arrays["train.x"].nbytes / 2**20},
                           notes=["stall = seconds blocked in BatchSource.draw / wall seconds of Trainer.fit; "
                                  "streamed = sharded safetensors read lazily with one batch read ahead. The "
                                  "shards were just written, so they are likely in the OS page cache (a cold disk "
                                  "is slower)"])
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        save_bundle(arrays, meta, Path(tmp) / "image", shard_mb=1.0 if smoke else 16.0)
        streamed, _ = load_bundle(Path(tmp) / "image")
        shards = len(streamed["train.x"].parts)
        _fit(arrays, meta, width, depth, batch, 2, device)  # warm-up: first-call allocations and kernels
        for name, data in (("in_memory", arrays), ("streamed", streamed)):
            result.rows.append({"data": name, **_fit(data, meta, width, depth, batch, steps, device)})
    result.info["shards"] = shards
    stall = result.rows[-1]["stall"]
    result.checks.append(Check.at_most("loader_stall_streamed", stall, 0.05))
    return result

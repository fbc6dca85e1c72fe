"""Section ``predict``: images/s of :class:`~omnivec2_pipelines.inference.Predictor` from PNG files, end to end.

10,000 generated 28×28 grayscale PNGs (64 in smoke mode) are written to a temporary folder (not timed). The
checkpoint is a freshly built network of the default ``model`` config of ``conf/base/parameters.yml`` with the
image tokenizer of ``conf/base/parameters_modalities/image.yml`` and a 10-class head (random weights: speed does
not depend on them). Timed separately, each best of repeats: reading (``read_inputs``: listing + PNG decoding),
preprocessing (the bundle's resize + normalisation), the model (batched single-stream inference on the
preprocessed arrays, at torch's thread count) and ``predict`` end to end (all of it, from the folder: files read in
chunks by a background thread while the model, with one intra-op thread fewer, runs on the previous chunk). With
more than one torch thread the model and ``predict`` are also timed with one. Target: end to end ≥ 1,000 images/s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.core import Check, SectionResult, best_time, load_conf

#: Images (smoke mode: :data:`SMOKE_IMAGES`) and the end-to-end target.
IMAGES, SMOKE_IMAGES, TARGET_IMAGES_S = 10_000, 64, 1000.0
BATCH_SIZE = 256


def write_pngs(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` 28×28 grayscale PNGs of random blobs under ``folder/<class>/`` (10 classes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = folder / str(i % 10)
        d.mkdir(parents=True, exist_ok=True)
        img = (rng.random((28, 28)) ** 3 * 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{i:05d}.png")


def default_checkpoint(folder: Path, path: Path) -> Path:
    """A fresh network of the default config with an image tokenizer (meta fitted on 100 of the PNGs)."""
    from omnivec2_pipelines.modalities import get_modality
    from omnivec2_pipelines.models import HeadConfig
    from omnivec2_pipelines.training.checkpoint import Checkpoint
    from omnivec2_pipelines.training.stages import build_model

    mod = get_modality("image")
    files = sorted(folder.rglob("*.png"))[:100]
    rows = mod.read_inputs([str(f) for f in files])
    rows = rows.assign(label=[i % 10 for i in range(len(rows))], label_name=[str(i % 10) for i in range(len(rows))],
                       split=["train"] * len(rows))
    bundle = mod.tokenize(rows, load_conf("parameters_modalities/image.yml")["image"]["tokenization"])
    model = build_model(load_conf("parameters.yml")["model"], {"image": bundle})
    model.add_head(HeadConfig("image", "classification", "classification", 10))
    Checkpoint(model, {"data": {"image": bundle.meta}}).save(path)
    return path


def run(smoke: bool, device: Any) -> SectionResult:
    """Read / preprocess / model / end-to-end images/s of the Predictor on PNG files."""
    import torch

    from omnivec2_pipelines.inference import Predictor
    from omnivec2_pipelines.modalities import get_modality

    n = SMOKE_IMAGES if smoke else IMAGES
    min_total_s = 0.0 if smoke else 10.0
    result = SectionResult(notes=[f"{n} generated 28x28 PNGs; default model config; batch {BATCH_SIZE}; "
                                  f"torch threads {torch.get_num_threads()}; best of repeats"])
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        folder = Path(tmp) / "pngs"
        write_pngs(folder, n)
        pred = Predictor.from_checkpoint(default_checkpoint(folder, Path(tmp) / "ckpt"), str(device), BATCH_SIZE)
        mod = get_modality("image")
        read_s, rows = best_time(lambda: mod.read_inputs(folder), min_total_s, max_reps=3)
        prep_s, x = best_time(lambda: pred.preprocess("image", "classification", rows), min_total_s, max_reps=3)
        model_s, _ = best_time(lambda: pred.forward("image", "classification", x), min_total_s, max_reps=3)
        e2e_s, out = best_time(lambda: pred.predict("image", "classification", folder), min_total_s, max_reps=3)
        timings = [("read (list + decode)", read_s), ("preprocess", prep_s), ("model", model_s), ("end to end", e2e_s)]
        threads = torch.get_num_threads()
        if threads > 1 and device.type == "cpu":  # on a loaded machine one intra-op thread can be faster
            torch.set_num_threads(1)
            try:
                timings += [("model, 1 torch thread", best_time(lambda: pred.forward("image", "classification", x),
                                                                min_total_s, max_reps=3)[0]),
                            ("end to end, 1 torch thread", best_time(
                                lambda: pred.predict("image", "classification", folder), min_total_s, max_reps=3)[0])]
            finally:
                torch.set_num_threads(threads)
        params = sum(p.numel() for p in pred.model.parameters())
    for stage, seconds in timings:
        result.rows.append({"stage": stage, "images": n, "seconds": seconds, "images_s": n / seconds})
    result.info.update({"params_m": params / 1e6, "batch_size": BATCH_SIZE, "predicted": len(out)})
    result.checks.append(Check.at_least("predict_end_to_end_images_s", n / e2e_s, TARGET_IMAGES_S))
    return result

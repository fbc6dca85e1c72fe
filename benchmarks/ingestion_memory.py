"""Section ``ingestion_memory``: peak memory of ingesting the image modality at 1x and 10x the data.

A synthetic ImageFolder tree (``root/{train,test}/<class>/*.png``, RGB) is written for each scale,
then :mod:`benchmarks.ingest_child` ingests it in a fresh process exactly as the Kedro ingestion
node does (node function + the catalog's table dataset) and reports its RSS after imports
(baseline) and its peak RSS. Bounded (streaming) ingestion keeps the 10x peak near the 1x peak.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.core import PROJECT, Check, SectionResult

#: Target: peak RSS at 10x the data at most this many times the peak at 1x.
MAX_PEAK_RATIO = 1.5
CHILD = Path(__file__).with_name("ingest_child.py")


@dataclass(frozen=True)
class ImageTreeSpec:
    """A synthetic ImageFolder data set.

    Attributes:
        images: Total number of images (train + test).
        size: Image height = width in pixels (RGB).
        classes: Number of class folders.
        test_fraction: Share of each class written to ``test/``.
        distinct: Number of distinct PNG payloads written round-robin (encoding is not what is measured).
    """

    images: int
    size: int
    classes: int = 10
    test_fraction: float = 0.2
    distinct: int = 64


def _png_payloads(spec: ImageTreeSpec, seed: int = 0) -> list[bytes]:
    """``spec.distinct`` encoded random RGB PNGs of ``spec.size`` x ``spec.size``."""
    rng = np.random.default_rng(seed)
    payloads = []
    for _ in range(min(spec.distinct, spec.images)):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (spec.size, spec.size, 3), dtype=np.uint8)).save(buf, format="PNG")
        payloads.append(buf.getvalue())
    return payloads


def make_image_tree(root: Path, spec: ImageTreeSpec) -> int:
    """Write ``root/{train,test}/c<k>/<i>.png`` (every class in both splits); returns bytes written."""
    payloads = _png_payloads(spec)
    per_class = np.full(spec.classes, spec.images // spec.classes)
    per_class[: spec.images % spec.classes] += 1
    written, i = 0, 0
    for k, n in enumerate(per_class):
        n_test = min(max(1, round(n * spec.test_fraction)), n - 1)
        for j in range(n):
            folder = root / ("test" if j < n_test else "train") / f"c{k}"
            folder.mkdir(parents=True, exist_ok=True)
            written += (folder / f"{i}.png").write_bytes(payloads[i % len(payloads)])
            i += 1
    return written


def ingest_in_child(root: Path, out_dir: Path, timeout_s: float) -> dict[str, Any]:
    """Run :mod:`benchmarks.ingest_child` on ``root`` in a fresh interpreter; its JSON result.

    Raises:
        RuntimeError: the child failed (its stderr tail is in the message).
    """
    result = out_dir / "result.json"
    cmd = [sys.executable, "-P", str(CHILD), "--modality", "image", "--root", str(root),
           "--out-dir", str(out_dir / "catalog"), "--conf", str(PROJECT / "conf"), "--result", str(result)]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=out_dir)
    if proc.returncode != 0:
        raise RuntimeError(f"ingestion child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text())


def measure_scale(label: str, spec: ImageTreeSpec, tmp: Path, timeout_s: float) -> dict[str, Any]:
    """One row: write the tree for ``spec``, ingest it in a child, report its memory in MiB."""
    root, out_dir = tmp / label / "raw", tmp / label / "out"
    out_dir.mkdir(parents=True)
    data_bytes = make_image_tree(root, spec)
    child = ingest_in_child(root, out_dir, timeout_s)
    mib = 1.0 / 1024  # KiB -> MiB
    return {"scale": label, "images": spec.images, "image_px": f"{spec.size}x{spec.size}x3",
            "data_mib": data_bytes / 2 ** 20, "rows": child["rows"], "chunks": child["chunks"],
            "generator": child["generator"], "seconds": child["seconds"],
            "baseline_rss_mib": child["baseline_rss_kib"] * mib, "peak_rss_mib": child["peak_rss_kib"] * mib,
            "increment_mib": (child["peak_rss_kib"] - child["baseline_rss_kib"]) * mib,
            "output_mib": child["output_bytes"] / 2 ** 20}


def run(smoke: bool, device: Any) -> SectionResult:
    """Peak RSS of image ingestion at 1x and 10x; target: peak(10x) <= 1.5 x peak(1x)."""
    base = ImageTreeSpec(20, 8) if smoke else ImageTreeSpec(1000, 64)
    specs = {"1x": base, "10x": ImageTreeSpec(10 * base.images, base.size)}
    result = SectionResult(notes=[
        "peak = VmHWM of the ingestion child (ingest_node + catalog {modality}.table save); "
        "baseline = its VmRSS after imports and catalog construction; increment = peak - baseline"])
    with tempfile.TemporaryDirectory(prefix="bench-ingestion-memory-") as tmp:
        for label, spec in specs.items():
            result.rows.append(measure_scale(label, spec, Path(tmp), timeout_s=120 if smoke else 600))
    one, ten = result.rows
    result.info["increment_10x_over_1x"] = ten["increment_mib"] / max(one["increment_mib"], 1e-9)
    result.checks.append(Check.at_most("peak_10x_over_1x", ten["peak_rss_mib"] / one["peak_rss_mib"], MAX_PEAK_RATIO))
    return result

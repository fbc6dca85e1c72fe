"""Section ``tokenization``: read (ingestion) and tokenization throughput of every registered modality.

Each modality writes its embedded sample data (``<m>.sample_data`` of ``conf/base/parameters_modalities/<m>.yml``;
the test suite's tiny sizes in smoke mode) into a temporary folder, reads it with ``<m>.source`` (path replaced)
and tokenizes the table with ``<m>.tokenization``. Sample-data writing is not timed."""

from __future__ import annotations

import copy
import tempfile
import traceback
from pathlib import Path
from typing import Any

from benchmarks.core import PROJECT, SectionResult, best_time, load_conf

#: Smoke-mode overrides, used when ``tests.tiny`` cannot be imported (a copy of its ``TINY_SAMPLE`` / ``TINY_SOURCE``).
FALLBACK_TINY_SAMPLE: dict[str, dict[str, Any]] = {
    "audio": {"clips_per_class_per_fold": 2}, "video": {"clips_per_class": 6}, "text": {"n_train": 90, "n_test": 45},
    "xray": {"per_class": 12}, "point_cloud": {"shapes_per_class": 10, "meshes_per_class": 3}}
FALLBACK_TINY_SOURCE: dict[str, dict[str, Any]] = {"hyperspectral": {"max_per_class": 25}}


def tiny_overrides() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]:
    """``(sample_data overrides, source overrides, where they came from)`` for smoke mode."""
    try:
        from tests.tiny import TINY_SAMPLE, TINY_SOURCE
    except ImportError as e:
        return FALLBACK_TINY_SAMPLE, FALLBACK_TINY_SOURCE, f"benchmarks fallback (tests.tiny not importable: {e})"
    return TINY_SAMPLE, TINY_SOURCE, "tests.tiny"


def modality_params(smoke: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """``(sample_data, ingestion, tokenization)`` parameters of conf/base, shrunk in smoke mode, and a note."""
    blocks = {}  # one block per modality, conf/base/parameters_modalities/<modality>.yml
    for f in sorted((PROJECT / "conf" / "base" / "parameters_modalities").glob("*.yml")):
        blocks.update(load_conf(f"parameters_modalities/{f.name}"))
    sample = {m: b["sample_data"] for m, b in blocks.items()}
    ingestion = {m: {"source": b["source"]} for m, b in blocks.items()}
    tokenization = {m: b["tokenization"] for m, b in blocks.items()}
    note = "sizes: conf/base"
    if smoke:
        tiny_sample, tiny_source, origin = tiny_overrides()
        for m, over in tiny_sample.items():
            sample[m].update(over)
        for m, over in tiny_source.items():
            ingestion[m]["source"].update(over)
        note = f"sizes: conf/base shrunk by {origin}"
    return sample, ingestion, tokenization, note


def measure_modality(name: str, root: Path, sample: dict[str, Any], source: dict[str, Any],
                     params: dict[str, Any], min_total_s: float) -> dict[str, Any]:
    """Write the sample data under ``root``, then time ``read`` and ``tokenize`` (best of repeats)."""
    from omnivec2_pipelines.modalities.base import get_modality

    mod = get_modality(name)
    mod.make_sample_data(root, {**sample, "path": str(root)})
    files = sum(1 for p in root.rglob("*") if p.is_file())
    read_s, table = best_time(lambda: mod.read({**copy.deepcopy(source), "path": str(root)}), min_total_s)
    tok_s, bundle = best_time(lambda: mod.tokenize(table, copy.deepcopy(params)), min_total_s)
    return {"modality": name, "files": files, "rows": len(table), "read_s": read_s,
            "read_files_s": files / read_s, "read_rows_s": len(table) / read_s, "tokenize_s": tok_s,
            "samples_s": len(table) / tok_s, "arrays": len(bundle.arrays)}


def run(smoke: bool, device: Any) -> SectionResult:
    """Read + tokenize throughput per registered modality; a failing modality is an error row."""
    from omnivec2_pipelines.modalities.base import registered_modalities

    sample, ingestion, tokenization, note = modality_params(smoke)
    result = SectionResult(notes=[note, "samples_s = table rows / tokenize seconds (best of repeats); "
                                        "read_* = files or rows / read seconds"])
    min_total_s = 0.0 if smoke else 0.5
    with tempfile.TemporaryDirectory(prefix="bench-tokenization-") as tmp:
        for name in registered_modalities():
            try:
                result.rows.append(measure_modality(name, Path(tmp) / name, sample[name], ingestion[name]["source"],
                                                    tokenization[name], min_total_s))
            except Exception as e:  # reported: recorded as a section error and shown in the table
                result.errors.append(f"{name}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
                result.rows.append({"modality": name, "error": f"{type(e).__name__}: {e}"[:120]})
    return result

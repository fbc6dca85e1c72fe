"""Child process of the ``ingestion_memory`` section: ingest one modality like the Kedro node does.

Run as a script (``python benchmarks/ingest_child.py --modality image --root R --out-dir O --result J``).
It imports everything first and builds the catalog datasets, records that RSS as the baseline,
then runs ``ingest_node(modality)(source)`` and saves its output through the project's catalog
entries ``{modality}.table`` and ``{modality}.ingestion_report`` (filepaths moved under ``--out-dir``).
A generator node (one ``(table_chunk, report)`` per batch of files) is saved chunk by chunk, as
Kedro's runner does. Writes ``{"baseline_rss_kib", "peak_rss_kib", ...}`` to ``--result``.

The peak is the kernel's high-water mark ``VmHWM`` of this process's address space: unlike
``getrusage`` it does not include the memory of the parent this process was forked from.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet  # noqa: F401  (imported before the baseline: the parquet writer needs it)
import yaml
from kedro.io import DataCatalog

from omnivec2_pipelines.pipelines.data.nodes import ingest_node


def proc_status_kib(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``: now, ``VmHWM``: peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/self/status")


def build_catalog(conf: Path, out_dir: Path) -> DataCatalog:
    """The project's ``{modality}.table`` and ``{modality}.ingestion_report`` factories, writing under ``out_dir``."""
    entries = yaml.safe_load((conf / "base" / "catalog.yml").read_text())
    config: dict[str, Any] = {}
    for key, name in (("{modality}.table", "{modality}.parquet"), ("{modality}.ingestion_report", "{modality}.json")):
        where = [k for k in ("filepath", "path") if k in entries[key]]
        if len(where) != 1:
            raise ValueError(f"catalog entry {key!r} has {where or 'neither'} of 'filepath'/'path'; expected one")
        config[key] = {**entries[key], where[0]: str(out_dir / name)}
    return DataCatalog.from_config(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", default="image")
    parser.add_argument("--root", type=Path, required=True, help="data set root (source.path)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--conf", type=Path, required=True, help="the project's conf/ folder")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    catalog = build_catalog(args.conf, args.out_dir)
    table_ds, report_ds = catalog[f"{args.modality}.table"], catalog[f"{args.modality}.ingestion_report"]
    block = args.conf / "base" / "parameters_modalities" / f"{args.modality}.yml"
    source = yaml.safe_load(block.read_text())[args.modality]["source"]
    source = {**source, "path": str(args.root)}
    baseline = proc_status_kib("VmRSS")

    t0 = time.perf_counter()
    out = ingest_node(args.modality)(source)
    chunks, rows = 0, 0
    for table, report in (out if inspect.isgenerator(out) else [out]):
        table_ds.save(table)
        report_ds.save(report)
        chunks, rows = chunks + 1, rows + len(table)
    seconds = time.perf_counter() - t0

    result = {"baseline_rss_kib": baseline, "peak_rss_kib": proc_status_kib("VmHWM"),
              "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
              "generator": inspect.isgenerator(out), "chunks": chunks, "rows": rows, "seconds": seconds,
              "output_bytes": sum(p.stat().st_size for p in args.out_dir.rglob("*") if p.is_file())}
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()

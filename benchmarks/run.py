"""Run the benchmark sections, print a table per section and write the results as JSON.

Usage::

    python -m benchmarks.run                      # every section, results in benchmarks/results/latest.json
    python -m benchmarks.run --smoke              # tiny sizes, seconds (used by the test suite)
    python -m benchmarks.run --only backbone,startup --out /tmp/bench.json

Exit status: 1 when a section failed (its error is in the table and the JSON), 2 with ``--strict``
when a target check missed, else 0. To add a section, write ``def run(smoke, device) -> SectionResult``
in a module of this package and add it to :data:`SECTIONS`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from benchmarks import backbone, ingestion_memory, loader_stall, predict, startup, tokenization, train_step
from benchmarks.core import PROJECT, SectionFn, SectionResult, fmt, nonfinite_values, text_table

#: Benchmark sections in run order: name -> ``(smoke, device) -> SectionResult``.
SECTIONS: dict[str, SectionFn] = {
    "backbone": backbone.run,
    "tokenization": tokenization.run,
    "loader_stall": loader_stall.run,
    "ingestion_memory": ingestion_memory.run,
    "startup": startup.run,
    "predict": predict.run,
    "train_step": train_step.run,
}
DEFAULT_OUT = PROJECT / "benchmarks" / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds); numbers are not meaningful")
    parser.add_argument("--only", metavar="SECTION[,SECTION]", help=f"run only these of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results file (default {DEFAULT_OUT})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when available, else CPU")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target check misses")
    args = parser.parse_args(argv)
    args.sections = select_sections(parser, args.only)
    return args


def select_sections(parser: argparse.ArgumentParser, only: str | None) -> list[str]:
    """Section names to run, in registry order; unknown names are a usage error."""
    if only is None:
        return list(SECTIONS)
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown or not wanted:
        parser.error(f"--only: unknown section(s) {unknown or only!r}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_revision() -> str | None:
    """``<commit>[+dirty]`` of the working tree, None outside a git checkout."""
    proc = subprocess.run(["git", "-C", str(PROJECT), "describe", "--always", "--dirty=+dirty", "--abbrev=40"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def machine_info(device: torch.device) -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": str(device),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "git": git_revision(), "loadavg_start": list(os.getloadavg())}


def run_section(name: str, fn: SectionFn, smoke: bool, device: torch.device) -> dict[str, Any]:
    """Run one section; an exception or a non-finite number makes it an error entry (never dropped)."""
    t0 = time.perf_counter()
    try:
        result = fn(smoke, device)
    except Exception as e:  # reported in the table, the JSON and the exit status
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        result = SectionResult(errors=[f"{type(e).__name__}: {e}\n{tb}"])
    bad = nonfinite_values(result)
    if bad:
        result.errors.append(f"non-finite values (stored as null): {', '.join(bad)}")
    entry = {"status": "error" if result.errors else "ok", "seconds": time.perf_counter() - t0,
             "rows": result.rows, "checks": [c.to_dict() for c in result.checks], "info": result.info,
             "notes": result.notes, "errors": result.errors}
    return _finite_or_null(entry)


def _finite_or_null(value: Any) -> Any:
    """A copy of nested JSON data with NaN/inf floats replaced by None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def format_section(name: str, entry: dict[str, Any]) -> str:
    """The printed block of one section: header, info, rows table, checks, notes, errors."""
    lines = [f"== {name} [{entry['status']}] ({entry['seconds']:.1f} s) =="]
    if entry["info"]:
        lines.append("  " + "; ".join(f"{k}: {fmt(v)}" for k, v in entry["info"].items()))
    lines.append(text_table(entry["rows"]))
    for c in entry["checks"]:
        lines.append(f"  [{'PASS' if c['ok'] else 'MISS'}] {c['name']} = {fmt(c['value'])} "
                     f"(target {c['op']} {fmt(c['target'])})")
    lines += [f"  note: {n}" for n in entry["notes"]]
    lines += [f"  ERROR: {e.splitlines()[0]}" for e in entry["errors"]]
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summarize(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    checks = [c for s in sections.values() for c in s["checks"]]
    return {"checks": len(checks), "passed": sum(c["ok"] for c in checks),
            "missed": [c["name"] for c in checks if not c["ok"]],
            "failed_sections": [n for n, s in sections.items() if s["status"] == "error"]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    argv_used = sys.argv[1:] if argv is None else argv
    report: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.run", *argv_used]),
        "argv": argv_used, "smoke": args.smoke, "machine": machine_info(device), "sections": {}}
    print(f"benchmarks on {report['machine']['cpu_model']} ({report['machine']['cpu_affinity']} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"load {os.getloadavg()[0]:.2f})"
          f"{' [smoke: tiny sizes, numbers not meaningful]' if args.smoke else ''}", flush=True)
    for name in args.sections:
        entry = run_section(name, SECTIONS[name], args.smoke, device)
        report["sections"][name] = entry
        print("\n" + format_section(name, entry), flush=True)
    report["machine"]["loadavg_end"] = list(os.getloadavg())  # 1/5/15-minute load: was the machine quiet?
    report["summary"] = summary = summarize(report["sections"])
    write_json(args.out, report)
    print(f"\n{summary['passed']}/{summary['checks']} target checks met"
          f"{'; missed: ' + ', '.join(summary['missed']) if summary['missed'] else ''}"
          f"{'; FAILED sections: ' + ', '.join(summary['failed_sections']) if summary['failed_sections'] else ''}"
          f"\nresults written to {args.out}", flush=True)
    if summary["failed_sections"]:
        return 1
    return 2 if args.strict and summary["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())

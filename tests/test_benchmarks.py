"""The benchmark harness: a smoke run writes well-formed results (speed targets are not asserted)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run as bench
from benchmarks.core import Check, SectionResult, text_table

PROJECT = Path(__file__).resolve().parents[1]

#: Numeric fields every (non-error) row of a section has, and those that must be > 0.
NUMERIC = {
    "backbone": ("width", "depth", "heads", "seq", "batch", "params_m", "gflop_step", "ours_tok_s", "torch_tok_s",
                 "ratio", "ours_gflop_s", "ours_peak_frac", "torch_gflop_s", "torch_peak_frac"),
    "tokenization": ("files", "rows", "read_s", "read_files_s", "read_rows_s", "tokenize_s", "samples_s"),
    "ingestion_memory": ("images", "rows", "chunks", "seconds", "baseline_rss_mib", "peak_rss_mib", "data_mib"),
    "startup": ("seconds",),
    "loader_stall": ("wall_s", "wait_s", "stall", "samples_s"),
    "predict": ("images", "seconds", "images_s"),
}


def _strict_json(path: Path) -> dict:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=no_constants)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("bench") / "x.json"
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"benchmarks failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc, _strict_json(out)


@pytest.mark.slow
def test_smoke_run_header_and_table(smoke_run):
    proc, data = smoke_run
    assert set(data["sections"]) == set(bench.SECTIONS)
    for name in bench.SECTIONS:
        assert f"== {name} [ok]" in proc.stdout
    assert "target checks met" in proc.stdout and "results written to" in proc.stdout
    assert data["smoke"] is True and "--smoke" in data["command"]
    assert dt.datetime.fromisoformat(data["date_utc"]).tzinfo is not None
    machine = data["machine"]
    assert {"platform", "cpu_model", "cpu_count", "torch", "torch_threads", "cuda_device"} <= set(machine)
    assert machine["torch_threads"] >= 1 and machine["cpu_model"]


@pytest.mark.slow
@pytest.mark.parametrize("section", list(NUMERIC))
def test_smoke_run_section_rows_and_checks(smoke_run, section):
    _, data = smoke_run
    entry = data["sections"][section]
    assert entry["status"] == "ok" and entry["errors"] == []
    assert entry["rows"], f"{section}: no rows"
    for row in entry["rows"]:
        for key in NUMERIC[section]:
            value = row[key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (section, key, value)
            assert math.isfinite(value) and value > 0, (section, key, value)
    for check in entry["checks"]:
        assert set(check) >= {"name", "value", "target", "ok"}
        assert isinstance(check["ok"], bool) and math.isfinite(check["value"])
    if section != "tokenization":  # the others always compare against a target
        assert entry["checks"]


@pytest.mark.slow
def test_smoke_run_covers_every_modality(smoke_run):
    from omnivec2_pipelines.modalities.base import registered_modalities

    _, data = smoke_run
    assert [r["modality"] for r in data["sections"]["tokenization"]["rows"]] == registered_modalities()


def test_failing_section_is_reported_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    def boom(smoke: bool, device: object) -> SectionResult:
        raise RuntimeError("broken on purpose")

    def fine(smoke: bool, device: object) -> SectionResult:
        return SectionResult(rows=[{"x": 1.0}, {"x": float("nan")}], checks=[Check.at_least("x", 1.0, 2.0)])

    monkeypatch.setitem(bench.SECTIONS, "boom", boom)
    monkeypatch.setitem(bench.SECTIONS, "fine", fine)
    out = tmp_path / "r.json"
    assert bench.main(["--only", "boom,fine", "--out", str(out), "--device", "cpu"]) == 1
    data = _strict_json(out)
    assert data["sections"]["boom"]["status"] == "error"
    assert "broken on purpose" in data["sections"]["boom"]["errors"][0]
    fine_entry = data["sections"]["fine"]  # a NaN is an error too, stored as null
    assert fine_entry["status"] == "error" and fine_entry["rows"][1]["x"] is None
    assert fine_entry["checks"] == [{"name": "x", "value": 1.0, "target": 2.0, "op": ">=", "ok": False}]
    assert data["summary"]["failed_sections"] == ["boom", "fine"]
    printed = capsys.readouterr().out
    assert "== boom [error]" in printed and "ERROR: RuntimeError: broken on purpose" in printed
    assert not list(tmp_path.glob(".r.json.*"))  # the atomic write left no temporary file


def test_unknown_section_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--only", "nope", "--out", str(tmp_path / "r.json")])
    assert exc.value.code == 2 and not (tmp_path / "r.json").exists()


def test_text_table_aligns_columns():
    lines = text_table([{"name": "a", "n": 1}, {"name": "bbb", "n": 12345}]).splitlines()
    assert lines[0].split() == ["name", "n"]
    assert len({len(line) for line in lines}) == 1  # numbers right-aligned to the same width

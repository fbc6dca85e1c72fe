"""Section ``startup``: wall time from ``kedro run`` launch to its first node, and where it goes.

``kedro run --pipelines sample_data --namespaces image`` (one light node) runs in a temporary copy
of the project's configuration; its output is streamed and time-stamped until the first line with
``Running node`` (logged by ``kedro.pipeline.node`` at INFO), then the run is terminated. In full
mode the default ``kedro run`` (all pipelines, after the sample data was written) is timed the same
way: its parameter check covers the training stages and so imports torch before the first node.
Plain interpreter, ``import torch`` and project import times are measured for comparison.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.core import PROJECT, Check, SectionResult

#: Target: seconds from launching ``kedro run`` to its first ``Running node`` line.
MAX_FIRST_NODE_S = 3.0
KEDRO_ARGS = ("run", "--pipelines", "sample_data", "--namespaces", "image")
#: Output milestones of a run: key -> text of the first line that marks it (None: any line).
MILESTONES: dict[str, str | None] = {"first_output_s": None, "session_s": "Kedro project",
                                     "first_node_s": "Running node"}
#: Import costs shown beside the run, as ``python -c <code>`` wall times.
IMPORTS: dict[str, str] = {
    "python -c pass": "pass",
    "import torch": "import torch",
    "import kedro.framework.cli": "import kedro.framework.cli",
    "import omnivec2_pipelines": "import omnivec2_pipelines",
    "import omnivec2_pipelines.pipeline_registry": "import omnivec2_pipelines.pipeline_registry",
}


def _env() -> dict[str, str]:
    return {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1"}


def copy_project(dest: Path) -> Path:
    """``pyproject.toml`` + ``conf/`` (``local/`` emptied) + an empty ``src/`` (the package is installed editable).

    Kedro only checks that ``src/`` exists; the code is imported from the installed package.
    """
    dest.mkdir(parents=True)
    shutil.copy2(PROJECT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(PROJECT / "conf", dest / "conf", ignore=shutil.ignore_patterns("local"))
    (dest / "conf" / "local").mkdir()
    (dest / "src").mkdir()
    return dest


def time_kedro_run(project: Path, timeout_s: float, args: tuple[str, ...] = KEDRO_ARGS) -> dict[str, float]:
    """Seconds from launch to each of :data:`MILESTONES` of one ``kedro run`` in ``project``.

    Raises:
        RuntimeError: the run ended (or hit ``timeout_s``) before logging ``Running node``.
    """
    kedro = Path(sys.executable).parent / "kedro"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(kedro), *args], cwd=project, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(timeout_s, proc.kill)
    watchdog.start()
    marks: dict[str, float] = {}
    tail: list[str] = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            now = time.perf_counter() - t0
            tail = [*tail[-40:], line]
            for key, text in MILESTONES.items():
                if key not in marks and (text is None or text in line):
                    marks[key] = now
            if "first_node_s" in marks:
                break
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=30)
    if "first_node_s" not in marks:
        raise RuntimeError(f"kedro {' '.join(args)} ended (rc {proc.returncode}) without 'Running node':\n"
                           + "".join(tail)[-4000:])
    return marks


def time_import(code: str, runs: int) -> float:
    """Best wall seconds of ``python -c code`` over ``runs`` fresh interpreters.

    Raises:
        RuntimeError: the interpreter failed.
    """
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                              cwd=tempfile.gettempdir())
        best = min(best, time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"python -c {code!r} failed: {proc.stderr[-2000:]}")
    return best


def _default_run_first_node(runs: int) -> float:
    """Best seconds to the first node of the default ``kedro run`` (sample data written beforehand)."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-default-") as tmp:
        project = copy_project(Path(tmp) / "project")
        kedro = Path(sys.executable).parent / "kedro"
        subprocess.run([str(kedro), "run", "--pipelines", "sample_data"], cwd=project, env=_env(), check=True,
                       capture_output=True, timeout=600)
        return min(time_kedro_run(project, 120, ("run",))["first_node_s"] for _ in range(runs))


def run(smoke: bool, device: Any) -> SectionResult:
    """Best of 3 (1 in smoke) ``kedro run`` start-ups, plus import times; target first node <= 3 s."""
    runs = 1 if smoke else 3
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for i in range(runs):
            marks = time_kedro_run(copy_project(Path(tmp) / f"project{i}"), timeout_s=120)
            best = {k: min(v, best.get(k, float("inf"))) for k, v in marks.items()}
    cmd = f"kedro {' '.join(KEDRO_ARGS)}"
    result = SectionResult(notes=[f"each row: best of {runs} fresh processes (wall seconds from launch)",
                                  f"kedro rows: `{cmd}` until its first output line / 'Kedro project' / "
                                  "'Running node'"])
    labels = {"first_output_s": "kedro run: first output line", "session_s": "kedro run: session created",
              "first_node_s": "kedro run: first 'Running node'"}
    result.rows += [{"measure": labels[k], "seconds": best[k], "runs": runs} for k in MILESTONES if k in best]
    if not smoke:
        default_s = _default_run_first_node(runs)
        result.rows.append({"measure": "kedro run (default pipeline): first 'Running node'", "seconds": default_s,
                            "runs": runs})
        result.checks.append(Check.at_most("default_kedro_run_to_first_node_s", default_s, MAX_FIRST_NODE_S))
    imports = list(IMPORTS.items())[:2] if smoke else IMPORTS.items()  # smoke: the code path, not the numbers
    result.rows += [{"measure": label, "seconds": time_import(code, runs), "runs": runs} for label, code in imports]
    result.checks.append(Check.at_most("kedro_run_to_first_node_s", best["first_node_s"], MAX_FIRST_NODE_S))
    return result

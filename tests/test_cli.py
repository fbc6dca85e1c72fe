"""Clean logs: node annotations resolve without torch, and project errors end a run in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from omnivec2_pipelines.cli import is_project_error
from tests.project_copy import BIN, PROJECT, copy_project


def _kedro(root, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200"}
    return subprocess.run(["kedro", "run", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_every_node_annotation_resolves_without_importing_torch() -> None:
    # Kedro calls typing.get_type_hints on every node function of a run; a name imported only under
    # TYPE_CHECKING logged "Could not extract type hints" for each node, on every command
    code = textwrap.dedent("""
        import sys, typing
        from omnivec2_pipelines.modalities.base import registered_modalities
        from omnivec2_pipelines.pipeline_registry import build_pipelines

        bad = {}
        for pipe in build_pipelines(registered_modalities()).values():
            for n in pipe.nodes:
                try:
                    typing.get_type_hints(n.func)
                except Exception as e:
                    bad[n.name] = repr(e)
        assert not bad, bad
        assert "torch" not in sys.modules, "resolving node annotations imported torch"
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_is_project_error_tells_deliberate_errors_from_bugs() -> None:
    from kedro.io import DatasetError

    from omnivec2_pipelines.modalities.base import DataError
    from omnivec2_pipelines.training.params import validate_stage_params

    assert is_project_error(DataError("x"))
    assert is_project_error(DatasetError("checkpoint missing"))
    with pytest.raises(ValueError) as raised:  # a parameter check of the project
        validate_stage_params("pretrain_unimodal", {"mask_ratio": 5}, {}, ["image"], {})
    assert is_project_error(raised.value)
    with pytest.raises(ValueError) as raised:  # raised inside numpy: a bug, keeps its traceback
        np.zeros(3).reshape(2, 2)
    assert not is_project_error(raised.value)
    with pytest.raises(KeyError) as raised:  # raised by an expression, not a raise statement
        {}["k"]
    assert not is_project_error(raised.value)
    assert not is_project_error(KeyboardInterrupt())


@pytest.mark.slow
def test_project_errors_end_the_run_in_a_few_lines(tmp_path) -> None:
    root = copy_project(tmp_path / "project")

    # a wrong parameter, caught by the parameter hook before the first node
    proc = _kedro(root, "--pipelines", "pretrain_unimodal", "--params", "pretrain_unimodal.mask_ratio=5")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "pretrain_unimodal.mask_ratio" in out and "must be a number in (0, 1)" in out
    assert "Traceback" not in out and len(out.splitlines()) < 30, out
    assert "Could not extract type hints" not in out

    # --verbose keeps Kedro's full traceback
    proc = _kedro(root, "--pipelines", "pretrain_unimodal", "--verbose", "--params", "pretrain_unimodal.mask_ratio=5")
    assert proc.returncode == 1 and "Traceback" in proc.stdout + proc.stderr

    # a normal cheap run: no type-hint warning
    proc = _kedro(root, "--pipelines", "sample_data", "--namespaces", "image")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Could not extract type hints" not in out and "Pipeline execution completed successfully" in out

    # a DataError raised inside a node (a corrupt image): Kedro's node-failed line, then the message
    victim = sorted((root / "data/01_raw/image/train").rglob("*.png"))[0]
    victim.write_bytes(b"not a png")
    proc = _kedro(root, "--pipelines", "ingestion", "--namespaces", "image")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "DataError:" in out and victim.name in out and "failed with error" in out
    assert "Traceback" not in out and len(out.splitlines()) < 30, out

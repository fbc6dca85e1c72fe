"""Temporary copies of the project for end-to-end and DVC tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.tiny import TINY_SAMPLE, TINY_SOURCE

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: Tiny training sizes so a full run takes seconds.
TINY_PARAMS = {
    "parameters.yml": {"model": {"width": 32, "depth_f": 1, "heads_f": 2, "reduced_width": 32, "depth_g": 1,
                                 "heads_g": 2},
                       "trainer": {"device": "cpu", "log_every": 2, "warmup_steps": 1}},
    **{f"parameters_modalities/{m}.yml": {m: {**({"sample_data": TINY_SAMPLE[m]} if m in TINY_SAMPLE else {}),
                                                **({"source": TINY_SOURCE[m]} if m in TINY_SOURCE else {})}}
       for m in sorted({*TINY_SAMPLE, *TINY_SOURCE})},
    "parameters_pretrain_unimodal.yml": {"pretrain_unimodal": {"steps": 3, "batch_size": 8}},
    "parameters_pretrain_paired.yml": {"pretrain_paired": {"steps": 2, "batch_size": 8}},
    "parameters_multitask.yml": {"multitask": {"steps": 4, "batch_size": 8}},
}


#: What git tracks of ``.dvc/`` (as ``dvc init`` writes it); the cache, tmp and config.local stay behind.
DVC_TRACKED = {"config", ".gitignore"}


def copy_project(dest: Path) -> Path:
    """Copy code, config and the data-layer skeleton (no venv, no generated data, no git, no DVC cache)."""
    patterns = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache")

    def ignore(folder: str, names: list[str]) -> set[str]:
        if Path(folder) == PROJECT / ".dvc":
            return {n for n in names if n not in DVC_TRACKED}
        return set(patterns(folder, names))

    shutil.copytree(PROJECT, dest, ignore=ignore)
    shutil.rmtree(dest / "data")
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                  "07_model_output", "08_reporting"):
        (dest / "data" / layer).mkdir(parents=True)
        (dest / "data" / layer / ".gitkeep").touch()
    for f in (dest / "conf" / "local").iterdir():
        if f.name != ".gitkeep":
            f.unlink() if f.is_file() else shutil.rmtree(f)
    return dest


def deep_update(d: dict, over: dict) -> dict:
    for k, v in over.items():
        d[k] = deep_update(d.get(k, {}), v) if isinstance(v, dict) else v
    return d


def shrink_base_params(root: Path) -> None:
    """Write the tiny sizes into conf/base (where DVC tracks parameters)."""
    for name, over in TINY_PARAMS.items():
        path = root / "conf" / "base" / name
        path.write_text(yaml.safe_dump(deep_update(yaml.safe_load(path.read_text()), over), sort_keys=False))


def run_cmd(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command with the test interpreter's environment first on PATH; fail loudly."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "COLUMNS": "200",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc

"""Kill a stage with SIGKILL mid-run, run it again: it resumes and ends with the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.resume import ResumeConfig, load_resume_state

ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, resume_dir: Path, kill_stage: str = "none", kill_at: int = -1) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tests.training.resume_run", str(out), str(resume_dir),
                           kill_stage, str(kill_at)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight")
    proc = _run(out, out / "resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (out / "resume" / "multitask").exists()  # cleared after completion
    return out


@pytest.mark.parametrize("kill_stage, kill_at, resumed_from", [("pretrain_unimodal", 7, 6), ("multitask", 4, 3)])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, uninterrupted, kill_stage, kill_at,
                                                   resumed_from) -> None:
    killed = _run(tmp_path, tmp_path / "resume", kill_stage, kill_at)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "resume" / kill_stage / "state.json").is_file()
    assert not (tmp_path / "final.safetensors").exists()

    again = _run(tmp_path, tmp_path / "resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{kill_stage}: resumed from step {resumed_from}" in again.stderr
    a, b = load_file(str(uninterrupted / "final.safetensors")), load_file(str(tmp_path / "final.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the model selection (chosen step, val score) survives the kill too
    assert (uninterrupted / "selection.json").read_text() == (tmp_path / "selection.json").read_text()
    for name in ("h1.csv", "h3.csv"):
        ha, hb = pd.read_csv(uninterrupted / name), pd.read_csv(tmp_path / name)
        assert ha["step"].tolist() == hb["step"].tolist() == list(range(10))
        assert ha["loss"].tolist() == hb["loss"].tolist()


def test_changed_parameters_start_fresh(tmp_path, bundles, tiny_model_params, caplog) -> None:
    trainer = {"device": "cpu", "progress": False, "checkpoint_every": 2, "resume_dir": str(tmp_path),
               "warmup_steps": 0}
    killed_at = {}

    from omnivec2_pipelines.training.trainer import Trainer

    original = Trainer.fit

    def fit(self, model, objective, stage, resume=None, on_step=None, validator=None):
        def stop(step):
            if step == 2:
                killed_at["step"] = step
                raise KeyboardInterrupt  # an interrupted run leaves its resume state behind

        return original(self, model, objective, stage, resume, stop, validator)

    Trainer.fit = fit
    try:
        with pytest.raises(KeyboardInterrupt):
            stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 6, "batch_size": 4, "mask_ratio": 0.5},
                                     trainer)
    finally:
        Trainer.fit = original
    assert (tmp_path / "pretrain_unimodal" / "state.json").is_file()
    with caplog.at_level("INFO"):
        _, hist = stages.pretrain_unimodal(bundles, tiny_model_params,
                                           {"steps": 6, "batch_size": 4, "mask_ratio": 0.6}, trainer)
    assert "parameters or inputs changed" in caplog.text and "resumed" not in caplog.text
    assert len(hist) == 6 and not (tmp_path / "pretrain_unimodal").exists()


def test_resume_state_is_loaded_without_pickle(tmp_path) -> None:
    # a resume folder whose optimizer file is a malicious pickle is refused (weights_only) and runs nothing
    import json
    import pickle

    d = tmp_path / "stage"
    d.mkdir()
    (d / "state.json").write_text(json.dumps({"fingerprint": "f", "step": 1}))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (d / "optimizer.pt").write_bytes(pickle.dumps(Evil()))
    from safetensors.torch import save_file

    model = torch.nn.Linear(2, 2)
    save_file(model.state_dict(), str(d / "model.safetensors"))
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    import numpy as np

    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_resume_state(ResumeConfig(d, 1, "f"), "stage", model, opt, sched, torch.Generator(),
                          np.random.default_rng(0))
    assert not marker.exists()

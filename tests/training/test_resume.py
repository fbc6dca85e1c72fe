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

    def fit(self, model, objective, stage, resume=None, on_step=None, validator=None, **kwargs):
        def stop(step):
            if step == 2:
                killed_at["step"] = step
                raise KeyboardInterrupt  # an interrupted run leaves its resume state behind

        return original(self, model, objective, stage, resume, stop, validator, **kwargs)

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


def test_resume_state_is_loaded_without_pickle(tmp_path, caplog) -> None:
    # a state folder of the old layout, whose optimizer file is a malicious pickle: never unpickled, starts fresh
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
    with caplog.at_level("INFO"):
        assert load_resume_state(ResumeConfig(d, 1, "f"), "stage") is None
    assert "layout 1" in caplog.text and not d.exists() and not marker.exists()


def test_state_round_trips_by_parameter_name(tmp_path) -> None:
    """Weights, optimizer moments and RNGs come back in a model whose parameters are listed in another order."""
    import numpy as np

    from omnivec2_pipelines.training.resume import capture_state, read_state, restore_state, write_state

    def model(order):
        torch.manual_seed(0)
        layers = {"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(2, 1)}
        return torch.nn.ModuleDict({k: layers[k] for k in order})

    src = model("ab")
    opt = torch.optim.AdamW(src.parameters(), lr=0.1)
    src["b"](src["a"](torch.ones(4, 3))).sum().backward()
    opt.step()
    gen, rng = torch.Generator().manual_seed(5), np.random.default_rng(5)
    write_state(capture_state(1, src, opt, gen, rng, {}, [{"step": 0, "loss": 1.0}]), tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["state.json", "state.safetensors"]

    dst = model("ba")
    dst_opt = torch.optim.AdamW(dst.parameters(), lr=0.5)
    dst_gen, dst_rng = torch.Generator(), np.random.default_rng(0)
    state = read_state(tmp_path / "s")
    restore_state(state, dst, dst_opt, dst_gen, dst_rng, "test")
    assert state.step == 1 and state.doc["rows"] == [{"step": 0, "loss": 1.0}]
    for name, p in src.named_parameters():
        q = dict(dst.named_parameters())[name]
        assert torch.equal(p, q), name
        assert torch.equal(opt.state[p]["exp_avg"], dst_opt.state[q]["exp_avg"]), name
    assert dst_opt.param_groups[0]["lr"] == 0.5  # the run's hyperparameters, not the saved ones
    assert torch.equal(dst_gen.get_state(), gen.get_state()) and dst_rng.random() == rng.random()

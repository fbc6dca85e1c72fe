"""Subprocess body of the kill-and-resume test: stage 1 then stage 3 on synthetic bundles.

Usage: python -m tests.training.resume_run OUT_DIR RESUME_DIR KILL_STAGE KILL_AT_STEP
(KILL_STAGE "none" runs uninterrupted). The process SIGKILLs itself after step KILL_AT_STEP of
KILL_STAGE, like a job killed by the OS.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.trainer import Trainer
from tests.conftest import TINY_MODEL, grid_bundle, series_bundle


def main(out: Path, resume_dir: str, kill_stage: str, kill_at: int) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.set_num_threads(1)
    original_fit = Trainer.fit

    def fit(self, model, objective, stage, resume=None, on_step=None, validator=None, **kwargs):
        def hook(step: int) -> None:
            if stage == kill_stage and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        return original_fit(self, model, objective, stage, resume, hook, validator, **kwargs)

    Trainer.fit = fit
    bundles = {"grid": grid_bundle("grid"), "series": series_bundle("series")}
    trainer = {"device": "cpu", "seed": 3, "progress": False, "warmup_steps": 2, "checkpoint_every": 3,
               "resume_dir": resume_dir, "eval_every": 2, "eval_samples": 8}  # best-step selection on val
    ck1, h1 = stages.pretrain_unimodal(bundles, TINY_MODEL, {"steps": 10, "batch_size": 8, "mask_ratio": 0.5},
                                       trainer)
    ck3, h3 = stages.multitask(ck1, bundles, {"steps": 10, "batch_size": 8}, trainer)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ck3.model.state_dict().items()}, str(out / "final.safetensors"))
    h1.to_csv(out / "h1.csv", index=False)
    h3.to_csv(out / "h3.csv", index=False)
    (out / "selection.json").write_text(json.dumps([ck1.meta["training"], ck3.meta["training"]]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))

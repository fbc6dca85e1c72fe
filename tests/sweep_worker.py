"""One sweep worker process (used by tests/test_sweep.py): joins the study in STORAGE and runs trials."""

from __future__ import annotations

import copy
import sys

import torch

from omnivec2_pipelines import sweep as sw
from omnivec2_pipelines.pipeline_registry import build_pipelines
from omnivec2_pipelines.training import stages
from tests.conftest import TINY_MODEL, grid_bundle, series_bundle

PARAMS = {"trainer": {"device": "cpu", "progress": False, "warmup_steps": 1, "resume_dir": ""},
          "model": TINY_MODEL,
          "pretrain_unimodal": {"steps": 2, "batch_size": 8, "mask_ratio": 0.5},
          "pretrain_paired": {"steps": 2, "batch_size": 8, "mask_ratio": 0.5},
          "multitask": {"steps": 12, "batch_size": 8, "tasks": "all"},
          "evaluation": {"split": "val", "batch_size": 64, "baselines": False},
          # the test modalities' blocks: what the stages read of them
          "grid": {"mask_ratio": 0.5, "augment": None}, "series": {"mask_ratio": 0.5, "augment": None}}


def spec(storage: str, n_trials: int) -> sw.SweepSpec:
    return sw.SweepSpec(stage="multitask", space={"multitask.lr": {"type": "float", "low": 1e-4, "high": 1e-2,
                                                                   "log": True}},
                        objective="grid.classification.accuracy", n_trials=n_trials, storage=storage,
                        study_name="t", report_every=4)


def bundles() -> dict:
    return {"grid": grid_bundle("grid"), "series": series_bundle("series")}


def main(storage: str, n_trials: int) -> None:
    torch.set_num_threads(1)
    b = bundles()
    ck1, _ = stages.pretrain_unimodal(b, PARAMS["model"], PARAMS["pretrain_unimodal"], PARAMS["trainer"])
    ck2, _ = stages.pretrain_paired(ck1, b, PARAMS["pretrain_paired"], PARAMS["trainer"])
    study = sw.run_sweep(spec(storage, n_trials), PARAMS, build_pipelines(["grid", "series"]),
                         lambda: {**{f"{m}.tokenized": x for m, x in b.items()},
                                  "pretrain_paired_checkpoint": copy.deepcopy(ck2)})
    print("worker done", len(study.trials))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

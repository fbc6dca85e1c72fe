"""One "machine" of a 2-node data-parallel run on localhost: ``python -m tests.training.multinode_run ENDPOINT ID OUT``.

Trains masked unimodal pretraining with ``nnodes=2, nproc_per_node=1`` and writes the returned weights and
loss history to OUT (safetensors + CSV).
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import save_file

from omnivec2_pipelines.training import stages
from tests.conftest import TINY_MODEL, grid_bundle, series_bundle

TRAINER = {"device": "cpu", "seed": 0, "progress": False, "warmup_steps": 1, "lr": 3e-3}
UNIMODAL = {"steps": 4, "batch_size": 8, "mask_ratio": 0.5}


def bundles() -> dict:
    return {"grid": grid_bundle("grid"), "series": series_bundle("series")}


if __name__ == "__main__":
    endpoint, run_id, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    ck, history = stages.pretrain_unimodal(bundles(), TINY_MODEL, UNIMODAL, {
        **TRAINER, "nproc_per_node": 1, "nnodes": 2, "rdzv_endpoint": endpoint, "rdzv_id": run_id,
        "rdzv_timeout": 60})
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ck.model.state_dict().items()}, str(out / "model.safetensors"))
    history.to_csv(out / "history.csv", index=False)

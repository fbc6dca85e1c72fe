"""Data-parallel training with torch.distributed: 2 gloo ranks match 1 process; failures name the rank."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.training import distributed, stages
from omnivec2_pipelines.training.distributed import LaunchSpec
from omnivec2_pipelines.training.stages import _pretrain_sources
from omnivec2_pipelines.training.trainer import TrainerConfig

pytestmark = pytest.mark.skipif(distributed.available_workers("cpu") < 2 or not torch.distributed.is_available(),
                                reason="needs 2 CPU cores and torch.distributed")

TRAINER = {"device": "cpu", "seed": 0, "progress": False, "warmup_steps": 1, "lr": 3e-3}


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    worst = max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)
    assert worst < 2e-5, f"weights differ by up to {worst}"


def _point_bundle(n: int = 32, p: int = 64, k: int = 2, seed: int = 2) -> ArrayBundle:
    """Clouds whose class stretches them along x (tokenizer ``point_groups``, mini-PointNet)."""
    rng = np.random.default_rng(seed)
    arrays, splits = {}, {}
    for split, size in (("train", n), ("val", n // 4), ("test", n // 4)):
        y = rng.integers(0, k, size=size).astype(np.int64)
        x = rng.normal(size=(size, p, 3)).astype(np.float32)
        x[:, :, 0] *= 1.0 + y[:, None]
        arrays[f"{split}.x"], arrays[f"{split}.y.classification"] = x, y
        splits[split] = size
    task = TaskSpec("classification", "classification", "x", "y.classification", k, (k,), ("round", "long"))
    meta = {"modality": "points", "pretrain_input_key": "x", "splits": splits,
            "tasks": {"classification": task.to_dict()},
            "tokenizer": {"kind": "point_groups", "n_points": p, "n_groups": 8, "group_size": 8}}
    return ArrayBundle(arrays, meta)


@pytest.mark.slow
def test_two_ranks_train_the_same_weights_as_one_process(bundles, tiny_model_params) -> None:
    # point clouds too: their tokenizer keeps no batch statistics, so a rank's half-batch gives the same tokens
    bundles = {**bundles, "points": _point_bundle()}
    unimodal = {"steps": 5, "batch_size": 8, "mask_ratio": 0.5}
    ck1, h1 = stages.pretrain_unimodal(bundles, tiny_model_params, unimodal, TRAINER)
    ck2, h2 = stages.pretrain_unimodal(bundles, tiny_model_params, unimodal, {**TRAINER, "nproc_per_node": 2})
    _assert_same_weights(ck1.model, ck2.model)
    assert np.allclose(h1["loss"], h2["loss"], atol=1e-5) and list(h1["what"]) == list(h2["what"])
    assert (ck1.model.state_dict()["f.norm.weight"] != 1).any()  # it did train
    assert "points" in set(h1["what"]), list(h1["what"])

    multitask = {"steps": 5, "batch_size": 8}  # heads + unused tokenizers in every step
    ck3, h3 = stages.multitask(ck1, bundles, multitask, TRAINER)
    ck4, h4 = stages.multitask(ck2, bundles, multitask, {**TRAINER, "nproc_per_node": 2})
    _assert_same_weights(ck3.model, ck4.model)
    assert np.allclose(h3["loss"], h4["loss"], atol=1e-5)


def test_gradient_accumulation_equals_the_larger_batch(bundles, tiny_model_params) -> None:
    one, _ = stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 4, "batch_size": 8, "mask_ratio": 0.5},
                                      TRAINER)
    two, _ = stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 4, "batch_size": 4, "mask_ratio": 0.5},
                                      {**TRAINER, "grad_accum_steps": 2})
    _assert_same_weights(one.model, two.model)


def test_impossible_launches_are_refused_before_any_work(bundles, tiny_model_params) -> None:
    too_many = distributed.available_workers("cpu") + 1
    with pytest.raises(ValueError, match=rf"trainer.nproc_per_node={too_many} but this machine has only"):
        stages.pretrain_unimodal(bundles, tiny_model_params, {"steps": 2, "batch_size": 6 * too_many, "mask_ratio": 0.5},
                                 {**TRAINER, "nproc_per_node": too_many})
    with pytest.raises(ValueError, match="batch_size / 2 .* = 3 is not divisible by the 2 data-parallel ranks"):
        stages.validate_stage_params("multitask", {"batch_size": 6}, {**TRAINER, "nproc_per_node": 2},
                                     ["grid", "series"])
    with pytest.raises(ValueError, match="trainer.nnodes=2 needs trainer.rdzv_endpoint"):
        stages.validate_stage_params("pretrain_unimodal", {"batch_size": 8}, {**TRAINER, "nnodes": 2},
                                     ["grid", "series"])
    with pytest.raises(ValueError, match=r"trainer.nproc_per_node=0 is out of range"):
        TrainerConfig.from_params({"nproc_per_node": 0})


def _objective(bundles, mode: str):
    from tests.training.ddp_objectives import FailingOnRank1

    return FailingOnRank1(_pretrain_sources(bundles, 0), {"grid": 0.5, "series": 0.5}, 8, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode, message", [("raise", "RuntimeError: rank 1 fails on purpose"),
                                           ("exit", "exit code 3")])
def test_a_crashing_worker_ends_the_stage_naming_its_rank(bundles, tiny_model_params, mode, message) -> None:
    model = stages.build_model(tiny_model_params, bundles)
    tcfg = TrainerConfig.from_params({**TRAINER, "steps": 50, "nproc_per_node": 2})
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"pretrain_unimodal: worker rank 1 .*{message}"):
        stages._run("pretrain_unimodal", model, _objective(bundles, mode), tcfg, bundles, {"batch_size": 8})
    assert time.monotonic() - start < 120  # rank 0 was stopped, not left waiting in an all-reduce


@pytest.mark.slow
def test_a_data_parallel_stage_resumes_from_rank_0s_state(tmp_path, bundles, tiny_model_params) -> None:
    import json

    from tests.training.ddp_objectives import MustResume

    params = {"steps": 6, "batch_size": 8, "mask_ratio": 0.5}
    trainer = {**TRAINER, "nproc_per_node": 2, "checkpoint_every": 2, "resume_dir": str(tmp_path)}
    tcfg = TrainerConfig.from_params(trainer, params)
    sources = {"grid": 0.5, "series": 0.5}

    def model():
        torch.manual_seed(0)
        return stages.build_model(tiny_model_params, bundles)

    with pytest.raises(RuntimeError, match="worker rank 1 .*fails on purpose"):  # dies at step 2, after a save
        stages._run("pretrain_unimodal", model(), _objective(bundles, "raise"), tcfg, bundles, params)
    assert json.loads((tmp_path / "pretrain_unimodal" / "state.json").read_text())["step"] == 2
    resumed = model()
    stages._run("pretrain_unimodal", resumed, MustResume(_pretrain_sources(bundles, 0), sources, 8, first=2), tcfg,
                bundles, params)
    assert not (tmp_path / "pretrain_unimodal").exists()  # cleared once the stage completed
    single, _ = stages.pretrain_unimodal(bundles, tiny_model_params, params, TRAINER)
    _assert_same_weights(single.model, resumed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_rendezvous_nobody_else_joins_times_out_with_a_clear_error() -> None:
    spec = LaunchSpec(nproc_per_node=1, nnodes=2, rdzv_endpoint=f"127.0.0.1:{_free_port()}", rdzv_timeout=3)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"did not meet at rendezvous endpoint 127.0.0.1:\d+ within "
                                           r"trainer.rdzv_timeout=3s"):
        distributed.launch(print, ("never runs",), spec, "pretrain_unimodal")
    assert time.monotonic() - start < 60


@pytest.mark.slow
def test_two_nodes_meet_at_one_endpoint_and_train_like_one_process(tmp_path, tiny_model_params) -> None:
    """Two launcher processes on localhost stand in for two machines running the same command."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd
    from safetensors.torch import load_file

    from tests.training.multinode_run import TRAINER, UNIMODAL, bundles

    root = Path(__file__).resolve().parents[2]
    endpoint = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.training.multinode_run", endpoint, "job-1",
                               str(tmp_path / f"node{i}")], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    single, history = stages.pretrain_unimodal(bundles(), tiny_model_params, UNIMODAL, TRAINER)
    for i in range(2):  # both machines end with the single-process weights and the same history
        weights = load_file(str(tmp_path / f"node{i}" / "model.safetensors"))
        worst = max((weights[k] - v).abs().max().item() for k, v in single.model.state_dict().items())
        assert worst < 2e-5, f"node {i}: weights differ by up to {worst}"
        assert np.allclose(pd.read_csv(tmp_path / f"node{i}" / "history.csv")["loss"], history["loss"], atol=1e-5)

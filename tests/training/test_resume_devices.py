"""Resume states across devices: read onto the CPU, tied to the device type, CUDA RNGs kept, broadcast on the CPU.

No GPU is needed: CUDA's RNG functions are replaced by fakes, and a CUDA tensor is played by a tensor
subclass that says it is on ``cuda:0`` (and survives pickling as such) until ``.cpu()`` is called.
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import pytest
import torch

from omnivec2_pipelines.training import distributed, resume
from omnivec2_pipelines.training.resume import (
    ResumeConfig,
    TrainingState,
    capture_state,
    load_resume_state,
    read_state,
    restore_state,
    save_resume_state,
    write_state,
)


class OnCuda(torch.Tensor):
    """Stands in for a CUDA tensor: reports ``cuda:0``; ``.cpu()`` gives a plain CPU tensor."""

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 0)

    def cpu(self, *args, **kwargs) -> torch.Tensor:  # type: ignore[override]
        return self.as_subclass(torch.Tensor)


def _on_cuda(t: torch.Tensor) -> OnCuda:
    return t.as_subclass(OnCuda)


def _trained() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    return model, opt


def _capture(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int = 1) -> TrainingState:
    return capture_state(step, model, opt, torch.Generator().manual_seed(1), np.random.default_rng(1), {}, [])


@pytest.fixture
def no_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def trained() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    return _trained()


@pytest.fixture
def fake_cuda(trained, monkeypatch) -> dict[str, list]:
    """Two fake CUDA devices whose RNG states are recorded when set (after ``trained``: its step would ask them)."""
    calls: dict[str, list] = {"set": []}
    states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda new: calls["set"].append([s.clone() for s in new]))
    calls["states"] = states
    return calls


# -- 1: states are read onto the CPU, whatever device wrote them --------------------------------------------------

def test_states_are_read_onto_the_cpu(tmp_path, monkeypatch, no_cuda) -> None:
    model, opt = _trained()
    write_state(_capture(model, opt), tmp_path / "s")
    seen = []
    load_file = resume.load_file
    monkeypatch.setattr(resume, "load_file", lambda *a, **k: seen.append(k) or load_file(*a, **k))
    state = read_state(tmp_path / "s")
    assert seen == [{"device": "cpu"}]  # not wherever the library defaults to
    assert all(t.device.type == "cpu" for t in state.tensors.values())

    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    restore_state(state, fresh, fresh_opt, torch.Generator(), np.random.default_rng(0), "test")
    for p, q in zip(model.parameters(), fresh.parameters()):  # moved onto the parameters' device and dtype
        assert torch.equal(opt.state[p]["exp_avg"], fresh_opt.state[q]["exp_avg"])
        assert fresh_opt.state[q]["exp_avg"].device == q.device


# -- 2: a state belongs to the device type it was trained on ------------------------------------------------------

def test_state_records_its_device_type(no_cuda) -> None:
    assert _capture(*_trained()).doc["device"] == "cpu"


def test_a_state_of_another_device_type_starts_fresh(tmp_path, caplog, no_cuda) -> None:
    cfg = ResumeConfig(tmp_path / "stage", 1, "fp")
    state = _capture(*_trained(), step=3)
    save_resume_state(cfg, TrainingState(state.tensors, {**state.doc, "device": "cuda"}))  # a GPU run's state
    with caplog.at_level(logging.INFO):
        assert load_resume_state(cfg, "stage", torch.device("cpu")) is None
    assert "written on cuda, this run is on cpu" in caplog.text and not cfg.directory.exists()


@pytest.mark.parametrize("saved, run", [("cpu", "cpu"), ("cuda", "cuda:1"), ("cuda", torch.device("cuda", 0)),
                                        (None, "cpu"), ("cuda", None)])
def test_a_state_of_the_same_device_type_resumes(tmp_path, saved, run, no_cuda) -> None:
    """Another GPU index is the same device type; states without a device, or callers without one, are not checked."""
    cfg = ResumeConfig(tmp_path / "stage", 1, "fp")
    state = _capture(*_trained(), step=3)
    doc = {k: v for k, v in state.doc.items() if k != "device"}
    save_resume_state(cfg, TrainingState(state.tensors, doc if saved is None else {**doc, "device": saved}))
    loaded = load_resume_state(cfg, "stage", run)
    assert loaded is not None and loaded.step == 3


# -- 3: CUDA RNGs -------------------------------------------------------------------------------------------------

def test_cuda_rngs_are_saved_and_restored(trained, tmp_path, fake_cuda) -> None:
    model, opt = trained
    write_state(_capture(model, opt), tmp_path / "s")
    state = read_state(tmp_path / "s")
    for i, s in enumerate(fake_cuda["states"]):
        assert torch.equal(state.tensors[f"rng/cuda/{i}"], s)

    restore_state(state, model, opt, torch.Generator(), np.random.default_rng(0), "test", torch_rng=False)
    assert fake_cuda["set"] == []  # not on the other ranks of a data-parallel run
    restore_state(state, model, opt, torch.Generator(), np.random.default_rng(0), "test")
    (restored,) = fake_cuda["set"]
    assert len(restored) == 2 and all(torch.equal(a, b) for a, b in zip(restored, fake_cuda["states"]))


def test_cuda_rngs_of_missing_devices_are_left_out(trained, fake_cuda, monkeypatch) -> None:
    model, opt = trained
    state = _capture(model, opt)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    restore_state(state, model, opt, torch.Generator(), np.random.default_rng(0), "test")
    (restored,) = fake_cuda["set"]
    assert len(restored) == 1 and torch.equal(restored[0], fake_cuda["states"][0])


def test_cpu_runs_and_old_states_have_no_cuda_rng(trained, fake_cuda, monkeypatch) -> None:
    model, opt = trained
    with_cuda = _capture(model, opt)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # CUDA present, never used
    state = _capture(model, opt)
    assert not any(k.startswith("rng/cuda") for k in state.tensors)
    restore_state(state, model, opt, torch.Generator(), np.random.default_rng(0), "test")  # like an old state
    assert fake_cuda["set"] == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CUDA run's state restored without CUDA
    restore_state(with_cuda, model, opt, torch.Generator(), np.random.default_rng(0), "test")
    assert fake_cuda["set"] == []


# -- 4: broadcasts carry CPU tensors ------------------------------------------------------------------------------

Pair = collections.namedtuple("Pair", "a b")


def test_to_cpu_moves_every_tensor_and_keeps_the_structure() -> None:
    cpu = torch.ones(2)
    obj = {"state": TrainingState({"model/w": _on_cuda(torch.arange(3.0))}, {"step": 2}),
           "list": [_on_cuda(torch.zeros(1)), 3, "x"], "tuple": (_on_cuda(torch.ones(1)), None),
           "pair": Pair(_on_cuda(torch.ones(1)), 1.5), "default": collections.defaultdict(list, k=[cpu]),
           "cpu": cpu}
    out = distributed.to_cpu(obj)
    assert isinstance(out["state"], TrainingState) and out["state"].doc == {"step": 2}
    w = out["state"].tensors["model/w"]
    assert type(w) is torch.Tensor and w.device.type == "cpu" and torch.equal(w, torch.arange(3.0))
    assert type(out["list"][0]) is torch.Tensor and out["list"][1:] == [3, "x"]
    assert type(out["tuple"]) is tuple and type(out["tuple"][0]) is torch.Tensor and out["tuple"][1] is None
    assert type(out["pair"]) is Pair and type(out["pair"].a) is torch.Tensor and out["pair"].b == 1.5
    assert type(out["default"]) is collections.defaultdict and out["default"].default_factory is list
    assert out["cpu"] is cpu and out["default"]["k"][0] is cpu  # CPU tensors are not copied
    assert type(obj["state"].tensors["model/w"]) is OnCuda  # the input is left alone


def test_broadcast_sends_cpu_tensors(monkeypatch) -> None:
    sent = []
    monkeypatch.setattr(distributed, "rank_world", lambda: (0, 2))
    monkeypatch.setattr(distributed, "_collective_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(distributed.dist, "broadcast_object_list",
                        lambda box, src, device: sent.append(box[0]))
    got = distributed.broadcast_from_rank0(TrainingState({"optim/w/exp_avg": _on_cuda(torch.ones(2))}, {}))
    (state,) = sent
    assert type(state.tensors["optim/w/exp_avg"]) is torch.Tensor  # pickled from the CPU: unpickled there
    assert got is state


def _broadcast_worker() -> str:
    """One rank: rank 0 broadcasts a "CUDA" tensor; every rank must receive a plain CPU tensor."""
    rank, _ = distributed.rank_world()
    obj = {"w": _on_cuda(torch.arange(3.0))} if rank == 0 else None
    got = distributed.broadcast_from_rank0(obj)["w"]
    if type(got) is not torch.Tensor or not torch.equal(got, torch.arange(3.0)):
        raise AssertionError(f"rank {rank} received a {type(got).__name__} on {got.device}")
    return "ok"


@pytest.mark.skipif(distributed.available_workers("cpu") < 2 or not torch.distributed.is_available(),
                    reason="needs 2 CPU cores and torch.distributed")
def test_two_gloo_ranks_receive_cpu_tensors() -> None:
    spec = distributed.LaunchSpec(nproc_per_node=2)
    assert distributed.launch(_broadcast_worker, (), spec, "broadcast") == "ok"

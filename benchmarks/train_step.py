"""Section ``train_step``: the project's real training step, against the bare backbone at the same token count.

For a pair of modalities (their embedded sample data, tokenized with the project's parameters) the real
:class:`~omnivec2_pipelines.training.trainer.Trainer` runs the ``multitask`` objective (one task of each modality
per step, fused, heads and losses) and the ``pretrain_paired`` objective (masking, fusion, both decoders) at the
default model width of ``conf/base/parameters.yml`` and at wider sizes. Per row:

- ``samples_s``: training samples per second (median step time over the timed steps, after warm-up; CUDA
  synchronised only at the ends, so host-device overlap counts as it would in training);
- ``host_reads_step``: host reads of device values per step (``Tensor.item``/``tolist``/``bool``/``float``/``int``)
  while the timed steps run, log flushes included;
- ``gflop_step``: model FLOPs of one step (forward + backward, counted by ``torch.utils.flop_counter`` over every
  matmul, convolution and attention of the step: tokenizers, f, fusion, g, heads / decoders);
- ``efficiency``: the step's FLOP/s over the FLOP/s of the bare encoder ``f`` (same width and depth, no mask, the
  same number of tokens as f sees in the step, as ``(samples, tokens per sample)``) trained alone — how much of the
  backbone's speed the real step keeps. Target: ≥ 0.75 on CPU at width ≥ 256; on CUDA ≥ 0.40 bf16 MFU for the
  multitask step at BERT-base width (``paper`` sizes).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.core import PROJECT, Check, SectionResult, load_conf

#: The modality pair of the measured steps and the smaller sample-data sizes used to build their data.
PAIR = ("image", "text")
SAMPLE_SIZES = {"image": {"per_class": 30}, "text": {"n_train": 300, "n_test": 60}}
CPU_TARGET_EFFICIENCY = 0.75
CUDA_TARGET_MFU = 0.40


@dataclass(frozen=True)
class StepSize:
    """Model size and batch of one measured row.

    Attributes:
        label: Short name (``default`` = the model block of ``conf/base/parameters.yml``).
        model: Overrides of the ``model`` parameters.
        batch: Samples per step (half per modality).
        check: Whether the efficiency target applies.
    """

    label: str
    model: dict[str, Any]
    batch: int
    check: bool = False


W256 = {"width": 256, "depth_f": 4, "heads_f": 4, "reduced_width": 192, "depth_g": 2, "heads_g": 4, "mlp_ratio": 4.0}
#: The ``paper`` environment's model (BERT-base f, conf/paper/parameters.yml).
BERT_BASE = yaml.safe_load((PROJECT / "conf" / "paper" / "parameters.yml").read_text())["model"]
CPU_SIZES = (StepSize("default", {}, 64), StepSize("w256", W256, 64, check=True),
             StepSize("bert_base", BERT_BASE, 32, check=True))
CUDA_SIZES = (StepSize("default", {}, 64), StepSize("bert_base", BERT_BASE, 256, check=True))
SMOKE_SIZES = (StepSize("smoke", {"width": 32, "depth_f": 1, "heads_f": 2, "reduced_width": 32, "depth_g": 1,
                                  "heads_g": 2}, 8, check=True),)
OBJECTIVES = ("multitask", "pretrain_paired")


def pair_bundles(root: Path) -> dict[str, Any]:
    """The pair's embedded sample data written under ``root``, read and tokenized with the project's parameters."""
    from omnivec2_pipelines.modalities import get_modality

    out = {}
    for m in PAIR:
        conf = load_conf(f"parameters_modalities/{m}.yml")[m]
        mod = get_modality(m)
        mod.make_sample_data(root / m, {**conf["sample_data"], **SAMPLE_SIZES.get(m, {})})
        out[m] = mod.tokenize(mod.read({**conf["source"], "path": str(root / m)}), conf["tokenization"])
    return out


def build(objective: str, size: StepSize, bundles: dict[str, Any]) -> tuple[Any, Any]:
    """``(model, objective)`` as the stages build them (tokenizers, heads, batch sources, mask ratios)."""
    from omnivec2_pipelines.models import HeadConfig
    from omnivec2_pipelines.training.data import BatchSource
    from omnivec2_pipelines.training.objectives import MaskedPaired, Multitask, TaskData
    from omnivec2_pipelines.training.stages import build_model

    model = build_model({**load_conf("parameters.yml")["model"], **size.model}, bundles)
    if objective == "pretrain_paired":
        sources = {m: BatchSource(b.get("train", "x"), seed=i, name=m) for i, (m, b) in enumerate(bundles.items())}
        ratios = {m: float(load_conf(f"parameters_modalities/{m}.yml")[m]["mask_ratio"]) for m in bundles}
        return model, MaskedPaired(sources, ratios, size.batch)
    tasks = []
    for i, (m, b) in enumerate(bundles.items()):
        t = sorted(b.tasks)[0]
        spec = b.tasks[t]
        model.add_head(HeadConfig(m, t, spec.kind, spec.out_dim))
        tasks.append(TaskData(m, t, spec.kind, BatchSource(b.get("train", spec.input_key),
                                                           b.get("train", spec.target_key), i, m)))
    return model, Multitask(tasks, size.batch)


#: Tensor methods that read a device value on the host.
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


class HostReads:
    """Counts calls of :data:`HOST_READS` on tensors while ``active`` (patched in while the block runs)."""

    def __init__(self) -> None:
        self.count = 0
        self.active = False
        self._saved = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def __enter__(self) -> "HostReads":
        for name, fn in self._saved.items():
            setattr(torch.Tensor, name, self._wrap(fn))
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, fn in self._saved.items():
            setattr(torch.Tensor, name, fn)

    def _wrap(self, fn: Any) -> Any:
        def counted(tensor: torch.Tensor, *a: Any, **k: Any) -> Any:
            self.count += self.active
            return fn(tensor, *a, **k)
        return counted


def step_flops(model: Any, objective: Any, device: torch.device) -> tuple[float, list[tuple[int, int]]]:
    """Model FLOPs of one step (forward + backward) and the ``(samples, tokens)`` shapes that went through f."""
    from torch.utils.flop_counter import FlopCounterMode

    from omnivec2_pipelines.training.objectives import StepContext

    shapes: list[tuple[int, int]] = []
    hook = model.f.register_forward_hook(lambda mod, args, out: shapes.append(tuple(args[0].shape[:2])))
    ctx = StepContext(0, np.random.default_rng(0), torch.Generator().manual_seed(0), device)
    counter = FlopCounterMode(display=False)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    try:
        with counter:
            with autocast:
                out = objective.step(model.to(device).train(), ctx)
            out.loss.backward()
    finally:
        hook.remove()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()), shapes


def time_steps(model: Any, objective: Any, device: torch.device, warmup: int, timed: int) -> tuple[float, float]:
    """Median seconds per step and host reads per step of the real :class:`Trainer` over ``timed`` steps."""
    from omnivec2_pipelines.training.config import TrainerConfig
    from omnivec2_pipelines.training.trainer import Trainer

    cfg = TrainerConfig.from_params({"device": device.type, "progress": False, "eval_every": 0, "track": "none",
                                     "steps": warmup + timed, "log_every": 10, "warmup_steps": 1,
                                     "checkpoint_every": 0, "resume_dir": ""}, {})
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    marks: list[float] = []
    with HostReads() as reads:
        def on_step(step: int) -> None:
            if step == warmup - 1:
                sync()
                reads.active = True
            if step >= warmup - 1:
                marks.append(time.perf_counter())

        Trainer(cfg).fit(model, objective, "bench", on_step=on_step)
        sync()
        reads.active = False
    return float(statistics.median(np.diff(marks))), reads.count / timed


def backbone_gflop_s(size: dict[str, Any], samples: int, tokens: int, device: torch.device, steps: int) -> float:
    """FLOP/s of the bare encoder f (no mask) trained alone on ``(samples, tokens)`` random tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    from omnivec2_pipelines.models.layers import Encoder

    enc = Encoder(size["width"], size["depth_f"], size["heads_f"], size["mlp_ratio"]).to(device).train()
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))
    x = torch.randn(samples, tokens, size["width"], device=device)  # (B, N, D)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            out = enc(x)
        out.float().pow(2).mean().backward()
        opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return counter.get_total_flops() / statistics.median(times) / 1e9


def run(smoke: bool, device: Any) -> SectionResult:
    """Samples/s, host reads, FLOPs and trainer efficiency of the multitask and paired-pretraining steps."""
    from benchmarks.backbone import matmul_peak

    cuda = device.type == "cuda"
    sizes = SMOKE_SIZES if smoke else (CUDA_SIZES if cuda else CPU_SIZES)
    warmup, timed = (2, 3) if smoke else (3, 12)
    result = SectionResult()
    with tempfile.TemporaryDirectory() as tmp:
        bundles = pair_bundles(Path(tmp))
    base_model = load_conf("parameters.yml")["model"]
    peak = matmul_peak(8192 if cuda else 1024, torch.bfloat16 if cuda else torch.float32, device, 3,
                       10 if cuda else 1) / 1e9 if not smoke else None
    for size in sizes:
        for name in OBJECTIVES:
            torch.manual_seed(0)
            model, objective = build(name, size, bundles)
            flops, shapes = step_flops(model, objective, device)
            seconds, reads = time_steps(model, objective, device, warmup, timed)
            samples = sum(b for b, _ in shapes)
            tokens = round(sum(b * n for b, n in shapes) / max(1, samples))
            dims = {**base_model, **size.model}
            bare = backbone_gflop_s(dims, samples, tokens, device, timed)
            row = {"objective": name, "size": size.label, "width": dims["width"], "depth_f": dims["depth_f"],
                   "batch": size.batch, "f_calls": len(shapes), "f_tokens": sum(b * n for b, n in shapes),
                   "samples_s": size.batch / seconds, "host_reads_step": reads, "gflop_step": flops / 1e9,
                   "step_gflop_s": flops / seconds / 1e9, "backbone_gflop_s": bare,
                   "efficiency": flops / seconds / 1e9 / bare}
            if peak:
                row["mfu"] = row["step_gflop_s"] / peak
            result.rows.append(row)
            if size.check and not smoke:
                if cuda and name == "multitask":
                    result.checks.append(Check.at_least(f"mfu_bf16[{name},{size.label}]", row["mfu"],
                                                        CUDA_TARGET_MFU))
                elif not cuda:
                    result.checks.append(Check.at_least(f"trainer_efficiency[{name},{size.label}]",
                                                        row["efficiency"], CPU_TARGET_EFFICIENCY))
    result.info = {"pair": "+".join(PAIR), "warmup_steps": warmup, "timed_steps": timed,
                   "precision": "bf16 autocast" if cuda else "fp32"}
    if peak:
        result.info["matmul_peak_gflop_s"] = peak
    result.notes.append("efficiency = step FLOP/s / FLOP/s of the bare encoder f alone at the same (samples, "
                        "tokens per sample); FLOPs by torch.utils.flop_counter (matmuls, convolutions, attention)")
    return result

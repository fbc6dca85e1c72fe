"""Section ``backbone``: training throughput of the shared encoder vs ``torch.nn.TransformerEncoder``.

Both models have the same width, depth, heads, MLP width (``width * mlp_ratio``, GELU), pre-norm
blocks, no dropout, batch-first input and a final LayerNorm, and train on the same random input
with the same loss (mean of squares of the output) and AdamW. Throughput is compared with the
model FLOPs per step (see :func:`train_flops`) and the fp32 (CPU) or bf16 (CUDA) matmul peak
measured in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.core import Check, SectionResult, best_time
from omnivec2_pipelines.models.layers import Encoder

#: CPU targets (sizes with ``check=True``, i.e. width >= 256).
CPU_MIN_RATIO = 1.1
CPU_MIN_PEAK_FRACTION = 0.65
#: CUDA target: model-FLOPs utilisation at BERT-base size against the measured bf16 matmul peak.
CUDA_MIN_MFU = 0.45


@dataclass(frozen=True)
class BackboneSize:
    """One model size and batch shape.

    Attributes:
        width: Token width ``D``.
        depth: Number of blocks.
        heads: Attention heads (``width`` divisible by it).
        seq: Tokens per sample ``N``.
        batch: Samples per step ``B``.
        mlp_ratio: MLP hidden width / ``width``.
        check: Whether the section's targets apply to this size.
        label: Short name in check names.
    """

    width: int
    depth: int
    heads: int
    seq: int
    batch: int
    mlp_ratio: float = 4.0
    check: bool = False
    label: str = ""

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


@dataclass(frozen=True)
class TimingConfig:
    """How long to measure.

    Attributes:
        warmup: Untimed steps per model before measuring.
        rounds: Interleaved measuring rounds (ours, torch / torch, ours, ...): tokens/s from each model's
            best round, the speed ratio is the median of the per-round ratios.
        round_s: Target seconds per model per round (sets the number of steps).
        min_steps: Fewest steps per round.
        max_steps: Most steps per round.
    """

    warmup: int = 3
    rounds: int = 5
    round_s: float = 0.6
    min_steps: int = 2
    max_steps: int = 50


CPU_SIZES = (BackboneSize(128, 4, 2, 128, 16), BackboneSize(256, 4, 4, 128, 8, check=True),
             BackboneSize(384, 4, 6, 128, 8, check=True))
CUDA_SIZES = (BackboneSize(256, 4, 4, 512, 32), BackboneSize(512, 8, 8, 512, 16),
              BackboneSize(768, 12, 12, 512, 16, check=True, label="bert_base"))
SMOKE_SIZES = (BackboneSize(32, 1, 2, 16, 4, check=True),)
SMOKE_TIMING = TimingConfig(warmup=1, rounds=1, round_s=0.0, min_steps=2, max_steps=2)


def matmul_params(size: BackboneSize) -> int:
    """Weights that take part in matmuls: per block ``4 D^2`` (q, k, v, out) ``+ 2 D H`` (MLP)."""
    return size.depth * (4 * size.width ** 2 + 2 * size.width * size.hidden)


def train_flops(size: BackboneSize) -> float:
    """Model FLOPs of one training step (forward + backward), the standard transformer count.

    ``6 * P * B * N + 12 * L * N^2 * D * B`` with ``P`` = :func:`matmul_params`, ``B`` batch,
    ``N`` sequence length, ``L`` depth, ``D`` width: 2 FLOPs per weight and token forward, twice
    that backward; attention scores ``QK^T`` and ``AV`` are ``4 N^2 D`` per block and sample
    forward, times 3 with the backward. LayerNorm, GELU, softmax and the optimizer are not counted.
    """
    return 6.0 * matmul_params(size) * size.tokens + 12.0 * size.depth * size.seq ** 2 * size.width * size.batch


def build_ours(size: BackboneSize) -> nn.Module:
    """The project's shared encoder at ``size``."""
    return Encoder(size.width, size.depth, size.heads, size.mlp_ratio, 0.0)


def build_torch(size: BackboneSize) -> nn.Module:
    """``nn.TransformerEncoder`` with the same architecture (pre-norm, GELU, final LayerNorm)."""
    layer = nn.TransformerEncoderLayer(size.width, size.heads, dim_feedforward=size.hidden, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, size.depth, norm=nn.LayerNorm(size.width), enable_nested_tensor=False)


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                device: torch.device) -> Callable[[], None]:
    """One forward + backward + AdamW step (bf16 autocast on CUDA), loss = mean of squares."""
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            out = model(x)  # (B, N, D)
        out.float().pow(2).mean().backward()
        opt.step()

    return step


def _timed_rounds(steps: dict[str, Callable[[], None]], timing: TimingConfig,
                  sync: Callable[[], None]) -> dict[str, list[float]]:
    """Seconds per step of each model in every round, after warm-up.

    Rounds interleave the models (order reversed every other round), so a change in machine
    load hits both models of a round alike and per-round ratios stay comparable.
    """
    n_steps: dict[str, int] = {}
    for name, step in steps.items():
        for _ in range(timing.warmup):
            step()
        one, _ = best_time(step, sync=sync)
        n_steps[name] = max(timing.min_steps, min(timing.max_steps, round(timing.round_s / max(one, 1e-9))))
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(timing.rounds):
        for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
            n = n_steps[name]
            seconds, _ = best_time(lambda: [steps[name]() for _ in range(n)], sync=sync)
            per_round[name].append(seconds / n)
    return per_round


def matmul_peak(n: int, dtype: torch.dtype, device: torch.device, reps: int = 5, inner: int = 1) -> float:
    """Measured FLOP/s of an ``n x n`` square matmul: warm-up, then best of ``reps`` (``inner`` matmuls each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = _sync(device)
    for _ in range(2):
        a @ b
    seconds, _ = best_time(lambda: [a @ b for _ in range(inner)], min_total_s=float("inf"), max_reps=reps,
                           sync=sync)
    return 2.0 * n ** 3 * inner / seconds


def measure_size(size: BackboneSize, device: torch.device, timing: TimingConfig) -> dict[str, Any]:
    """Tokens/s of both models at ``size`` (best round), speed ratio (median of per-round ratios) and
    achieved model FLOP/s (no peak fraction yet)."""
    torch.manual_seed(0)
    x = torch.randn(size.batch, size.seq, size.width, device=device)  # (B, N, D), shared input
    models = {"ours": build_ours(size).to(device), "torch": build_torch(size).to(device)}
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    if counts["ours"] != counts["torch"]:
        raise AssertionError(f"parameter counts differ at {size}: {counts}; the comparison would be unfair")
    steps = {k: _train_step(m.train(), torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True), x, device)
             for k, m in models.items()}
    rounds = _timed_rounds(steps, timing, _sync(device))
    per_step = {k: min(v) for k, v in rounds.items()}
    flops = train_flops(size)
    row: dict[str, Any] = {k: v for k, v in asdict(size).items() if k not in ("check", "label")}
    row["params_m"] = counts["ours"] / 1e6
    row["gflop_step"] = flops / 1e9
    for k in models:
        row[f"{k}_tok_s"] = size.tokens / per_step[k]
    row["ratio"] = statistics.median(t / o for t, o in zip(rounds["torch"], rounds["ours"]))
    for k in models:
        row[f"{k}_gflop_s"] = flops / per_step[k] / 1e9
    return row


def add_peak_fractions(row: dict[str, Any], peak_gflop_s: float) -> None:
    """``<model>_peak_frac`` = achieved model FLOP/s / measured matmul peak, after ``<model>_gflop_s``."""
    for k in ("ours", "torch"):
        row[f"{k}_peak_frac"] = row[f"{k}_gflop_s"] / peak_gflop_s


def _checks(size: BackboneSize, row: dict[str, Any], device: torch.device) -> list[Check]:
    tag = size.label or f"w{size.width}"
    if device.type == "cuda":
        return [Check.at_least(f"ours_mfu_bf16[{tag}]", row["ours_peak_frac"], CUDA_MIN_MFU)]
    return [Check.at_least(f"ratio_ours_vs_torch[{tag}]", row["ratio"], CPU_MIN_RATIO),
            Check.at_least(f"ours_peak_frac_fp32[{tag}]", row["ours_peak_frac"], CPU_MIN_PEAK_FRACTION)]


def run(smoke: bool, device: torch.device) -> SectionResult:
    """Benchmark both encoders at 2-3 sizes (one tiny size in smoke mode).

    The matmul peak is measured before the first size and after each one; the best of these is
    the peak, and their spread (worst / best) shows how much other work disturbed the run.
    """
    cuda = device.type == "cuda"
    sizes = SMOKE_SIZES if smoke else (CUDA_SIZES if cuda else CPU_SIZES)
    timing = SMOKE_TIMING if smoke else TimingConfig()
    n = 512 if smoke else (8192 if cuda else 2048)
    reps, inner = (2, 1) if smoke else (5, 10 if cuda else 1)
    dtype = torch.bfloat16 if cuda else torch.float32
    peaks = [matmul_peak(n, dtype, device, reps, inner) / 1e9]
    result = SectionResult()
    for size in sizes:
        result.rows.append(measure_size(size, device, timing))
        peaks.append(matmul_peak(n, dtype, device, reps, inner) / 1e9)
    peak = max(peaks)
    for size, row in zip(sizes, result.rows):
        add_peak_fractions(row, peak)
        if size.check:
            result.checks += _checks(size, row, device)
    name = "bf16" if cuda else "fp32"
    result.info = {"precision": "bf16 autocast" if cuda else "fp32", "matmul_n": n,
                   f"matmul_peak_{name}_gflop_s": peak, "peak_spread": min(peaks) / peak,
                   "flops_formula": "6*P_matmul*B*N + 12*L*N^2*D*B"}
    if cuda:
        result.info["matmul_peak_fp32_gflop_s"] = matmul_peak(n, torch.float32, device, reps, inner) / 1e9
    result.notes.append("ratio = median over rounds of ours tokens/s / nn.TransformerEncoder tokens/s; "
                        f"peak_frac = achieved model FLOP/s / measured {name} {n}x{n} matmul peak "
                        f"(best of {len(peaks)} measurements)")
    if result.info["peak_spread"] < 0.8:
        result.notes.append(f"the matmul peak varied by {1 - result.info['peak_spread']:.0%} during the run: "
                            "other processes competed for the CPU/GPU, so these numbers are unreliable")
    return result

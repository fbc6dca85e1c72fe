"""How task metrics compare: each task kind's main metric and direction, and the normalised score.

Torch-free, so parameter checks and the study's report can use it without loading torch.
"""

from __future__ import annotations

from omnivec2_pipelines.tasks import task_kinds

#: The metric that ranks models per task kind, and whether higher (``max``) or lower (``min``) is better
#: (each kind's ``main_metric`` and ``direction``, :mod:`omnivec2_pipelines.tasks`).
MAIN_METRIC = {name: (k.main_metric, k.direction) for name, k in task_kinds().items()}
#: Metric-key part of a model-minus-baseline difference with its bootstrap interval
#: (``<modality>.<task>.vs_baseline.<metric>.{diff,ci_low,ci_high}``, the evaluation's ``bootstrap``).
VS_BASELINE = "vs_baseline"
#: Prefix of a task's val normalised score in the multitask validation's metrics (``val.score.<modality>.<task>``).
SCORE_PREFIX = "val.score."


def normalised_score(metric: float, baseline: float, direction: str) -> float:
    """Signed improvement over the baseline relative to its size: positive = better than the baseline.

    ``(metric - baseline) / |baseline|`` when higher is better (``direction="max"``),
    ``(baseline - metric) / |baseline|`` when lower is better (``"min"``), clipped to [-1, 1] so
    that one task far off its baseline (an MSE ten times the baseline's) does not decide a mean
    over tasks alone. A zero baseline divides by 1 instead.
    """
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    diff = metric - baseline if direction == "max" else baseline - metric
    return max(-1.0, min(1.0, diff / (abs(baseline) if baseline != 0 else 1.0)))


def better(a: float, b: float, direction: str) -> bool:
    """Whether ``a`` is strictly better than ``b`` for a metric of ``direction``."""
    return a > b if direction == "max" else a < b

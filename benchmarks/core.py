"""Shared pieces of the benchmark harness: result types, timing, project config, text tables."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Repository root (the folder holding ``conf/`` and ``pyproject.toml``).
PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Check:
    """One target check: ``value <op> target``.

    Attributes:
        name: What is checked, e.g. ``"ratio_ours_vs_torch[w256]"``.
        value: The measured value.
        target: The bound the value is compared with.
        op: ``">="`` (value must reach target) or ``"<="`` (value must stay below target).
        ok: Whether the target is met.
    """

    name: str
    value: float
    target: float
    op: str
    ok: bool

    @classmethod
    def at_least(cls, name: str, value: float, target: float) -> "Check":
        return cls(name, float(value), float(target), ">=", bool(value >= target))

    @classmethod
    def at_most(cls, name: str, value: float, target: float) -> "Check":
        return cls(name, float(value), float(target), "<=", bool(value <= target))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SectionResult:
    """What one benchmark section measured.

    Attributes:
        rows: One flat dict per measurement (str / int / float values), printed as a table.
        checks: Target checks of this section.
        info: Section-wide numbers and settings (e.g. the measured matmul peak).
        notes: Free-text remarks printed under the table.
        errors: Problems that did not stop the section (e.g. one modality failed); a section
            with errors counts as failed, like one that raised.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: A benchmark section: ``(smoke, device) -> SectionResult``; ``device`` is a ``torch.device``.
SectionFn = Callable[[bool, Any], SectionResult]


def best_time(fn: Callable[[], Any], min_total_s: float = 0.0, max_reps: int = 5,
              sync: Callable[[], None] = lambda: None) -> tuple[float, Any]:
    """Best wall time of ``fn()`` over repetitions (at least one, more until ``min_total_s``).

    Args:
        fn: The work to time.
        min_total_s: Keep repeating until this much time was spent (or ``max_reps`` runs).
        max_reps: Most repetitions.
        sync: Called before starting and before stopping the clock (CUDA synchronisation).

    Returns:
        ``(best seconds, result of the last call)``.
    """
    best, total, reps, out = math.inf, 0.0, 0, None
    while reps == 0 or (total < min_total_s and reps < max_reps):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        dt = time.perf_counter() - t0
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best, out


def load_conf(name: str) -> dict[str, Any]:
    """One YAML file of ``conf/base`` (plain ``yaml.safe_load``, no interpolation)."""
    return yaml.safe_load((PROJECT / "conf" / "base" / name).read_text())


def nonfinite_values(result: SectionResult) -> list[str]:
    """``"rows[i].key"`` / ``"checks[i].value"`` / ``"info.key"`` of every NaN or infinite number."""
    bad = [f"rows[{i}].{k}" for i, row in enumerate(result.rows) for k, v in row.items() if _nonfinite(v)]
    bad += [f"checks[{i}].value" for i, c in enumerate(result.checks) if _nonfinite(c.value)]
    return bad + [f"info.{k}" for k, v in result.info.items() if _nonfinite(v)]


def _nonfinite(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


def fmt(v: Any) -> str:
    """Compact cell text: 4 significant digits, thousands separators for large numbers."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def text_table(rows: Sequence[dict[str, Any]], indent: str = "  ") -> str:
    """Rows (dicts) as an aligned plain-text table; columns in first-seen key order, numbers right-aligned."""
    if not rows:
        return f"{indent}(no rows)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows if c in r) for c in cols]

    def line(values: Sequence[str]) -> str:
        return indent + "  ".join(v.rjust(w) if num else v.ljust(w)
                                  for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(row) for row in cells)])

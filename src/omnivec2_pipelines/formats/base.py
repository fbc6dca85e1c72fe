"""What every reader shares: :class:`DataError`, :class:`ErrorPolicy` and the split names.

A reader raises :class:`DataError` naming the file (and line, row or pixel) or the parameter and
what was expected; :class:`ErrorPolicy` is a read's ``source.on_error`` choice: raise, or skip and
record. The format modules of this package and every modality use them
(:mod:`omnivec2_pipelines.modalities.base` re-exports them).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

#: Split names: split folders of the layouts, values of the canonical table's ``split`` column.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Splits every data set must have (``val`` is carved from ``train`` when absent).
REQUIRED_SPLITS: tuple[str, ...] = ("train", "test")


class DataError(ValueError):
    """Bad input data: names the file or parameter and what was expected.

    Args:
        message: What was wrong, naming the file or parameter.
        reason: Short category for ingestion reports (``"corrupt"``, ``"nan"``, ``"empty"``,
            ``"shape"``, ``"channels"``, ``"missing"``, ``"invalid"``, ...).
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ErrorPolicy:
    """What a reader does with a bad file: ``source.on_error`` = ``"raise"`` (default) or ``"skip"``.

    With ``skip`` the file is left out and recorded (file, reason, message); the ingestion
    report lists the counts per reason and the file names, so nothing is dropped silently.
    Problems with the data set as a whole (missing path, no files, a missing split) always raise.

    Args:
        source: The modality's ``source`` parameters.
        modality: Modality name, for messages.
    """

    #: Log a progress line every this many files.
    log_every: int = 500

    def __init__(self, source: dict[str, Any], modality: str) -> None:
        mode = source.get("on_error", "raise")
        if mode not in ("raise", "skip"):
            raise DataError(f"{modality}.source.on_error={mode!r}; expected 'raise' or 'skip'")
        self.mode, self.modality = mode, modality
        self.skipped: list[dict[str, str]] = []
        self.count = 0
        self._seen: set[str] = set()
        self._bar: Any = None
        self._start = 0.0

    def _progress(self, file: str | Path) -> None:
        """Progress bar (only on a terminal) and a log line every ``log_every`` distinct files."""
        key = str(file)
        if key in self._seen:  # a reader may check one file in several passes
            return
        self._seen.add(key)
        if self._bar is None:
            from tqdm.auto import tqdm

            self._start = time.perf_counter()
            self._bar = tqdm(desc=f"reading {self.modality}", unit="file", disable=None, leave=False)
        self.count += 1
        self._bar.update(1)
        if self.count % self.log_every == 0:
            rate = self.count / max(time.perf_counter() - self._start, 1e-9)
            log.info("%s: read %d files (%.0f files/s, %d skipped)", self.modality, self.count, rate,
                     len(self.skipped))

    def call(self, file: str | Path, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Return ``fn(*args, **kwargs)``; on :class:`DataError` raise or record and return None."""
        self._progress(file)
        try:
            return fn(*args, **kwargs)
        except DataError as e:
            if self.mode == "raise":
                self.close()
                raise
            self.skipped.append({"file": str(file), "reason": e.reason, "message": str(e)})
            return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def report(self) -> dict[str, Any]:
        """``{"on_error", "skipped", "by_reason", "files"}`` for the ingestion report."""
        by_reason: dict[str, int] = {}
        for s in self.skipped:
            by_reason[s["reason"]] = by_reason.get(s["reason"], 0) + 1
        return {"on_error": self.mode, "skipped": len(self.skipped), "by_reason": by_reason,
                "files": self.skipped}

    def attach(self, table: pd.DataFrame) -> pd.DataFrame:
        """Store the report in ``table.attrs["ingestion_errors"]`` (read by the ingestion node)."""
        self.close()
        table.attrs["ingestion_errors"] = self.report()
        return table

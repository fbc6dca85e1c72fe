"""Experiment tracking of the training stages: the callbacks the trainer calls, and DVCLive behind them.

:class:`TrainingCallback` is what :meth:`~omnivec2_pipelines.training.trainer.Trainer.fit` calls: ``on_step``
after every step, ``on_eval`` after every validation, ``on_end`` once the stage finished. ``trainer.track:
dvclive`` adds :class:`DVCLiveCallback` on rank 0 (:func:`stage_callbacks`): it logs, every ``log_every``
steps and at the last, the training loss (and its parts), the learning rate and samples/s; every
validation's score and metrics; the stage's parameters (its block and the effective trainer settings) and,
at the end, its final metrics (last loss, chosen step, best val score, ...). Each stage writes
``<track_dir>/<stage>/`` (``metrics.json``, ``params.yaml``, ``plots/metrics/<name>.tsv``; a new run of the
stage replaces it) and its entries in ``<track_dir>/dvc.yaml``, which is how ``dvc exp show``, ``dvc plots``
and editors' DVC views find them. ``trainer.track: none`` writes nothing.

Pure Python (DVCLive is imported when a stage is tracked); no torch, no Kedro.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: Values of ``trainer.track``.
TRACKERS = ("none", "dvclive")

#: Columns of a history row that are bookkeeping, not metrics.
_NOT_LOGGED = {"step", "what", "skipped", "elapsed_s"}


class TrainingCallback:
    """Hooks of a training stage (every method optional). Called on every rank the callback is given to."""

    def on_step(self, stage: str, step: int, row: Mapping[str, Any]) -> None:
        """For optimiser step ``step`` (0-based): ``row`` is its history row (``loss``, ``lr``, ``loss.<part>``,
        ...) with ``samples_per_s`` (since the stage started) and ``last`` (whether it is the stage's last step).

        Called for every step in order, but in batches: when the trainer reads the losses back from the
        device (every ``log_every`` steps, at validations and resume saves, at the end), so a step never
        waits for them."""

    def on_eval(self, stage: str, step: int, row: Mapping[str, Any]) -> None:
        """After the validation at step ``step``: ``row`` holds ``val.score`` and the validator's metrics."""

    def on_end(self, stage: str, summary: Mapping[str, Any]) -> None:
        """The stage finished: ``summary`` is its model selection (``chosen_step``, ``best_step``, ``val_score``,
        ``stopped``, ``weights``, ...) with ``steps_run``, ``final_loss`` and ``samples_per_s``."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _jsonable(value: Any) -> Any:
    """Parameters as plain YAML values (tuples as lists, anything else unknown as its string)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class DVCLiveCallback(TrainingCallback):
    """Logs one stage through a ``dvclive.Live`` in ``<directory>/<stage>`` (replacing an earlier run's logs).

    DVCLive's step is the number of completed optimiser steps, so the plots of a stage share one x axis.

    Args:
        directory: The tracking folder (``trainer.track_dir``); its ``dvc.yaml`` lists every stage's logs.
        stage: The stage.
        params: Logged to ``params.yaml`` (the stage's block and the trainer settings).
        log_every: Log the training metrics every N steps (and at the last step).
    """

    def __init__(self, directory: str | Path, stage: str, params: Mapping[str, Any], log_every: int) -> None:
        try:
            from dvclive import Live
        except ImportError as e:  # pragma: no cover - a dependency of the project
            raise ImportError("trainer.track=dvclive needs the dvclive package (pip install 'dvclive>=3.49,<4'), "
                              "or set trainer.track: none") from e
        directory = Path(directory)
        self.log_every = log_every
        try:
            # save_dvc_exp=False: a plain `kedro run` creates no DVC experiment (`dvc exp run` makes its own)
            self.live: Any = Live(dir=str(directory / stage), dvcyaml=str(directory / "dvc.yaml"),
                                  save_dvc_exp=False, report=None)
        except Exception as e:  # e.g. a git repository without a commit yet: DVCLive cannot start there
            log.warning("%s: trainer.track=dvclive, but DVCLive could not start (%s: %s); this run of the stage is "
                        "not tracked (commit once, or set trainer.track: none)", stage, type(e).__name__, e)
            self.live = None
            return
        self.live.log_params(_jsonable(params))

    def _log(self, step: int, prefix: str, row: Mapping[str, Any], keys: list[str]) -> None:
        if self.live is None:
            return
        self.live.step = step + 1
        for key in keys:
            value = _number(row.get(key))
            if value is not None:
                self.live.log_metric(f"{prefix}/{key}", value)
        self.live.sync()  # summary (metrics.json) and dvc.yaml, so a killed run leaves readable logs

    def on_step(self, stage: str, step: int, row: Mapping[str, Any]) -> None:
        if (step + 1) % self.log_every and not row.get("last"):
            return
        keys = ["loss", "lr", "samples_per_s", *sorted(k for k in row if k.startswith("loss."))]
        self._log(step, "train", row, keys)

    def on_eval(self, stage: str, step: int, row: Mapping[str, Any]) -> None:
        if self.live is None:
            return
        keys = sorted(k for k in row if k.startswith("val.") and k not in _NOT_LOGGED)
        self.live.step = step + 1
        for key in keys:
            value = _number(row.get(key))
            if value is not None and math.isfinite(value):
                self.live.log_metric(f"val/{key.removeprefix('val.')}", value)
        self.live.sync()

    def on_end(self, stage: str, summary: Mapping[str, Any]) -> None:
        if self.live is None:
            return
        final = {k: v for k, v in summary.items() if _number(v) is not None or isinstance(v, str)}
        self.live.summary["final"] = _jsonable(final)
        self.live.end()


def stage_callbacks(track: str, directory: str, stage: str, params: Mapping[str, Any],
                    log_every: int) -> list[TrainingCallback]:
    """The tracking callbacks of a stage on this rank: none off rank 0 or with ``trainer.track: none``.

    Args:
        track: ``trainer.track``.
        directory: ``trainer.track_dir``.
        stage: The stage.
        params: What the run logs as its parameters.
        log_every: ``trainer.log_every``.
    """
    if track not in TRACKERS:
        raise ValueError(f"trainer.track={track!r} must be one of {list(TRACKERS)}")
    if track == "none":
        return []
    from omnivec2_pipelines.training import distributed

    if distributed.rank_world()[0] != 0:
        return []
    return [DVCLiveCallback(directory, stage, params, log_every)]

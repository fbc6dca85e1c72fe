"""Project CLI: Kedro's own ``kedro run``, where the project's errors end the run in one line.

Kedro loads ``<package>.cli`` by itself: its ``cli`` group takes precedence over the built-in
project commands, and ``python -m omnivec2_pipelines`` runs its ``run`` (``find_run_command``), so
nothing needs registering. ``run`` is Kedro's run command unchanged (same options, same
callback), plus ``--verbose``.

A configuration or data error (a wrong parameter, a bad file, a missing input) would otherwise end
in a rich traceback of 100-250 lines with the useful line at the bottom. Here an error the project
raises on purpose ends the run with Kedro's usual log lines (``Node ... failed with error``,
``No nodes ran``), then ``<ErrorType>: <message>`` and exit code 1. Those errors are: the
project's :class:`~omnivec2_pipelines.modalities.base.DataError`, Kedro's ``DatasetError`` (its
message names the dataset), and any exception raised by a ``raise`` statement in the project's own
code (parameter checks, readers, the trainer's guards). Anything else, a bug, keeps its full
traceback; ``kedro run --verbose`` shows the full traceback of every error.
"""

from __future__ import annotations

import linecache
import re
import traceback
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as _kedro_run
from kedro.framework.cli.utils import CONTEXT_SETTINGS

PACKAGE_DIR = Path(__file__).resolve().parent
_RAISE = re.compile(r"(^|:\s*)raise\b")


def is_project_error(exc: BaseException) -> bool:
    """True for errors meant for the user: DataError, DatasetError, or raised by the project's own code."""
    from kedro.io import DatasetError

    from omnivec2_pipelines.modalities.base import DataError

    if isinstance(exc, (DataError, DatasetError)):
        return True
    if not isinstance(exc, Exception):
        return False  # KeyboardInterrupt, SystemExit: never rewritten
    frames = list(traceback.walk_tb(exc.__traceback__))
    if not frames:
        return False
    frame, lineno = frames[-1]  # where the exception was raised
    filename = frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        inside = False
    return inside and bool(_RAISE.search(linecache.getline(filename, lineno).strip()))


class ProjectError(click.ClickException):
    """A project error, shown as ``<ErrorType>: <message>`` on stderr (exit code 1)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")

    def show(self, file: Any = None) -> None:
        click.secho(f"{self.format_message()}\n(kedro run --verbose shows the full traceback)", fg="yellow",
                    err=True)


@click.group(context_settings=CONTEXT_SETTINGS, name=__file__)
def cli() -> None:
    """Command line tools for the omnivec2-pipelines project."""


def _run(verbose: bool = False, **kwargs: Any) -> Any:
    try:
        return _kedro_run.callback(**kwargs)  # type: ignore[misc]
    except Exception as exc:
        if verbose or not is_project_error(exc):
            raise
        raise ProjectError(exc) from exc


_VERBOSE = click.Option(["--verbose", "-v"], is_flag=True, default=False,
                        help="Show the full traceback of every error (project errors are one line otherwise).")

#: Kedro's ``kedro run`` (every option, the same callback), with project errors shortened.
run = click.Command(name="run", callback=_run, params=[*_kedro_run.params, _VERBOSE],
                    help=_kedro_run.help, short_help=_kedro_run.short_help,
                    context_settings=_kedro_run.context_settings)
cli.add_command(run)

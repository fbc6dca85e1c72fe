"""The UCR/UEA ``.ts`` data sets bundled with the installed sktime (``sktime/datasets/data/<Name>/``).

sktime is located without importing it (its import is slow); the files are read with
:mod:`.ucr_ts`, so sktime's own loaders are never used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from omnivec2_pipelines.formats.base import DataError


def bundled_ts_dir(name: str) -> Path:
    """Folder holding ``<name>_TRAIN.ts`` and ``<name>_TEST.ts`` of the data set ``name`` bundled with sktime.

    Raises:
        DataError: sktime is not installed, or has no such data set (the message lists those it has).
    """
    spec = importlib.util.find_spec("sktime")  # locate without importing (slow import)
    if spec is None or spec.origin is None:
        raise DataError(f"sktime is not installed; it provides the bundled .ts data set {name!r}")
    base = Path(spec.origin).parent / "datasets" / "data"
    folder = base / name
    if not (folder / f"{name}_TRAIN.ts").is_file() or not (folder / f"{name}_TEST.ts").is_file():
        have = sorted(p.parent.name for p in base.glob("*/*_TRAIN.ts"))
        raise DataError(f"sktime has no bundled .ts data set {name!r} under {base}; "
                        f"available: {have}")
    return folder

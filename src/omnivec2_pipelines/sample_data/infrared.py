"""Sample data of the infrared modality: the REAL Tecator NIR meat spectra bundled with sktime, as a CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from omnivec2_pipelines.formats.sktime_data import bundled_ts_dir
from omnivec2_pipelines.formats.ucr_ts import parse_ts
from omnivec2_pipelines.modalities.base import DataError, atomic_directory
from omnivec2_pipelines.modalities.infrared import SPECTRA_FILE

#: Tecator spectral range (nm), from the data set's description.
TECATOR_RANGE_NM = (850.0, 1050.0)


def tecator_dir() -> Path:
    """Folder of the Tecator ``.ts`` files bundled with the installed sktime (not imported)."""
    return bundled_ts_dir("Tecator")


def parse_regression_ts(path: Path) -> tuple[list[list[str]], list[str]]:
    """The series and targets of a regression ``.ts`` file (``@targetLabel true``) as written.

    Values are the original text tokens so they can be copied without rounding.

    Returns:
        ``(values, targets)``: one token list per series (channel-major) and one target token per series.

    Raises:
        DataError: see :func:`~omnivec2_pipelines.formats.ucr_ts.parse_ts`.
    """
    ts = parse_ts(path, problem="regression", keep_text=True)
    return ts.texts, ts.labels


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write the REAL Tecator NIR spectra (bundled with sktime) as ``root/spectra.csv``.

    215 meat samples (sktime's 172 train / 43 test split kept in the ``split`` column),
    100 absorbance values each over 850–1050 nm (columns named by wavelength, evenly
    spaced, 2 decimals), ``target`` = fat content (%). Values are copied as text, exactly.

    Returns:
        Manifest ``{"source", "files", "spectra", "classes", "target"}``.
    """
    folder = tecator_dir()
    parsed = {s: parse_regression_ts(folder / f"Tecator_{s.upper()}.ts") for s in ("train", "test")}
    n_bands = len(parsed["train"][0][0])
    if any(len(v) != n_bands for vals, _ in parsed.values() for v in vals):
        raise DataError(f"{folder}: TRAIN and TEST spectra have different lengths")
    grid = np.linspace(*TECATOR_RANGE_NM, n_bands)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sample_id", "split", "target", *(f"{x:.2f}" for x in grid)])
    n = 0
    for split, (vals, targets) in parsed.items():
        for i, (v, t) in enumerate(zip(vals, targets)):
            w.writerow([f"tecator_{split}_{i:04d}", split, t, *v])
            n += 1
    with atomic_directory(Path(root)) as tmp:
        (tmp / SPECTRA_FILE).write_text(buf.getvalue(), encoding="utf-8")
    return {"source": "Tecator NIR meat spectra bundled with sktime (real)", "files": 1,
            "spectra": n, "classes": [], "target": "fat content (%)"}

"""Series tables shared by the time-series, IMU and infrared modalities.

:func:`read_ucr_table` reads a UCR/UEA ``.ts`` pair into the canonical series table (``values``
channel-major ``C*L``, ``n_channels``, ``length``, ``source_line``); :func:`resample` brings one row of
such a table to a fixed length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.formats.ucr_ts import FixedChannels, parse_pair, resolve_pair
from omnivec2_pipelines.modalities.base import DataError, ErrorPolicy, assign_val_split, label_order


def read_ucr_table(root: Path, source: dict[str, Any], policy: ErrorPolicy, modality: str,
                   fixed: FixedChannels | None = None, ids: str = "index",
                   empty_message: str | None = None) -> pd.DataFrame:
    """The canonical table of the ``<Name>_TRAIN.ts``/``<Name>_TEST.ts`` pair in ``root``, val carved from train.

    One row per series: ``values`` (float64, channel-major ``C*L``), ``n_channels``, ``length``,
    ``source_line``. Labels index the class names in numeric order when all are numbers, else in
    text order.

    Args:
        root: The folder (``source.path``).
        source: The modality's source params: ``name`` (optional with one pair in the folder),
            ``val_fraction``, ``seed``.
        policy: Error policy of the read (bad data lines).
        modality: Modality name, for messages.
        fixed: Channel rule of a fixed-layout reader (see
            :class:`~omnivec2_pipelines.formats.ucr_ts.FixedChannels`).
        ids: Sample ids from the position of a series among the data lines of its file
            (``"index"``: ``<file stem>/00003``) or from its line (``"line"``: ``<file stem>/000014``).
        empty_message: See :func:`~omnivec2_pipelines.formats.ucr_ts.parse_ts`.

    Raises:
        DataError: ``root`` not a folder, missing/ambiguous files, parse errors (``file:line``;
            bad data lines only when not skipping), no series left in a file, or TRAIN and TEST
            with different channel counts.
    """
    if not root.is_dir():
        raise DataError(f"{modality}.source.path: {root} is not a directory; expected a "
                        f"folder with <Name>_TRAIN.ts and <Name>_TEST.ts")
    name = resolve_pair(root, source.get("name"), modality)
    parsed = parse_pair(root, name, policy, fixed=fixed, empty_message=empty_message)
    classes = label_order({lab for ts in parsed.values() for lab in ts.labels})
    label_of = {c: i for i, c in enumerate(classes)}
    rows: list[dict[str, Any]] = []
    for split, ts in parsed.items():
        for i, x, lab, line in zip(ts.indices, ts.series, ts.labels, ts.lines):
            rows.append({
                "sample_id": f"{ts.path.stem}/{i:05d}" if ids == "index" else f"{ts.path.stem}/{line:06d}",
                "source_file": ts.path.name,
                "label": label_of[lab],
                "label_name": lab,
                "split": split,
                "values": x.reshape(-1),  # (C, L) -> (C*L,) channel-major
                "n_channels": int(x.shape[0]),
                "length": int(x.shape[1]),
                "source_line": line,
            })
    table = pd.DataFrame(rows).astype({"label": "int64", "n_channels": "int64", "length": "int64",
                                       "source_line": "int64"})
    return assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))


def resample(row: Any, length: int) -> np.ndarray:
    """One series-table row to a float64 ``(C, length)`` array by linear interpolation per channel."""
    c, n = int(row.n_channels), int(row.length)
    values = np.asarray(row.values, dtype=np.float64)
    if values.size != c * n or n == 0:
        raise DataError(f"{row.source_file}: sample {row.sample_id} has {values.size} values, "
                        f"expected n_channels*length = {c}*{n} > 0", reason="shape")
    x = values.reshape(c, n)  # (C*L0,) -> (C, L0)
    if n == length:
        return x
    if n == 1:
        return np.repeat(x, length, axis=1)  # (C, 1) -> (C, length)
    grid = np.linspace(0.0, n - 1.0, length)
    return np.stack([np.interp(grid, np.arange(n), ch) for ch in x])  # (C, length)

"""Series tables shared by the time-series, IMU and infrared modalities.

:func:`read_ucr_table` reads a UCR/UEA ``.ts`` pair into the canonical series table (``values``
channel-major ``C*L``, ``n_channels``, ``length``, ``source_line``); :func:`resample` brings one row of
such a table to a fixed length; :func:`series_input_rows` reads raw ``.ts`` files or arrays into rows of
such a table (``read_inputs``) and :func:`check_channels` checks them against a bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.formats.ucr_ts import INFER_PROBLEM, FixedChannels, parse_pair, parse_ts, resolve_pair
from omnivec2_pipelines.modalities._shared.inputs import input_items
from omnivec2_pipelines.modalities.base import DataError, ErrorPolicy, assign_val_split, label_order

#: File extensions of raw series inputs.
TS_EXTENSIONS: tuple[str, ...] = (".ts",)
#: What an in-memory series input may be, for messages.
SERIES_OBJECTS = "a finite real array (C, T) (or (T,) for one channel)"


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


def _series_row(item_id: str, x: np.ndarray, where: str, line: int = 0) -> dict[str, Any]:
    """One raw series ``(C, T)`` as a row of the series table."""
    return {"id": item_id, "sample_id": item_id, "source_file": where, "values": x.reshape(-1),
            "n_channels": int(x.shape[0]), "length": int(x.shape[1]), "source_line": line}


def _series_object(obj: np.ndarray, where: str) -> np.ndarray:
    """An in-memory series as float64 ``(C, T)``, or a DataError naming ``where``."""
    if obj.ndim not in (1, 2) or obj.size == 0 or not np.issubdtype(obj.dtype, np.number) \
            or np.iscomplexobj(obj):
        raise DataError(f"{where}: got an array of shape {obj.shape} and dtype {obj.dtype}; expected "
                        f"{SERIES_OBJECTS}", reason="shape")
    x = np.asarray(obj, dtype=np.float64)
    x = x[None] if x.ndim == 1 else x  # (T,) -> (1, T)
    if not np.isfinite(x).all():
        raise DataError(f"{where}: series has NaN/inf values; missing values are not supported",
                        reason="nan")
    return x


def series_input_rows(inputs: Any, modality: str, fixed: FixedChannels | None = None) -> pd.DataFrame:
    """Raw series → rows of the series table (``id``, ``sample_id``, ``source_file``, ``values``,
    ``n_channels``, ``length``, ``source_line``) for ``preprocess``.

    A ``.ts`` file (or a folder of them) gives every series of the file, parsed as ingestion parses
    it (:func:`~omnivec2_pipelines.formats.ucr_ts.parse_ts`; class labels or regression targets are read
    and ignored, and unlabelled files with ``@classLabel false`` are read too), with ids
    ``<file id>/<position among its data lines>``; an array gives one series with its position as id.

    Args:
        inputs: See :meth:`~omnivec2_pipelines.modalities.base.Modality.read_inputs`.
        modality: Modality name, for messages.
        fixed: The reader's channel rule (IMU), or None.

    Raises:
        DataError: as :func:`~._shared.inputs.input_items` and :func:`parse_ts`, or a bad array.
    """
    rows: list[dict[str, Any]] = []
    for item_id, item in input_items(inputs, TS_EXTENSIONS, modality,
                                     lambda o: isinstance(o, np.ndarray), SERIES_OBJECTS):
        if isinstance(item, Path):
            ts = parse_ts(item, problem=INFER_PROBLEM, fixed=fixed)
            rows += [_series_row(f"{item_id}/{i}", x, str(item), line)
                     for i, x, line in zip(ts.indices, ts.series, ts.lines)]
        else:
            rows.append(_series_row(item_id, _series_object(item, f"{modality} input {item_id}"),
                                    f"input {item_id}"))
    return pd.DataFrame(rows).astype({"n_channels": "int64", "length": "int64", "source_line": "int64"})


def check_channels(table: pd.DataFrame, channels: int, modality: str) -> None:
    """Every row of a series table has the bundle's ``channels``.

    Raises:
        DataError: (reason ``"channels"``) naming the first row that has another count.
    """
    bad = table[table["n_channels"].to_numpy() != channels]
    if len(bad):
        r = bad.iloc[0]
        raise DataError(f"{r['source_file']}: sample {r['sample_id']} has {int(r['n_channels'])} "
                        f"channel(s) but the {modality} bundle was tokenized with {channels}",
                        reason="channels")

"""Time-series modality: UCR/UEA ``.ts`` files → canonical table → classification + forecasting.

Layout (``source.format: ucr_ts``)::

    root/<Name>_TRAIN.ts
    root/<Name>_TEST.ts

The files are read by :mod:`omnivec2_pipelines.formats.ucr_ts` (no sktime at read time):
univariate and multivariate problems with equal or unequal series lengths and class labels. Not
supported yet (each raises :class:`DataError`): missing values (``?`` or NaN), time stamps
(``@timeStamps true``) and regression targets (``@targetLabel true`` / ``@classLabel false``).
Unknown ``@`` header tags are ignored.

Data lines are checked one by one: a bad line (``?``/NaN, non-numeric value, malformed line,
undeclared label, unequal channel lengths inside the series, a channel count or length that
disagrees with the header/earlier series, a cut-off last line) raises naming ``file:line``
or, with ``source.on_error: skip``, is left out and counted in
``table.attrs["ingestion_errors"]``. Problems of a whole file or of the data set (missing
files, bad header, no series left, TRAIN and TEST with different channel counts) always raise.

Embedded default data: a REAL UCR/UEA data set bundled with sktime (GunPoint;
:mod:`omnivec2_pipelines.sample_data.time_series`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import pos_int
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import require_rows
from omnivec2_pipelines.modalities._shared.series import (
    check_channels,
    read_ucr_table,
    resample,
    series_input_rows,
)
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    TaskSpec,
    check_source,
    classification_task,
    register,
    table_channels,
    table_class_names,
)

_STD_FLOOR = 1e-6
_PREFIX = "time_series.tokenization"


class TimeSeriesModality(Modality):
    """Labelled time series (UCR/UEA ``.ts``) for classification and forecasting."""

    name = "time_series"
    formats = ("ucr_ts",)
    source_keys = ("name",)
    sample_data_keys = ("name",)
    tokenization_keys = ("length", "horizon", "patch_size")
    task_names = ("classification", "forecasting")

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Copy a REAL UCR/UEA data set bundled with sktime into ``root`` (see
        :func:`omnivec2_pipelines.sample_data.time_series.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.time_series import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a ``<Name>_TRAIN.ts``/``<Name>_TEST.ts`` pair into the canonical table.

        Source params: ``name`` (optional when the folder holds exactly one pair),
        ``on_error`` (``raise``/``skip`` per bad data line), ``val_fraction``, ``seed``.
        Payload columns: ``values`` (float64, channel-major ``C*L``), ``n_channels``,
        ``length``, plus ``source_line``; sample ids ``<file stem>/<position among the data lines>``.
        Labels index the class names in numeric order when all are numbers, else in text order.

        Raises:
            DataError: missing/ambiguous files, parse errors (``file:line``; bad data lines
                only when not skipping), no series left in a file, or TRAIN and TEST with
                different channel counts.
        """
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        return policy.attach(read_ucr_table(root, source, policy, self.name))

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Resample to a fixed length, z-normalise per series on its context, split off horizon.

        Args:
            table: Canonical time-series table (see :meth:`read`).
            params: ``length`` L (linear resampling per channel), ``horizon`` H
                (``0 < H < L``) and ``patch_size`` p (``p <= L - H``).

        Returns:
            Per split: ``x`` float32 ``(N, C, L)``, ``x_context`` ``(N, C, L-H)``,
            ``y.forecasting`` ``(N, C, H)`` and ``y.classification`` int64 ``(N,)``.

        Raises:
            DataError: bad params or mixed channel counts.
        """
        length = pos_int(params, "length", _PREFIX)
        horizon = pos_int(params, "horizon", _PREFIX)
        patch = pos_int(params, "patch_size", _PREFIX)
        if not 0 < horizon < length:
            raise DataError(f"time_series.tokenization.horizon={horizon} must satisfy "
                            f"0 < horizon < time_series.tokenization.length={length}")
        ctx = length - horizon
        if patch > ctx:
            raise DataError(f"time_series.tokenization.patch_size={patch} must be <= the "
                            f"context length length - horizon = {ctx}")
        c = table_channels(table, "n_channels", self.name)
        class_names = table_class_names(table)
        arrays: dict[str, np.ndarray] = {}
        splits: dict[str, int] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            x = _normalized_series(part, length, ctx, _STD_FLOOR)  # (N, C, L)
            arrays[f"{split}.x"] = x
            arrays[f"{split}.x_context"] = np.ascontiguousarray(x[:, :, :ctx])
            arrays[f"{split}.y.forecasting"] = np.ascontiguousarray(x[:, :, ctx:])
            arrays[f"{split}.y.classification"] = part["label"].to_numpy(dtype=np.int64)
            splits[split] = int(len(part))
        cls = classification_task(class_names)
        fc = TaskSpec(name="forecasting", kind="regression", input_key="x_context",
                      target_key="y.forecasting", out_dim=c * horizon, out_shape=(c, horizon))
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "time_patch", "in_channels": c, "length": length,
                          "patch_size": patch},
            "pretrain_input_key": "x",
            "tasks": {cls.name: cls.to_dict(), fc.name: fc.to_dict()},
            "splits": splits,
            "horizon": horizon,
            "context_length": ctx,
            "normalization": {"kind": "per_series_channel_zscore_on_context",
                              "std_floor": _STD_FLOOR},
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """A bundle's tokenization (resampling to ``tokenizer.length``, per-series z-score on the first
        ``context_length`` steps) applied to series-table rows: ``{"x": (N, C, L), "x_context": (N, C, L-H)}``
        float32, as :meth:`tokenize` makes them.

        Raises:
            DataError: a meta of another modality, or a row with another channel count (named).
        """
        tok = check_meta_kind(meta, "time_patch", self.name)
        require_rows(table, self.name)
        check_channels(table, int(tok["in_channels"]), self.name)
        ctx = int(meta["context_length"])
        x = _normalized_series(table, int(tok["length"]), ctx, float(meta["normalization"]["std_floor"]))
        return {"x": x, "x_context": np.ascontiguousarray(x[:, :, :ctx])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw series → series-table rows for :meth:`preprocess`: ``.ts`` files (every series of a file,
        parsed as :meth:`read` parses it, its labels ignored; ids ``<file>/<position>``), folders of
        them, or arrays ``(C, T)`` / ``(T,)`` (ids ``"0"``, ``"1"``, ...), see
        :func:`~._shared.series.series_input_rows`.

        Raises:
            DataError: naming an input that is missing, not a ``.ts`` file or not a series.
        """
        return series_input_rows(inputs, self.name)


def _normalized_series(rows: pd.DataFrame, length: int, ctx: int, std_floor: float) -> np.ndarray:
    """Series-table rows resampled to ``length`` and z-scored per series and channel on the first ``ctx``
    steps: float32 ``(N, C, length)``."""
    x = np.stack([resample(r, length) for r in rows.itertuples(index=False)])  # (N, C, L)
    mean = x[:, :, :ctx].mean(axis=2, keepdims=True)  # (N, C, 1)
    std = np.maximum(x[:, :, :ctx].std(axis=2, keepdims=True), std_floor)
    return ((x - mean) / std).astype(np.float32)


register(TimeSeriesModality())

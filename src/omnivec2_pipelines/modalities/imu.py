"""IMU modality: accelerometer + gyroscope recordings in UCR/UEA ``.ts`` → activity classification.

Layout (``source.format: ucr_ts``), as for the time-series modality::

    root/<Name>_TRAIN.ts
    root/<Name>_TEST.ts

Each data line is one recording, ``ax...:ay...:az...:gx...:gy...:gz...:activity`` (any number of
channels, the same for every recording), read by :mod:`omnivec2_pipelines.formats.ucr_ts` with a
fixed channel count: ``source.n_channels`` if given, else the header's ``@dimensions``, else the
first recording's. Data lines are checked one by one: a bad line (wrong channel count, ``?``/NaN,
non-numeric, undeclared label, unequal channel lengths) is an error naming ``file:line`` or, with
``source.on_error: skip``, is left out and counted.

Embedded default data: the REAL BasicMotions data set bundled with sktime (smart-watch 3D
accelerometer + 3D gyroscope, 10 s at 10 Hz, activities Standing/Running/Walking/Badminton;
:mod:`omnivec2_pipelines.sample_data.imu`). Only classification (no forecasting) is offered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import one_of, pos_int
from omnivec2_pipelines.formats.ucr_ts import FixedChannels
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import require_rows
from omnivec2_pipelines.modalities._shared.series import check_channels, read_ucr_table, resample, series_input_rows
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    check_source,
    classification_task,
    register,
    table_channels,
    table_class_names,
)

_STD_FLOOR = 1e-6
_NORMALIZE = ("channel", "series")
_FIT = ("resample", "crop_pad")
_PREFIX = "imu.tokenization"


class ImuModality(Modality):
    """Inertial (accelerometer + gyroscope) recordings for activity classification."""

    name = "imu"
    formats = ("ucr_ts",)
    source_keys = ("name", "n_channels")
    sample_data_keys = ("name",)
    tokenization_keys = ("length", "stride", "patch_size", "fit", "normalize")
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Copy the REAL BasicMotions data set bundled with sktime into ``root`` (see
        :func:`omnivec2_pipelines.sample_data.imu.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.imu import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a ``<Name>_TRAIN.ts``/``<Name>_TEST.ts`` pair into the canonical table.

        Source params: ``name`` (optional with one pair in the folder), ``n_channels``
        (optional expected channel count), ``on_error``, ``val_fraction``, ``seed``. Columns as
        the time-series table: ``values`` (float64, channel-major ``C*L``), ``n_channels``,
        ``length``, ``source_line``; sample ids ``<file stem>/<line>``.

        Raises:
            DataError: missing/ambiguous files, bad lines (``file:line``), TRAIN and TEST with
                different channel counts.
        """
        _, root = check_source(source, self)
        n_channels = source.get("n_channels")
        if n_channels is not None:
            n_channels = pos_int(source, "n_channels", "imu.source")
        policy = ErrorPolicy(source, self.name)
        fixed = FixedChannels(n_channels, "imu.source.n_channels", "accelerometer + gyroscope axes")
        table = read_ucr_table(root, source, policy, self.name, fixed=fixed, ids="line",
                               empty_message="no readable series after @data")
        return policy.attach(table)

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Cut recordings into fixed-length windows, z-normalise, and tokenize with ``time_patch``.

        Args:
            table: Canonical IMU table (see :meth:`read`).
            params:
                ``length`` L: window length in steps; ``patch_size`` p (``p <= L``; tokens per
                window = C * ceil(L / p)).
                ``stride`` S (optional): sliding windows of L steps every S steps over each
                recording, plus one window aligned to the end when the last start misses the
                tail (no step is dropped); every window inherits its recording's activity and
                split (windows of one recording never straddle splits). Without ``stride``
                each recording is one window.
                ``fit``: how a recording shorter than L (or every recording when there is no
                ``stride``) becomes L steps: ``"resample"`` (default; linear interpolation, as
                time_series) or ``"crop_pad"`` (first L steps, zero-padded after
                normalisation, keeping the sampling rate).
                ``normalize``: ``"channel"`` (default) z-scores each channel with the TRAIN
                mean/std over all train windows and real steps, which keeps the movement
                intensity that separates e.g. standing from running; ``"series"`` z-scores
                each channel of each window on its own (removes sensor offset/gain, but also
                the intensity).

        Returns:
            Per split ``x`` float32 ``(N_windows, C, L)`` and ``y.classification`` int64.

        Raises:
            DataError: bad params, no train rows, or mixed channel counts.
        """
        length = pos_int(params, "length", _PREFIX)
        patch = pos_int(params, "patch_size", _PREFIX)
        if patch > length:
            raise DataError(f"imu.tokenization.patch_size={patch} must be <= "
                            f"imu.tokenization.length={length}")
        stride = params.get("stride")
        if stride is not None:
            stride = pos_int(params, "stride", _PREFIX)
        normalize = one_of(params, "normalize", _PREFIX, _NORMALIZE, "channel")
        fit = one_of(params, "fit", _PREFIX, _FIT, "resample")
        if not (table["split"] == "train").any():
            raise DataError("imu table has no 'train' rows; normalisation statistics are computed "
                            "on the train split")
        c = table_channels(table, "n_channels", self.name)
        class_names = table_class_names(table)
        xs: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        recordings: dict[str, int] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            xs[split], masks[split], counts = _table_windows(part, length, stride, fit)
            ys[split] = np.repeat(part["label"].to_numpy(dtype=np.int64), counts)
            recordings[split] = int(len(part))
        meta_norm: dict[str, Any] = {"kind": normalize, "std_floor": _STD_FLOOR}
        if normalize == "channel":
            tr, m = xs["train"], np.broadcast_to(masks["train"], xs["train"].shape)
            mean = np.array([tr[:, k][m[:, k]].mean() for k in range(c)])  # real steps only
            std = np.maximum(np.array([tr[:, k][m[:, k]].std() for k in range(c)]), _STD_FLOOR)
            meta_norm.update(mean=mean.tolist(), std=std.tolist(),
                             formula="(x[c, t] - mean[c]) / std[c], train statistics")
        arrays: dict[str, np.ndarray] = {}
        for split, x in xs.items():
            arrays[f"{split}.x"] = _normalize_windows(x, masks[split], meta_norm)
            arrays[f"{split}.y.classification"] = ys[split]
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "time_patch", "in_channels": c, "length": length, "patch_size": patch},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": {s: int(len(x)) for s, x in xs.items()},
            "recordings": recordings,
            "windows": {"length": length, "stride": stride, "fit": fit},
            "normalization": meta_norm,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """A bundle's windowing (``meta["windows"]``) and normalisation (``meta["normalization"]``: the
        train channel statistics, or per window) applied to recording rows: ``{"x": (N_windows, C, L)}``
        float32, as :meth:`tokenize` makes them. With a ``stride`` one recording gives several windows,
        in order (recording by recording).

        Raises:
            DataError: a meta of another modality, or a recording with another channel count (named).
        """
        tok = check_meta_kind(meta, "time_patch", self.name)
        require_rows(table, self.name)
        check_channels(table, int(tok["in_channels"]), self.name)
        win = meta["windows"]
        stride = None if win["stride"] is None else int(win["stride"])
        x, mask, _ = _table_windows(table, int(win["length"]), stride, str(win["fit"]))
        return {"x": _normalize_windows(x, mask, meta["normalization"])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw recordings → recording rows for :meth:`preprocess`: ``.ts`` files (every recording of a
        file, parsed as :meth:`read` parses it with one channel count per file, labels ignored; ids
        ``<file>/<position>``), folders of them, or arrays ``(C, T)`` (ids ``"0"``, ``"1"``, ...), see
        :func:`~._shared.series.series_input_rows`.

        Raises:
            DataError: naming an input that is missing, not a ``.ts`` file or not a recording.
        """
        fixed = FixedChannels(None, "imu.source.n_channels", "accelerometer + gyroscope axes")
        return series_input_rows(inputs, self.name, fixed)

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Classic activity-recognition features per channel: mean, std, min, max, mean |Δ|.

        Flattened raw windows are phase-dependent (the same gesture shifted by a step looks
        unrelated to a linear model), so the baseline sees per-channel statistics: (N, 5*C).
        """
        x = np.asarray(x, dtype=np.float64)  # (N, C, L)
        diff = np.abs(np.diff(x, axis=2)).mean(axis=2) if x.shape[2] > 1 else np.zeros(x.shape[:2])
        feats = [x.mean(axis=2), x.std(axis=2), x.min(axis=2), x.max(axis=2), diff]  # 5 x (N, C)
        return np.concatenate(feats, axis=1).astype(np.float32)  # (N, 5*C)


def _table_windows(rows: pd.DataFrame, length: int, stride: int | None,
                   fit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of every recording row, in order: ``(W, C, length)`` float64, real-step mask
    ``(W, 1, length)`` and the window count of each row ``(N,)``."""
    wins, masks = zip(*(_windows(r, length, stride, fit) for r in rows.itertuples(index=False)))
    return np.concatenate(wins), np.concatenate(masks), np.array([len(w) for w in wins], dtype=np.int64)


def _normalize_windows(x: np.ndarray, mask: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """Windows ``(W, C, L)`` z-scored as ``norm`` says (``kind`` ``"channel"``: its train ``mean``/``std``;
    ``"series"``: each window and channel on its real steps), padding 0: float32 ``(W, C, L)``."""
    m = np.broadcast_to(mask, x.shape)
    if norm["kind"] == "channel":
        mean, std = np.asarray(norm["mean"], dtype=np.float64), np.asarray(norm["std"], dtype=np.float64)
        x = (x - mean[None, :, None]) / std[None, :, None]
    else:
        cnt = m.sum(axis=2, keepdims=True)
        mu = np.where(m, x, 0.0).sum(axis=2, keepdims=True) / cnt
        sd = np.sqrt(np.where(m, (x - mu) ** 2, 0.0).sum(axis=2, keepdims=True) / cnt)
        x = (x - mu) / np.maximum(sd, float(norm["std_floor"]))
    return np.where(m, x, 0.0).astype(np.float32)  # crop_pad: padding is 0 after normalisation


def _windows(row: Any, length: int, stride: int | None, fit: str) -> tuple[np.ndarray, np.ndarray]:
    """Windows of one recording: ``(W, C, length)`` float64 and real-step mask ``(W, 1, length)``."""
    c, n = int(row.n_channels), int(row.length)
    values = np.asarray(row.values, dtype=np.float64)
    if values.size != c * n or n == 0:
        raise DataError(f"{row.source_file}: sample {row.sample_id} has {values.size} values, "
                        f"expected n_channels*length = {c}*{n} > 0", reason="shape")
    if stride is not None and n >= length:
        x = values.reshape(c, n)  # (C*n,) -> (C, n)
        starts = list(range(0, n - length + 1, stride))
        if starts[-1] != n - length:
            starts.append(n - length)  # cover the tail
        wins = np.stack([x[:, s:s + length] for s in starts])  # (W, C, length)
        return wins, np.ones((len(starts), 1, length), dtype=bool)
    if fit == "resample":
        return resample(row, length)[None], np.ones((1, 1, length), dtype=bool)
    out = np.zeros((1, c, length))
    mask = np.zeros((1, 1, length), dtype=bool)
    k = min(n, length)
    out[0, :, :k] = values.reshape(c, n)[:, :k]
    mask[0, 0, :k] = True
    return out, mask


register(ImuModality())

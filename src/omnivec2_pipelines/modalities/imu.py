"""IMU modality: accelerometer + gyroscope recordings in UCR/UEA ``.ts`` → activity classification.

Layout (``source.format: ucr_ts``), as for the time-series modality::

    root/<Name>_TRAIN.ts
    root/<Name>_TEST.ts

Each data line is one recording, ``ax...:ay...:az...:gx...:gy...:gz...:activity`` (any number of
channels, the same for every recording). The header, channel and value checks are the
time-series modality's (:mod:`~omnivec2_pipelines.modalities.time_series` helpers), but data
lines are checked one by one: a bad line (wrong channel count, ``?``/NaN, non-numeric,
undeclared label, unequal channel lengths) is an error naming ``file:line`` or, with
``source.on_error: skip``, is left out and counted. The expected channel count is
``source.n_channels`` if given, else the header's ``@dimensions``, else the first recording's.

Embedded default data: the REAL BasicMotions data set bundled with sktime (smart-watch 3D
accelerometer + 3D gyroscope, 10 s at 10 Hz, activities Standing/Running/Walking/Badminton).
Only classification (no forecasting) is offered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.modalities.base import (
    classification_task,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    assign_val_split,
    check_source,
    register,
    table_class_names,
)
from omnivec2_pipelines.modalities.time_series import (
    TimeSeriesModality,
    TsFile,
    _check_header,
    _label_order,
    _parse_channel,
    _parse_header,
    _resample,
    _resolve_name,
)

_STD_FLOOR = 1e-6
_NORMALIZE = ("channel", "series")
_FIT = ("resample", "crop_pad")


def _reason(message: str) -> str:
    """Ingestion reason of a time-series helper's error message."""
    if "NaN" in message or "missing value" in message:
        return "nan"
    if "is empty" in message:
        return "empty"
    return "invalid"


def _parse_series(line: str, where: str, ts: TsFile, expected: int | None) -> tuple[np.ndarray, str]:
    """One ``.ts`` data line → ``(series (C, L), label)``; :class:`DataError` names ``where``."""
    parts = line.split(":")
    if len(parts) < 2:
        raise DataError(f"{where}: malformed data line; expected 'values[:values...]:label' with "
                        f"the class label last", reason="invalid")
    if expected is not None and len(parts) - 1 != expected:
        raise DataError(f"{where}: series has {len(parts) - 1} channel(s), expected {expected} "
                        f"(accelerometer + gyroscope axes, as the header/other series)",
                        reason="channels")
    label = parts[-1].strip()
    if label not in ts.class_labels:
        raise DataError(f"{where}: class label {label!r} is not declared in @classLabel "
                        f"{list(ts.class_labels)}", reason="invalid")
    try:
        chans = [_parse_channel(c, where, i) for i, c in enumerate(parts[:-1])]
    except DataError as e:
        raise DataError(str(e), reason=_reason(str(e))) from e
    lengths = [c.size for c in chans]
    if len(set(lengths)) > 1:
        raise DataError(f"{where}: channels of one series have different lengths {lengths}; "
                        f"expected equal lengths", reason="shape")
    if ts.header.get("equallength") and "serieslength" in ts.header and lengths[0] != ts.header["serieslength"]:
        raise DataError(f"{where}: series length {lengths[0]} differs from @seriesLength "
                        f"{ts.header['serieslength']}", reason="shape")
    return np.stack(chans), label  # C x (L,) -> (C, L)


def parse_imu_ts(path: Path, policy: ErrorPolicy, n_channels: int | None = None) -> TsFile:
    """Parse a UCR/UEA classification ``.ts`` file line by line through ``policy``.

    Header problems and an unreadable file always raise; each bad data line raises (naming
    ``file:line``) or is skipped and recorded by ``policy``.

    Args:
        path: The ``.ts`` file.
        policy: Error policy of the read.
        n_channels: Expected channels per series (None: header ``@dimensions``, else the first
            good series).

    Raises:
        DataError: see above; also when no series is left.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})", reason="encoding") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read .ts file ({type(e).__name__}: {e})", reason="corrupt") from e
    ts = TsFile(path=Path(path))
    in_data = False
    expected = n_channels
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line, where = raw.strip(), f"{path}:{lineno}"
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{where}: expected an @tag header line or a #comment before "
                                f"@data, got {line[:40]!r}")
            tokens = line.split()
            if tokens[0].lower() == "@data":
                _check_header(ts, where)
                in_data = True
                if expected is None:
                    expected = ts.header.get("dimensions", 1 if ts.header.get("univariate") else None)
                elif "dimensions" in ts.header and ts.header["dimensions"] != expected:
                    raise DataError(f"{where}: header declares @dimensions {ts.header['dimensions']} "
                                    f"but imu.source.n_channels={expected}", reason="channels")
            else:
                _parse_header(ts, tokens, where)
            continue
        got = policy.call(where, _parse_series, line, where, ts, expected)
        if got is None:
            continue
        x, label = got
        if expected is None:
            expected = x.shape[0]
        ts.series.append(x)
        ts.labels.append(label)
        ts.lines.append(lineno)
    if not in_data:
        raise DataError(f"{path}: no @data line; expected a UCR/UEA .ts file", reason="invalid")
    if not ts.series:
        raise DataError(f"{path}: no readable series after @data", reason="empty")
    return ts


class ImuModality(TimeSeriesModality):
    """Inertial (accelerometer + gyroscope) recordings for activity classification."""

    name = "imu"
    formats = ("ucr_ts",)
    source_keys = ("name", "n_channels")
    sample_data_keys = ("name",)
    tokenization_keys = ("length", "stride", "patch_size", "fit", "normalize")
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Copy the REAL BasicMotions data set bundled with sktime into ``root`` (atomically).

        Args:
            root: Output folder: ``BasicMotions_TRAIN.ts`` and ``BasicMotions_TEST.ts``.
            params: ``name`` of another bundled multivariate data set (default BasicMotions).

        Returns:
            Manifest ``{"source", "name", "files", "series", "classes"}``.
        """
        return super().make_sample_data(root, {"name": "BasicMotions", **params})

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a ``<Name>_TRAIN.ts``/``<Name>_TEST.ts`` pair into the canonical table.

        Source params: ``name`` (optional with one pair in the folder), ``n_channels``
        (optional expected channel count), ``on_error``, ``val_fraction``, ``seed``. Columns as
        the time-series table: ``values`` (float64, channel-major ``C*L``), ``n_channels``,
        ``length``, ``source_line``.

        Raises:
            DataError: missing/ambiguous files, bad lines (``file:line``), TRAIN and TEST with
                different channel counts.
        """
        _, root = check_source(source, self)
        if not root.is_dir():
            raise DataError(f"imu.source.path: {root} is not a directory; expected a folder with "
                            f"<Name>_TRAIN.ts and <Name>_TEST.ts")
        n_channels = source.get("n_channels")
        if n_channels is not None and (isinstance(n_channels, bool) or not isinstance(n_channels, int)
                                       or n_channels <= 0):
            raise DataError(f"imu.source.n_channels must be a positive int, got {n_channels!r}")
        try:
            name = _resolve_name(root, source.get("name"))
        except DataError as e:
            raise DataError(str(e).replace("time_series.source", "imu.source"), reason="missing") from e
        policy = ErrorPolicy(source, self.name)
        parsed = {s: parse_imu_ts(root / f"{name}_{s.upper()}.ts", policy, n_channels)
                  for s in ("train", "test")}
        chans = {s: ts.series[0].shape[0] for s, ts in parsed.items()}
        if chans["train"] != chans["test"]:
            raise DataError(f"{parsed['test'].path}: series have {chans['test']} channel(s) but "
                            f"{parsed['train'].path.name} has {chans['train']}", reason="channels")
        classes = _label_order({lab for ts in parsed.values() for lab in ts.labels})
        label_of = {c: i for i, c in enumerate(classes)}
        rows: list[dict[str, Any]] = []
        for split, ts in parsed.items():
            for x, lab, line in zip(ts.series, ts.labels, ts.lines):
                rows.append({
                    "sample_id": f"{ts.path.stem}/{line:06d}",
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
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
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
        length = _pos_int(params, "length")
        patch = _pos_int(params, "patch_size")
        if patch > length:
            raise DataError(f"tokenization.imu.patch_size={patch} must be <= "
                            f"tokenization.imu.length={length}")
        stride = params.get("stride")
        if stride is not None:
            stride = _pos_int(params, "stride")
        normalize = params.get("normalize", "channel")
        if normalize not in _NORMALIZE:
            raise DataError(f"tokenization.imu.normalize={normalize!r}; expected one of {list(_NORMALIZE)}")
        fit = params.get("fit", "resample")
        if fit not in _FIT:
            raise DataError(f"tokenization.imu.fit={fit!r}; expected one of {list(_FIT)}")
        if not (table["split"] == "train").any():
            raise DataError("imu table has no 'train' rows; normalisation statistics are computed "
                            "on the train split")
        channels = sorted(set(int(c) for c in table["n_channels"]))
        if len(channels) != 1:
            raise DataError(f"imu table mixes channel counts {channels}; expected one", reason="channels")
        c = channels[0]
        class_names = table_class_names(table)
        xs: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        recordings: dict[str, int] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            wins, wmasks, labels = [], [], []
            for r in part.itertuples(index=False):
                x, m = _windows(r, length, stride, fit)  # (W, C, L), (W, 1, L)
                wins.append(x)
                wmasks.append(m)
                labels += [int(r.label)] * len(x)
            xs[split], masks[split] = np.concatenate(wins), np.concatenate(wmasks)
            ys[split] = np.array(labels, dtype=np.int64)
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
            m = np.broadcast_to(masks[split], x.shape)
            if normalize == "channel":
                x = (x - mean[None, :, None]) / std[None, :, None]
            else:
                cnt = m.sum(axis=2, keepdims=True)
                mu = np.where(m, x, 0.0).sum(axis=2, keepdims=True) / cnt
                sd = np.sqrt(np.where(m, (x - mu) ** 2, 0.0).sum(axis=2, keepdims=True) / cnt)
                x = (x - mu) / np.maximum(sd, _STD_FLOOR)
            x = np.where(m, x, 0.0)  # crop_pad: padding is 0 after normalisation
            arrays[f"{split}.x"] = x.astype(np.float32)
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

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Classic activity-recognition features per channel: mean, std, min, max, mean |Δ|.

        Flattened raw windows are phase-dependent (the same gesture shifted by a step looks
        unrelated to a linear model), so the baseline sees per-channel statistics: (N, 5*C).
        """
        x = np.asarray(x, dtype=np.float64)  # (N, C, L)
        diff = np.abs(np.diff(x, axis=2)).mean(axis=2) if x.shape[2] > 1 else np.zeros(x.shape[:2])
        feats = [x.mean(axis=2), x.std(axis=2), x.min(axis=2), x.max(axis=2), diff]  # 5 x (N, C)
        return np.concatenate(feats, axis=1).astype(np.float32)  # (N, 5*C)


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
        return _resample(row, length)[None], np.ones((1, 1, length), dtype=bool)
    out = np.zeros((1, c, length))
    mask = np.zeros((1, 1, length), dtype=bool)
    k = min(n, length)
    out[0, :, :k] = values.reshape(c, n)[:, :k]
    mask[0, 0, :k] = True
    return out, mask


def _pos_int(params: dict[str, Any], key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DataError(f"tokenization.imu.{key} must be a positive int, got {value!r}")
    return int(value)


register(ImuModality())

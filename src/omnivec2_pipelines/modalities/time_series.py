"""Time-series modality: UCR/UEA ``.ts`` files → canonical table → classification + forecasting.

Layout (``source.format: ucr_ts``)::

    root/<Name>_TRAIN.ts
    root/<Name>_TEST.ts

The ``.ts`` reader here is self-contained (no sktime at read time). It supports univariate
and multivariate problems with equal or unequal series lengths and class labels. Not
supported yet (each raises :class:`DataError`): missing values (``?`` or NaN), time stamps
(``@timeStamps true``) and regression targets (``@targetLabel true`` / ``@classLabel false``).
Unknown ``@`` header tags are ignored.

Data lines are checked one by one: a bad line (``?``/NaN, non-numeric value, malformed line,
undeclared label, unequal channel lengths inside the series, a channel count or length that
disagrees with the header/earlier series, a cut-off last line) raises naming ``file:line``
or, with ``source.on_error: skip``, is left out and counted in
``table.attrs["ingestion_errors"]``. Problems of a whole file or of the data set (missing
files, bad header, no series left, TRAIN and TEST with different channel counts) always raise.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
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
    Modality,
    TaskSpec,
    assign_val_split,
    atomic_directory,
    check_source,
    register,
    table_class_names,
)

_STD_FLOOR = 1e-6
_BOOL_TAGS = ("@timestamps", "@missing", "@univariate", "@equallength", "@targetlabel")
_INT_TAGS = ("@dimension", "@dimensions", "@serieslength")


@dataclass
class TsFile:
    """Contents of one parsed ``.ts`` file.

    Attributes:
        path: The file.
        header: Parsed ``@`` tags (lower-case keys without ``@``; bools, ints, strings).
        class_labels: Labels declared by ``@classLabel true ...``.
        series: One float64 array ``(C, L_i)`` per data line.
        labels: Class label of each series.
        lines: 1-based line number of each series in the file.
        indices: 0-based position of each series among all data lines of the file (skipped
            bad lines counted), so sample ids do not shift when a line is skipped.
    """

    path: Path
    header: dict[str, Any] = field(default_factory=dict)
    class_labels: tuple[str, ...] = ()
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)


def _parse_header(ts: TsFile, tokens: list[str], where: str) -> None:
    """Store one ``@tag value...`` header line in ``ts``."""
    tag, args = tokens[0].lower(), tokens[1:]
    if tag in _BOOL_TAGS:
        if len(args) != 1 or args[0].lower() not in ("true", "false"):
            raise DataError(f"{where}: {tokens[0]} expects true/false, got {' '.join(args)!r}")
        ts.header[tag[1:]] = args[0].lower() == "true"
        if tag == "@timestamps" and ts.header["timestamps"]:
            raise DataError(f"{where}: @timeStamps true is not supported yet; expected plain "
                            f"comma-separated values")
        if tag == "@targetlabel" and ts.header["targetlabel"]:
            raise DataError(f"{where}: @targetLabel true (regression .ts) is not supported; "
                            f"expected a classification problem with @classLabel true <labels>")
    elif tag in _INT_TAGS:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) <= 0:
            raise DataError(f"{where}: {tokens[0]} expects a positive int, got {' '.join(args)!r}")
        ts.header["dimensions" if tag.startswith("@dimension") else tag[1:]] = int(args[0])
    elif tag == "@classlabel":
        if not args or args[0].lower() not in ("true", "false"):
            raise DataError(f"{where}: @classLabel expects 'true <labels...>' or 'false'")
        ts.header["classlabel"] = args[0].lower() == "true"
        if ts.header["classlabel"] and not args[1:]:
            raise DataError(f"{where}: @classLabel true lists no labels")
        ts.class_labels = tuple(args[1:])
    elif tag == "@problemname":
        ts.header["problemname"] = " ".join(args)
    # other tags are informational and ignored


def _check_header(ts: TsFile, where: str) -> None:
    """Require class labels before the data section."""
    if not ts.header.get("classlabel"):
        raise DataError(f"{where}: expected '@classLabel true <labels...>' before @data "
                        f"(unlabelled/regression .ts files are not supported)", reason="missing")


def _parse_channel(chunk: str, where: str, channel: int) -> np.ndarray:
    """Parse one comma-separated channel of a data line.

    Raises:
        DataError: empty channel (reason ``"empty"``), ``?``/NaN/inf (``"nan"``) or a
            non-numeric value (``"invalid"``), naming ``where`` (``file:line``).
    """
    tokens = [t.strip() for t in chunk.split(",")]
    if tokens == [""]:
        raise DataError(f"{where}: channel {channel} is empty; expected comma-separated values",
                        reason="empty")
    if "?" in tokens:
        raise DataError(f"{where}: channel {channel} has a missing value '?'; missing values "
                        f"are not supported yet", reason="nan")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise DataError(f"{where}: channel {channel} has non-numeric value {bad!r}; expected "
                        f"'v1,v2,...:v1,v2,...:label'", reason="invalid") from None
    if not np.isfinite(values).all():
        raise DataError(f"{where}: channel {channel} has NaN/inf values; missing values are "
                        f"not supported yet", reason="nan")
    return values


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_ts_line(line: str, where: str, ts: TsFile, n_channels: int | None = None,
                  length: int | None = None) -> tuple[np.ndarray, str]:
    """Parse one ``.ts`` data line ``ch1_v1,...:ch2_v1,...:label`` into ``(series (C, L), label)``.

    Args:
        line: The stripped data line.
        where: ``file:line`` for messages.
        ts: The file parsed so far (header and declared class labels).
        n_channels: Channel count of the earlier good series (None for the first one); the
            header's ``@dimensions``/``@univariate true`` takes precedence.
        length: Length of the earlier good series, checked when ``@equalLength true``.

    Raises:
        DataError: naming ``where``, with reason ``"invalid"`` (malformed line, undeclared
            label, non-numeric value), ``"nan"`` (``?``/NaN/inf), ``"empty"`` (empty channel),
            ``"channels"`` (channel count differs from the header/earlier series) or
            ``"shape"`` (unequal channel lengths, length against ``@equalLength``/``@seriesLength``).
    """
    parts = line.split(":")
    if len(parts) < 2:
        raise DataError(f"{where}: malformed data line; expected "
                        f"'values[:values...]:label' with the class label last", reason="invalid")
    label = parts[-1].strip()
    if label not in ts.class_labels:
        raise DataError(f"{where}: class label {label!r} is not declared in @classLabel "
                        f"{list(ts.class_labels)}", reason="invalid")
    chans = [_parse_channel(c, where, i) for i, c in enumerate(parts[:-1])]
    lengths = sorted({c.size for c in chans})
    if len(lengths) > 1:
        raise DataError(f"{where}: channels of one series have different lengths "
                        f"{[c.size for c in chans]}; expected equal lengths", reason="shape")
    declared = ts.header.get("dimensions", 1 if ts.header.get("univariate") else None)
    if declared is not None and len(chans) != declared:
        raise DataError(f"{where}: series has {len(chans)} channel(s) but the header "
                        f"declares {declared}", reason="channels")
    if n_channels is not None and len(chans) != n_channels:
        raise DataError(f"{where}: series has {len(chans)} channel(s), earlier series have "
                        f"{n_channels}", reason="channels")
    if ts.header.get("equallength") and length is not None and lengths[0] != length:
        raise DataError(f"{where}: series length {lengths[0]} differs from "
                        f"{length} but the header says @equalLength true", reason="shape")
    if ts.header.get("equallength") and "serieslength" in ts.header \
            and lengths[0] != ts.header["serieslength"]:
        raise DataError(f"{where}: series length {lengths[0]} differs from "
                        f"@seriesLength {ts.header['serieslength']}", reason="shape")
    return np.stack(chans), label  # C x (L,) -> (C, L)


def _parse_last_line(line: str, where: str, ts: TsFile, n_channels: int | None,
                     length: int | None) -> tuple[np.ndarray, str]:
    """:func:`parse_ts_line` for a last line without newline: its errors read as truncation."""
    try:
        return parse_ts_line(line, where, ts, n_channels, length)
    except DataError as e:
        raise DataError(f"{e} (last line of the file has no line end: truncated file?)",
                        reason="truncated") from e


def parse_ts(path: Path, policy: ErrorPolicy | None = None) -> TsFile:
    """Parse a UCR/UEA ``.ts`` classification file, data line by data line.

    Each data line is ``ch1_v1,ch1_v2,...:ch2_v1,...:label``. Series may differ in length
    unless ``@equalLength true``; the channels of one series must have equal length.
    Each bad data line goes through ``policy`` (see :func:`parse_ts_line` for the reasons): it
    raises naming ``file:line`` (``on_error: raise``, the default without a policy) or is left
    out and recorded (``on_error: skip``). A last line cut off without a line end has reason
    ``"truncated"``.

    Args:
        path: The ``.ts`` file.
        policy: Error policy of the read (None: raise on the first bad line).

    Raises:
        DataError: unreadable file (``"corrupt"``) or not UTF-8 (``"encoding"``), malformed
            header (``file:line``), no ``@data``, no series after ``@data`` (``"empty"``), every
            series skipped, or a bad data line when not skipping.
    """
    policy = policy if policy is not None else ErrorPolicy({}, "time_series")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); expected a UCR/UEA .ts file",
                        reason="encoding") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read .ts file ({type(e).__name__}: {e})",
                        reason="corrupt") from e
    ts = TsFile(path=Path(path))
    in_data = False
    n_channels: int | None = None
    length: int | None = None
    n_data = 0
    raw_lines = text.splitlines()
    cut = bool(text) and not text.endswith(("\n", "\r"))
    for lineno, raw in enumerate(raw_lines, start=1):
        line = raw.strip()
        where = f"{path}:{lineno}"
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
            else:
                _parse_header(ts, tokens, where)
            continue
        index, n_data = n_data, n_data + 1
        parse = _parse_last_line if cut and lineno == len(raw_lines) else parse_ts_line
        got = policy.call(where, parse, line, where, ts, n_channels, length)
        if got is None:
            continue
        x, label = got
        if n_channels is None:
            n_channels, length = x.shape
        ts.series.append(x)
        ts.labels.append(label)
        ts.lines.append(lineno)
        ts.indices.append(index)
    if not in_data:
        raise DataError(f"{path}: no @data line; expected a UCR/UEA .ts file")
    if not n_data:
        raise DataError(f"{path}: no series after @data", reason="empty")
    if not ts.series:
        raise DataError(f"{path}: all {n_data} series after @data were skipped as bad lines "
                        f"({policy.modality}.source.on_error: skip); nothing left to read",
                        reason="empty")
    return ts


def _label_order(labels: set[str]) -> list[str]:
    """Sort class names numerically when all are numbers (``2`` before ``10``), else as text."""
    if all(_is_float(x) for x in labels):
        return sorted(labels, key=lambda x: (float(x), x))
    return sorted(labels)


def _resolve_name(root: Path, name: str | None) -> str:
    """The problem name whose ``_TRAIN.ts``/``_TEST.ts`` pair is read from ``root``."""
    if name:
        missing = [f"{name}_{s}.ts" for s in ("TRAIN", "TEST") if not (root / f"{name}_{s}.ts").is_file()]
        if missing:
            raise DataError(f"{root}: missing {missing}; expected <Name>_TRAIN.ts and "
                            f"<Name>_TEST.ts for time_series.source.name={name!r}", reason="missing")
        return name
    trains = {p.name[: -len("_TRAIN.ts")] for p in root.glob("*_TRAIN.ts")}
    tests = {p.name[: -len("_TEST.ts")] for p in root.glob("*_TEST.ts")}
    pairs = sorted(trains & tests)
    if len(pairs) != 1:
        raise DataError(f"{root}: found {len(pairs)} <Name>_TRAIN.ts/<Name>_TEST.ts pairs "
                        f"{pairs} (TRAIN files {sorted(trains)}, TEST files {sorted(tests)}); "
                        f"expected exactly one, or set time_series.source.name", reason="missing")
    return pairs[0]


def _bundled_ts_dir(name: str) -> Path:
    """Folder of the UCR/UEA data set ``name`` bundled with the installed sktime."""
    spec = importlib.util.find_spec("sktime")  # locate without importing (slow import)
    if spec is None or spec.origin is None:
        raise DataError("sktime is not installed; it provides the bundled sample .ts data")
    base = Path(spec.origin).parent / "datasets" / "data"
    folder = base / name
    if not (folder / f"{name}_TRAIN.ts").is_file() or not (folder / f"{name}_TEST.ts").is_file():
        have = sorted(p.parent.name for p in base.glob("*/*_TRAIN.ts"))
        raise DataError(f"sktime has no bundled .ts data set {name!r} under {base}; "
                        f"available: {have}")
    return folder


class TimeSeriesModality(Modality):
    """Labelled time series (UCR/UEA ``.ts``) for classification and forecasting."""

    name = "time_series"
    formats = ("ucr_ts",)
    source_keys = ("name",)
    sample_data_keys = ("name",)
    tokenization_keys = ("length", "horizon", "patch_size")
    task_names = ("classification", "forecasting")

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Copy a REAL UCR/UEA data set bundled with sktime into ``root`` (atomically).

        Args:
            root: Output folder, receives ``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts``.
            params: ``name`` of the bundled data set (default ``"GunPoint"``).

        Returns:
            Manifest ``{"source", "name", "files", "series", "classes"}``.
        """
        name = str(params.get("name", "GunPoint"))
        src = _bundled_ts_dir(name)
        with atomic_directory(Path(root)) as tmp:
            for split in ("TRAIN", "TEST"):
                fname = f"{name}_{split}.ts"
                (tmp / fname).write_bytes((src / fname).read_bytes())
            parsed = [parse_ts(tmp / f"{name}_{s}.ts") for s in ("TRAIN", "TEST")]
        labels = _label_order({lab for ts in parsed for lab in ts.labels})
        return {"source": f"UCR/UEA {name} bundled with sktime (real)", "name": name,
                "files": 2, "series": sum(len(ts.series) for ts in parsed), "classes": labels}

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a ``<Name>_TRAIN.ts``/``<Name>_TEST.ts`` pair into the canonical table.

        Source params: ``name`` (optional when the folder holds exactly one pair),
        ``on_error`` (``raise``/``skip`` per bad data line), ``val_fraction``, ``seed``.
        Payload columns: ``values`` (float64, channel-major ``C*L``), ``n_channels``,
        ``length``, plus ``source_line``. Labels index the class names in numeric order
        when all are numbers, else in text order.

        Raises:
            DataError: missing/ambiguous files, parse errors (``file:line``; bad data lines
                only when not skipping), no series left in a file, or TRAIN and TEST with
                different channel counts.
        """
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        if not root.is_dir():
            raise DataError(f"time_series.source.path: {root} is not a directory; expected a "
                            f"folder with <Name>_TRAIN.ts and <Name>_TEST.ts")
        name = _resolve_name(root, source.get("name"))
        parsed = {s: parse_ts(root / f"{name}_{s.upper()}.ts", policy) for s in ("train", "test")}
        chans = {s: ts.series[0].shape[0] for s, ts in parsed.items()}
        if chans["train"] != chans["test"]:
            raise DataError(f"{parsed['test'].path}: series have {chans['test']} channel(s) "
                            f"but {parsed['train'].path.name} has {chans['train']}",
                            reason="channels")
        classes = _label_order({lab for ts in parsed.values() for lab in ts.labels})
        label_of = {c: i for i, c in enumerate(classes)}
        rows: list[dict[str, Any]] = []
        for split, ts in parsed.items():
            for i, x, lab, line in zip(ts.indices, ts.series, ts.labels, ts.lines):
                rows.append({
                    "sample_id": f"{ts.path.stem}/{i:05d}",  # position among data lines
                    "source_file": ts.path.name,
                    "label": label_of[lab],
                    "label_name": lab,
                    "split": split,
                    "values": x.reshape(-1),  # (C, L) -> (C*L,) channel-major
                    "n_channels": int(x.shape[0]),
                    "length": int(x.shape[1]),
                    "source_line": line,
                })
        table = pd.DataFrame(rows)
        table = table.astype({"label": "int64", "n_channels": "int64", "length": "int64",
                              "source_line": "int64"})
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

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
        length = _pos_int(params, "length")
        horizon = _pos_int(params, "horizon")
        patch = _pos_int(params, "patch_size")
        if not 0 < horizon < length:
            raise DataError(f"tokenization.time_series.horizon={horizon} must satisfy "
                            f"0 < horizon < tokenization.time_series.length={length}")
        ctx = length - horizon
        if patch > ctx:
            raise DataError(f"tokenization.time_series.patch_size={patch} must be <= the "
                            f"context length length - horizon = {ctx}")
        channels = sorted(set(int(c) for c in table["n_channels"]))
        if len(channels) != 1:
            raise DataError(f"time_series table mixes channel counts {channels}; expected one",
                            reason="channels")
        c = channels[0]
        class_names = table_class_names(table)
        arrays: dict[str, np.ndarray] = {}
        splits: dict[str, int] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            x = np.stack([_resample(r, length) for r in part.itertuples(index=False)])  # (N, C, L)
            mean = x[:, :, :ctx].mean(axis=2, keepdims=True)  # (N, C, 1)
            std = np.maximum(x[:, :, :ctx].std(axis=2, keepdims=True), _STD_FLOOR)
            x = ((x - mean) / std).astype(np.float32)
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


def _pos_int(params: dict[str, Any], key: str) -> int:
    """Read a positive int from the time-series tokenization params."""
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DataError(f"tokenization.time_series.{key} must be a positive int, got {value!r}")
    return int(value)


def _resample(row: Any, length: int) -> np.ndarray:
    """One table row to a float64 ``(C, length)`` array by linear interpolation per channel."""
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


register(TimeSeriesModality())

"""UCR/UEA ``.ts`` files (the sktime/aeon time-series format), parsed data line by data line.

A file is ``#`` comment lines, ``@tag value`` header lines, ``@data``, then one series per line,
``ch1_v1,ch1_v2,...:ch2_v1,...:target``: univariate or multivariate, equal or unequal lengths
(the channels of one series have one length). The target is a class label declared by
``@classLabel true <labels...>`` (``problem="classification"``) or a number with
``@targetLabel true`` (``problem="regression"``). No sktime is needed to read one. Not supported
(each a :class:`~.base.DataError`): missing values (``?`` or NaN) and time stamps
(``@timeStamps true``). Unknown ``@`` header tags are ignored.

A data set is a pair ``<Name>_TRAIN.ts`` / ``<Name>_TEST.ts`` in one folder (:func:`resolve_pair`,
:func:`parse_pair`).

A bad data line (``?``/NaN, non-numeric value, malformed line, undeclared label, unequal channel
lengths inside the series, a channel count or length that disagrees with the header/earlier
series, a cut-off last line) raises naming ``file:line`` or, through an :class:`~.base.ErrorPolicy`
with ``on_error: skip``, is left out and recorded. Problems of a whole file (unreadable, bad
header, no series left) always raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnivec2_pipelines.checks import is_number
from omnivec2_pipelines.formats.base import DataError, ErrorPolicy

#: ``problem`` values: what the last field of a data line is (``unlabelled``: there is none, all fields are
#: channels, ``@classLabel false`` without ``@targetLabel true``).
PROBLEMS: tuple[str, ...] = ("classification", "regression", "unlabelled")
#: ``problem`` of :func:`parse_ts` that takes the problem from the header (raw inputs of unknown kind).
INFER_PROBLEM = "infer"
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
        labels: Target of each series as written: its class label, or its regression value.
        lines: 1-based line number of each series in the file.
        indices: 0-based position of each series among all data lines of the file (skipped
            bad lines counted), so sample ids do not shift when a line is skipped.
        texts: With ``keep_text``: the value tokens of each series as written (channel-major),
            to copy them without rounding.
    """

    path: Path
    header: dict[str, Any] = field(default_factory=dict)
    class_labels: tuple[str, ...] = ()
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class FixedChannels:
    """Channel rule of a reader whose series all have one known channel layout (e.g. IMU axes).

    The count is ``n`` when a parameter sets it, else the header's (``@dimensions``,
    ``@univariate true``), else the first good series'. A data line with another count is refused
    before its target and values are read (so a cut-off line reads as a channel-count error),
    as ``series has N channel(s), expected M (<what>, as the header/other series)``.

    Attributes:
        n: The count set by a parameter, or None.
        param: That parameter (e.g. ``"imu.source.n_channels"``), for messages.
        what: What the channels are (e.g. ``"accelerometer + gyroscope axes"``), for messages.
    """

    n: int | None = None
    param: str = ""
    what: str = "channels"


def _parse_header(ts: TsFile, tokens: list[str], where: str, problem: str) -> None:
    """Store one ``@tag value...`` header line in ``ts``."""
    tag, args = tokens[0].lower(), tokens[1:]
    if tag in _BOOL_TAGS:
        if len(args) != 1 or args[0].lower() not in ("true", "false"):
            raise DataError(f"{where}: {tokens[0]} expects true/false, got {' '.join(args)!r}")
        ts.header[tag[1:]] = args[0].lower() == "true"
        if tag == "@timestamps" and ts.header["timestamps"]:
            raise DataError(f"{where}: @timeStamps true is not supported yet; expected plain "
                            f"comma-separated values")
        if tag == "@targetlabel" and ts.header["targetlabel"] and problem == "classification":
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


def header_problem(header: dict[str, Any]) -> str:
    """The problem a parsed header declares: ``classification`` (``@classLabel true``), ``regression``
    (``@targetLabel true``) or ``unlabelled``."""
    if header.get("classlabel"):
        return "classification"
    return "regression" if header.get("targetlabel") else "unlabelled"


def _check_header(ts: TsFile, where: str, problem: str) -> None:
    """Require the targets of ``problem`` to be declared before the data section (none when unlabelled)."""
    if problem == "unlabelled":
        if header_problem(ts.header) != "unlabelled":
            raise DataError(f"{where}: the header declares {header_problem(ts.header)} targets; expected "
                            f"an unlabelled .ts file (@classLabel false)", reason="invalid")
        return
    if problem == "regression":
        if not ts.header.get("targetlabel"):
            raise DataError(f"{where}: expected '@targetLabel true' before @data (a regression .ts "
                            f"file)", reason="invalid")
    elif not ts.header.get("classlabel"):
        raise DataError(f"{where}: expected '@classLabel true <labels...>' before @data "
                        f"(unlabelled/regression .ts files are not supported)", reason="missing")


def declared_channels(header: dict[str, Any]) -> int | None:
    """Channel count the header declares (``@dimensions``, or 1 for ``@univariate true``), or None."""
    return header.get("dimensions", 1 if header.get("univariate") else None)


def _parse_channel(chunk: str, where: str, channel: int) -> tuple[np.ndarray, list[str]]:
    """Parse one comma-separated channel of a data line: its values and their tokens.

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
        bad = next(t for t in tokens if not is_number(t))
        raise DataError(f"{where}: channel {channel} has non-numeric value {bad!r}; expected "
                        f"'v1,v2,...:v1,v2,...:label'", reason="invalid") from None
    if not np.isfinite(values).all():
        raise DataError(f"{where}: channel {channel} has NaN/inf values; missing values are "
                        f"not supported yet", reason="nan")
    return values, tokens


def _check_target(target: str, where: str, ts: TsFile, problem: str) -> None:
    """A declared class label, or a finite number for a regression file."""
    if problem == "unlabelled":
        return
    if problem == "classification":
        if target not in ts.class_labels:
            raise DataError(f"{where}: class label {target!r} is not declared in @classLabel "
                            f"{list(ts.class_labels)}", reason="invalid")
        return
    if not is_number(target):
        raise DataError(f"{where}: target {target!r} is not a number; expected "
                        f"'v1,v2,...:target' with @targetLabel true", reason="invalid")
    if not np.isfinite(float(target)):
        raise DataError(f"{where}: target {target!r} is NaN/inf", reason="nan")


def parse_ts_line(line: str, where: str, ts: TsFile, n_channels: int | None = None,
                  length: int | None = None, problem: str = "classification",
                  fixed: FixedChannels | None = None) -> tuple[np.ndarray, str, list[str]]:
    """Parse one ``.ts`` data line ``ch1_v1,...:ch2_v1,...:target`` into ``(series (C, L), target, tokens)``.

    Args:
        line: The stripped data line.
        where: ``file:line`` for messages.
        ts: The file parsed so far (header and declared class labels).
        n_channels: Channel count of the earlier good series (None for the first one), or the
            count ``fixed`` expects; the header's ``@dimensions``/``@univariate true`` takes precedence.
        length: Length of the earlier good series, checked when ``@equalLength true``.
        problem: ``"classification"``, ``"regression"`` (what the target is) or ``"unlabelled"`` (no target:
            every field is a channel).
        fixed: The channel rule of a fixed-layout reader (see :class:`FixedChannels`), or None.

    Raises:
        DataError: naming ``where``, with reason ``"invalid"`` (malformed line, undeclared
            label or non-numeric target, non-numeric value), ``"nan"`` (``?``/NaN/inf), ``"empty"``
            (empty channel), ``"channels"`` (channel count differs from the header/earlier series)
            or ``"shape"`` (unequal channel lengths, length against ``@equalLength``/``@seriesLength``).
    """
    parts = line.split(":")
    labelled = problem != "unlabelled"
    if labelled and len(parts) < 2:
        last = "class label" if problem == "classification" else "target"
        raise DataError(f"{where}: malformed data line; expected "
                        f"'values[:values...]:label' with the {last} last", reason="invalid")
    if fixed is not None and n_channels is not None and len(parts) - labelled != n_channels:
        raise DataError(f"{where}: series has {len(parts) - labelled} channel(s), expected {n_channels} "
                        f"({fixed.what}, as the header/other series)", reason="channels")
    target = parts[-1].strip() if labelled else ""
    _check_target(target, where, ts, problem)
    parsed = [_parse_channel(c, where, i) for i, c in enumerate(parts[:-1] if labelled else parts)]
    chans = [values for values, _ in parsed]
    lengths = sorted({c.size for c in chans})
    if len(lengths) > 1:
        raise DataError(f"{where}: channels of one series have different lengths "
                        f"{[c.size for c in chans]}; expected equal lengths", reason="shape")
    declared = declared_channels(ts.header)
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
    return np.stack(chans), target, [t for _, tokens in parsed for t in tokens]  # C x (L,) -> (C, L)


def _parse_last_line(line: str, where: str, *args: Any) -> tuple[np.ndarray, str, list[str]]:
    """:func:`parse_ts_line` for a last line without newline: its errors read as truncation."""
    try:
        return parse_ts_line(line, where, *args)
    except DataError as e:
        raise DataError(f"{e} (last line of the file has no line end: truncated file?)",
                        reason="truncated") from e


def parse_ts(path: Path, policy: ErrorPolicy | None = None, *, problem: str = "classification",
             fixed: FixedChannels | None = None, keep_text: bool = False,
             empty_message: str | None = None) -> TsFile:
    """Parse a UCR/UEA ``.ts`` file, data line by data line.

    Each data line is ``ch1_v1,ch1_v2,...:ch2_v1,...:target``. Series may differ in length
    unless ``@equalLength true``; the channels of one series must have equal length.
    Each bad data line goes through ``policy`` (see :func:`parse_ts_line` for the reasons): it
    raises naming ``file:line`` (``on_error: raise``, the default without a policy) or is left
    out and recorded (``on_error: skip``). A last line cut off without a line end has reason
    ``"truncated"``.

    Args:
        path: The ``.ts`` file.
        policy: Error policy of the read (None: raise on the first bad line).
        problem: ``"classification"`` (``@classLabel true <labels>``; ``@targetLabel true`` is
            refused), ``"regression"`` (``@targetLabel true``: the targets are numbers), ``"unlabelled"``
            (``@classLabel false``: no target field; targets are read as ``""``) or ``"infer"`` (the one
            :func:`header_problem` finds in the header, for raw inputs).
        fixed: Channel rule of a fixed-layout reader (see :class:`FixedChannels`); with ``fixed.n``
            a header declaring another count raises.
        keep_text: Keep the value tokens of every series as written (:attr:`TsFile.texts`).
        empty_message: The message, after ``<path>: ``, when the file yields no series (none after
            ``@data``, or every one skipped); None: the messages below.

    Raises:
        DataError: unreadable file (``"corrupt"``) or not UTF-8 (``"encoding"``), malformed
            header (``file:line``), no ``@data``, no series after ``@data`` (``"empty"``), every
            series skipped, or a bad data line when not skipping.
    """
    if problem not in PROBLEMS + (INFER_PROBLEM,):
        raise ValueError(f"problem={problem!r}; expected one of {list(PROBLEMS) + [INFER_PROBLEM]}")
    policy = policy if policy is not None else ErrorPolicy({}, "ucr_ts")
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
    n_channels: int | None = fixed.n if fixed is not None else None
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
                problem = header_problem(ts.header) if problem == INFER_PROBLEM else problem
                _check_header(ts, where, problem)
                in_data = True
                declared = declared_channels(ts.header)
                if fixed is not None and n_channels is None:
                    n_channels = declared
                elif fixed is not None and declared is not None and declared != n_channels:
                    raise DataError(f"{where}: header declares @dimensions {declared} but "
                                    f"{fixed.param}={n_channels}", reason="channels")
            else:
                _parse_header(ts, tokens, where, problem)
            continue
        index, n_data = n_data, n_data + 1
        parse = _parse_last_line if cut and lineno == len(raw_lines) else parse_ts_line
        got = policy.call(where, parse, line, where, ts, n_channels, length, problem, fixed)
        if got is None:
            continue
        x, target, tokens = got
        if n_channels is None:
            n_channels = x.shape[0]
        if length is None:
            length = x.shape[1]
        ts.series.append(x)
        ts.labels.append(target)
        ts.lines.append(lineno)
        ts.indices.append(index)
        if keep_text:
            ts.texts.append(tokens)
    if not in_data:
        raise DataError(f"{path}: no @data line; expected a UCR/UEA .ts file")
    if not ts.series and empty_message is not None:
        raise DataError(f"{path}: {empty_message}", reason="empty")
    if not n_data:
        raise DataError(f"{path}: no series after @data", reason="empty")
    if not ts.series:
        raise DataError(f"{path}: all {n_data} series after @data were skipped as bad lines "
                        f"({policy.modality}.source.on_error: skip); nothing left to read",
                        reason="empty")
    return ts


def resolve_pair(root: Path, name: str | None, modality: str) -> str:
    """The problem name whose ``_TRAIN.ts``/``_TEST.ts`` pair is read from ``root``.

    ``name`` when given (both files must exist), else the one pair in ``root``; errors name
    ``<modality>.source.name``.
    """
    if name:
        missing = [f"{name}_{s}.ts" for s in ("TRAIN", "TEST") if not (root / f"{name}_{s}.ts").is_file()]
        if missing:
            raise DataError(f"{root}: missing {missing}; expected <Name>_TRAIN.ts and "
                            f"<Name>_TEST.ts for {modality}.source.name={name!r}", reason="missing")
        return name
    trains = {p.name[: -len("_TRAIN.ts")] for p in root.glob("*_TRAIN.ts")}
    tests = {p.name[: -len("_TEST.ts")] for p in root.glob("*_TEST.ts")}
    pairs = sorted(trains & tests)
    if len(pairs) != 1:
        raise DataError(f"{root}: found {len(pairs)} <Name>_TRAIN.ts/<Name>_TEST.ts pairs "
                        f"{pairs} (TRAIN files {sorted(trains)}, TEST files {sorted(tests)}); "
                        f"expected exactly one, or set {modality}.source.name", reason="missing")
    return pairs[0]


def parse_pair(root: Path, name: str, policy: ErrorPolicy | None = None, **options: Any) -> dict[str, TsFile]:
    """``{"train": TsFile, "test": TsFile}`` of ``root/<name>_TRAIN.ts`` and ``_TEST.ts``.

    Args:
        options: Keyword arguments of :func:`parse_ts`.

    Raises:
        DataError: as :func:`parse_ts`, or TRAIN and TEST with different channel counts.
    """
    parsed = {s: parse_ts(root / f"{name}_{s.upper()}.ts", policy, **options) for s in ("train", "test")}
    chans = {s: ts.series[0].shape[0] for s, ts in parsed.items()}
    if chans["train"] != chans["test"]:
        raise DataError(f"{parsed['test'].path}: series have {chans['test']} channel(s) "
                        f"but {parsed['train'].path.name} has {chans['train']}",
                        reason="channels")
    return parsed

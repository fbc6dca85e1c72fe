"""Table files: CSV or Parquet, one file or one file per split (``train``/``val``/``test``).

``source.path`` names one table file, or a folder holding exactly one table file or the per-split
files ``<split>.csv`` / ``<split>.parquet`` (:func:`find_table_files`). :func:`read_frame` loads one
file, :func:`value_text` turns a cell into text.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.formats.base import SPLITS, DataError

#: File name endings read for each table format (lower case).
TABLE_EXTENSIONS: dict[str, tuple[str, ...]] = {"csv": (".csv",), "parquet": (".parquet", ".pq")}


def find_table_files(root: Path, fmt: str, modality: str) -> list[tuple[str | None, Path]]:
    """The table files of a source: ``[(split or None, file)]``.

    ``root`` is either one file of format ``fmt``, or a folder that holds per-split files
    (``train``/``test`` required, ``val`` optional, named ``<split><ext>``) or exactly one
    table file. Hidden files are ignored.

    Raises:
        DataError: wrong file extension, empty folder, several files without split names,
            or split files missing train/test.
    """
    exts = TABLE_EXTENSIONS[fmt]
    if root.is_file():
        if not root.name.lower().endswith(exts):
            raise DataError(f"{modality}.source.path: {root} is not a {fmt!r} file; expected a "
                            f"name ending in {list(exts)}")
        return [(None, root)]
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and p.name.lower().endswith(exts)]
    if not files:
        raise DataError(f"{root}: folder has no {fmt!r} table file (found "
                        f"{[p.name for p in entries][:10]}); expected one file with a name ending "
                        f"in {list(exts)}, or train/test files")
    stem = {p: p.name[: len(p.name) - next(len(e) for e in exts if p.name.lower().endswith(e))]
            for p in files}
    by_split = [p for p in files if stem[p].lower() in SPLITS]
    if by_split:
        other = [p.name for p in files if p not in by_split]
        if other:
            raise DataError(f"{root}: files {other} are not named after a split; a folder holds "
                            f"either one table file or per-split files train/val/test{exts[0]}")
        splits = {stem[p].lower(): p for p in by_split}
        missing = [s for s in ("train", "test") if s not in splits]
        if missing:
            raise DataError(f"{root}: missing split file(s) {[s + exts[0] for s in missing]}; "
                            f"expected train{exts[0]} and test{exts[0]} (val optional)")
        if len(splits) != len(by_split):
            raise DataError(f"{root}: several files for one split {[p.name for p in by_split]}")
        return [(s, splits[s]) for s in SPLITS if s in splits]
    if len(files) > 1:
        raise DataError(f"{root}: found {len(files)} table files {[p.name for p in files][:10]}; "
                        f"expected exactly one, or per-split files train/test{exts[0]}, or point "
                        f"{modality}.source.path at one file")
    return [(None, files[0])]


def read_frame(path: Path, fmt: str, as_text: bool) -> pd.DataFrame:
    """Load one table file.

    Args:
        path: The file.
        fmt: ``"csv"`` or ``"parquet"``.
        as_text: CSV only: read every cell as a Python string (empty cells give ``""``), keeping
            undecodable bytes as surrogate escapes so the row can be reported; otherwise let
            pandas infer column types (empty cells give NaN) and treat bad UTF-8 as a file error.

    Raises:
        DataError: empty file, no rows, undecodable (``as_text=False``) or corrupt file.
    """
    try:
        if fmt == "csv":
            if path.stat().st_size == 0:
                raise DataError(f"{path}: file is empty; expected a header line and rows",
                                reason="empty")
            if as_text:
                frame = pd.read_csv(path, dtype=object, keep_default_na=False, encoding="utf-8",
                                    encoding_errors="surrogateescape")
            else:
                frame = pd.read_csv(path, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except DataError:
        raise
    except UnicodeDecodeError as e:
        data = path.read_bytes()
        off = data.find(e.object[e.start:e.start + 4]) if isinstance(e.object, bytes) else -1
        line = data[:off].count(b"\n") + 1 if off >= 0 else "?"
        raise DataError(f"{path}: line {line}: bytes are not valid UTF-8 ({e.reason}); expected a "
                        f"UTF-8 encoded {fmt} file", reason="encoding") from e
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: file has no columns; expected a header line and rows",
                        reason="empty") from e
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: unreadable or corrupt {fmt} file ({type(e).__name__}: "
                        f"{str(e)[:200]})", reason="corrupt") from e
    if len(frame) == 0:
        raise DataError(f"{path}: table has a header but no rows", reason="empty")
    frame.columns = [str(c) for c in frame.columns]
    dup = [c for c, n in Counter(frame.columns).items() if n > 1]
    if dup:
        raise DataError(f"{path}: duplicate column names {dup}", reason="invalid")
    return frame


def value_text(v: Any) -> str | None:
    """A cell as text: None for missing/NaN, integral floats without ``.0``, bytes decoded.

    Raises:
        UnicodeDecodeError: for bytes that are not UTF-8.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8")
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.bool_, bool)):
        return str(bool(v))
    return str(v)

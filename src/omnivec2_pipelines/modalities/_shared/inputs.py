"""Raw, unlabelled inputs of :meth:`~omnivec2_pipelines.modalities.base.Modality.read_inputs` as items.

:func:`input_items` turns what a caller passes (a file path, a folder, a list of them, in-memory objects)
into ``(id, path or object)`` pairs: files as :class:`~pathlib.Path` with their name as id (relative to
the folder for the files of a folder), objects as they are with their position as id (``"0"``,
``"1"``, ...). :func:`input_rows` builds the rows of such items with ``id``/``sample_id``/``source_file``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from omnivec2_pipelines.formats.base import DataError

#: ``(id, path or object)``: one raw input.
InputItem = tuple[str, Any]


def _expected(extensions: Sequence[str], objects: str) -> str:
    return (f"expected a file with extension {list(extensions)}, a folder of them, a list of those, "
            f"or {objects}")


def _folder_files(folder: Path, extensions: Sequence[str], modality: str) -> list[tuple[str, Path]]:
    """Every file under ``folder`` (recursively, hidden entries ignored), id relative to it, sorted by parts.

    Raises:
        DataError: a file with another extension (nothing is dropped silently), or no file at all.
    """
    exts = tuple(e.lower() for e in extensions)
    files: list[tuple[str, Path]] = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).parts):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.is_dir():
            continue
        if not path.name.lower().endswith(exts):
            raise DataError(f"{path}: not a file with extension {list(extensions)} (a {modality} input "
                            f"folder holds only those)", reason="invalid")
        files.append((rel.as_posix(), path))
    if not files:
        raise DataError(f"{folder}: folder holds no file with extension {list(extensions)} "
                        f"({modality} input)", reason="empty")
    return files


def _path_items(value: str | os.PathLike, extensions: Sequence[str], modality: str,
                objects: str) -> list[tuple[str, Path]]:
    path = Path(value)
    if path.is_dir():
        return _folder_files(path, extensions, modality)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder ({modality} input; "
                        f"{_expected(extensions, objects)})", reason="missing")
    if not path.name.lower().endswith(tuple(e.lower() for e in extensions)):
        raise DataError(f"{path}: not a file with extension {list(extensions)} ({modality} input)",
                        reason="invalid")
    return [(path.name, path)]


def input_items(inputs: Any, extensions: Sequence[str], modality: str, is_object: Callable[[Any], bool],
                objects: str) -> list[InputItem]:
    """``(id, path or object)`` pairs of raw inputs.

    ``inputs`` is one input or a list/tuple of them; an input is an in-memory object (``is_object``
    decides, checked first, so a modality whose objects are strings reads ``str`` as objects and
    :class:`~pathlib.Path` as files), a file path (``str`` or path-like) with one of ``extensions``, or a
    folder (every file under it, recursively, sorted; ids relative to it).

    Args:
        inputs: What the caller passed to ``read_inputs``.
        extensions: File extensions of the modality's reader (``".png"``, ...).
        modality: Modality name, for messages.
        is_object: Whether a value is an in-memory input of the modality.
        objects: What an in-memory input may be, for messages.

    Raises:
        DataError: an empty list, a missing path (``no such file``), a file (also in a folder) with
            another extension, an empty folder, or a value that is neither (``input <i>: got <type>``).
    """
    many = isinstance(inputs, (list, tuple)) and not is_object(inputs)
    values = list(inputs) if many else [inputs]
    if not values:
        raise DataError(f"{modality} inputs: got an empty list; {_expected(extensions, objects)}",
                        reason="empty")
    items: list[InputItem] = []
    for i, value in enumerate(values):
        if is_object(value):
            items.append((str(i), value))
        elif isinstance(value, (str, os.PathLike)):
            items += _path_items(value, extensions, modality, objects)
        else:
            where = f"input {i}" if many else "input"
            raise DataError(f"{modality} {where}: got {type(value).__name__}; "
                            f"{_expected(extensions, objects)}", reason="invalid")
    return items


def input_rows(items: list[InputItem], decode: Callable[[str, Any], dict[str, Any]]) -> pd.DataFrame:
    """One row per item: ``id``, ``sample_id`` (= ``id``), ``source_file`` (the path, or ``input <id>``) and
    the payload columns ``decode(where, path or object)`` returns (``where`` as ``source_file``)."""
    rows = []
    for item_id, item in items:
        where = str(item) if isinstance(item, Path) else f"input {item_id}"
        rows.append({"id": item_id, "sample_id": item_id, "source_file": where, **decode(where, item)})
    return pd.DataFrame(rows)


def require_rows(table: pd.DataFrame, modality: str) -> None:
    """Refuse an empty table given to ``preprocess`` (nothing to encode).

    Raises:
        DataError: (reason ``"empty"``) naming the modality.
    """
    if not len(table):
        raise DataError(f"{modality}: preprocess got no rows; expected at least one canonical-table row "
                        f"(see read_inputs)", reason="empty")

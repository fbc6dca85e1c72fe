"""A table saved chunk by chunk as a directory of Parquet part files, replaced atomically.

The ingestion node is a Kedro generator node: it yields the canonical table in row chunks so
memory stays bounded. Each chunk carries its position in ``df.attrs["chunk"]``
(``{"index": i, "last": bool}``, set by :func:`mark_chunks`); :class:`TableChunksDataset` writes
chunk 0 to a new temporary sibling directory, appends the following ones and swaps the directory
into place when the last chunk arrives. A DataFrame without that attribute is a whole table.

Kedro's ``MemoryDataset`` keeps only the last chunk of a generator node; :func:`check_whole_table`
turns that into a clear error where a table is used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview

from omnivec2_pipelines.utils import normal_permissions

#: ``DataFrame.attrs`` key holding a chunk's position ``{"index": int, "last": bool}``.
CHUNK_ATTR = "chunk"
#: Part file names, in order: ``part-00000.parquet``, ``part-00001.parquet``, ...
PART_PATTERN = "part-{:05d}.parquet"
#: Approximate Arrow bytes per Parquet row group. The writer needs several times a row group's size
#: (repetition/definition levels, encoded pages) for list columns such as image pixels, so row
#: groups are kept small to bound the memory of saving a chunk.
ROW_GROUP_BYTES = 4 * 2**20


def chunk_position(table: pd.DataFrame) -> tuple[int, bool]:
    """``(index, last)`` of a table chunk; ``(0, True)`` for a DataFrame without ``attrs["chunk"]``.

    Raises:
        DatasetError: when ``attrs["chunk"]`` is not ``{"index": int >= 0, "last": bool}``.
    """
    pos = table.attrs.get(CHUNK_ATTR)
    if pos is None:
        return 0, True
    index = pos.get("index") if isinstance(pos, dict) else None
    last = pos.get("last") if isinstance(pos, dict) else None
    if isinstance(index, bool) or not isinstance(index, int) or index < 0 or not isinstance(last, bool):
        raise DatasetError(f"table attrs[{CHUNK_ATTR!r}] must be {{'index': int >= 0, 'last': bool}}, got {pos!r}")
    return index, last


def mark_chunks(chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Yield ``chunks`` with ``attrs["chunk"]`` set, looking one chunk ahead to know the last one.

    The last chunk is yielded only once ``chunks`` is exhausted, so an error raised by the
    producer after its last chunk still comes before a consumer commits the table. The attribute
    is set on the producer's DataFrames; one chunk is held ahead of the one yielded.

    Raises:
        ValueError: when ``chunks`` is empty.
    """
    it = iter(chunks)
    current = next(it, None)
    if current is None:
        raise ValueError("no table chunks to save; a reader must produce at least one")
    index = 0
    while current is not None:
        following = next(it, None)
        current.attrs[CHUNK_ATTR] = {"index": index, "last": following is None}
        yield current
        current, index = following, index + 1


def check_whole_table(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return ``table`` when it is a whole table, not one chunk of several kept by a memory dataset.

    Raises:
        ValueError: naming ``name`` when ``table`` is chunk ``i > 0`` of a chunked table.
    """
    index, last = chunk_position(table)
    if index > 0 or not last:
        raise ValueError(f"{name} holds only chunk {index} of a table saved in several chunks: an in-memory "
                         f"dataset keeps just the last one. Save it with omnivec2_pipelines.io.TableChunksDataset, "
                         f"or raise <modality>.source.batch_files above the number of files so it is one chunk")
    return table


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.chunks-"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(target: Path) -> None:
    """Remove temporary siblings of ``target`` left by a process that died mid-table (e.g. killed)."""
    prefix = _tmp_prefix(target)
    for p in target.parent.iterdir():
        if p.name.startswith(prefix) and p.name.endswith(".tmp"):
            pid = p.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                _remove(p)


def write_parquet(table: pd.DataFrame, path: Path, row_group_bytes: int = ROW_GROUP_BYTES) -> None:
    """Write ``table`` (without its index) as one Parquet file of row groups of about ``row_group_bytes``.

    Each row group is converted to Arrow and encoded on its own, so memory stays a small multiple of
    ``row_group_bytes`` whatever the table's size. ``pd.read_parquet`` reads it back as ``to_parquet``'s.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = table.copy(deep=False)  # shares the data
    table.attrs = {}  # not stored (pyarrow would write JSON-able attrs into the schema)
    schema = pa.Schema.from_pandas(table, preserve_index=False)
    sample = pa.Table.from_pandas(table.iloc[:16], schema=schema, preserve_index=False)
    rows = max(1, int(row_group_bytes * len(sample) / max(sample.nbytes, 1)))
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(table), rows):
            writer.write_table(pa.Table.from_pandas(table.iloc[start:start + rows], schema=schema,
                                                    preserve_index=False))


def _replace(tmp: Path, target: Path) -> None:
    """Swap the finished directory ``tmp`` into ``target`` (a previous directory or file is removed).

    The table gets the permissions of a normal write (umask), like every atomic write of the project.
    """
    normal_permissions(tmp)
    if not (target.exists() or target.is_symlink()):
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    _remove(old)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old, target)
        raise
    _remove(old)


class TableChunksDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A table as a directory of Parquet part files, saved in chunks and replaced atomically.

    Saving a DataFrame with ``attrs["chunk"] = {"index": i, "last": bool}``: chunk 0 starts a new
    temporary sibling directory, each chunk is written as ``part-<i>.parquet`` and the last one
    swaps the directory into place. A crash (or an error of the producer) before the last chunk
    leaves the previous complete table, or none, never a partial one; the temporary directory
    is removed when this dataset is garbage collected or the interpreter exits, and by the next
    save of the table if the process was killed. A DataFrame without ``attrs["chunk"]`` is a whole
    table (chunk 0 and last). Attributes and the row index are not stored.

    Loading returns the concatenated parts in order with a ``0..N-1`` row index; a single
    Parquet file at ``filepath`` (the former format) is read as the table. :meth:`iter_chunks`
    yields the parts one at a time instead. pandas and pyarrow also read the directory directly
    (``pd.read_parquet(filepath)``).

    Example catalog entry::

        "{modality}.table":
          type: omnivec2_pipelines.io.TableChunksDataset
          filepath: data/03_primary/tables/{modality}.parquet

    Args:
        filepath: The table's directory.
        metadata: Free-form metadata (kedro-viz and plugins).
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata
        self._pending: Path | None = None
        self._next = 0
        self._cleanup: weakref.finalize | None = None

    @property
    def _target(self) -> Path:
        return Path(self._filepath)

    def _parts(self) -> list[Path]:
        """Part files of the saved table, in order."""
        target = self._target
        if not target.is_dir():
            raise DatasetError(f"table {target} does not exist; run the ingestion pipeline first")
        parts = sorted(target.glob("part-*.parquet"), key=lambda p: (len(p.name), p.name))  # part-100000 last
        if not parts:
            raise DatasetError(f"table {target} has no part-*.parquet files; expected a directory written by "
                               f"TableChunksDataset (run the ingestion pipeline again)")
        return parts

    def iter_chunks(self) -> Iterator[pd.DataFrame]:
        """Yield the saved table part by part (bounded memory), row index continuing across parts."""
        if self._target.is_file():
            yield pd.read_parquet(self._target)
            return
        start = 0
        for part in self._parts():
            chunk = pd.read_parquet(part)
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk

    def _load(self) -> pd.DataFrame:
        if self._target.is_file():
            return pd.read_parquet(self._target)
        frames = [pd.read_parquet(p) for p in self._parts()]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def _save(self, data: pd.DataFrame) -> None:
        if not isinstance(data, pd.DataFrame):
            raise DatasetError(f"{self._filepath}: expected a pandas DataFrame (a table chunk), "
                               f"got {type(data).__name__}")
        index, last = chunk_position(data)
        if index == 0:
            self._start()
        elif self._pending is None or index != self._next:
            expected = self._next if self._pending is not None else 0
            self._drop_pending()
            raise DatasetError(f"{self._filepath}: got table chunk {index} but expected chunk {expected}; "
                               f"chunks must be saved in order from 0 (the previous table is kept)")
        assert self._pending is not None
        try:
            write_parquet(data, self._pending / PART_PATTERN.format(index))
            self._next = index + 1
            if last:
                _replace(self._pending, self._target)
                self._drop_pending()
        except BaseException:
            self._drop_pending()
            raise

    def _start(self) -> None:
        """Begin a new table in a fresh temporary sibling directory (dropping an unfinished one)."""
        self._drop_pending()
        target = self._target
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_tmp_prefix(target)}{os.getpid()}-", suffix=".tmp",
                                    dir=target.parent))  # private (0700); the table inside gets the umask
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)
        self._pending, self._next = tmp / target.name, 0
        self._pending.mkdir()

    def _drop_pending(self) -> None:
        """Remove the temporary directory: empty after a commit, an unfinished table otherwise."""
        if self._cleanup is not None:
            self._cleanup()
        self._pending, self._cleanup, self._next = None, None, 0

    def _exists(self) -> bool:
        target = self._target
        return target.is_file() or (target.is_dir() and any(target.glob("part-*.parquet")))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first ``nrows`` rows of the first part as ``DataFrame.to_dict(orient="split")`` (kedro-viz)."""
        return next(self.iter_chunks()).head(nrows).to_dict(orient="split")

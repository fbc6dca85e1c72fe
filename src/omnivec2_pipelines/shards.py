"""Sharded, memory-mapped storage of :class:`~omnivec2_pipelines.modalities.base.ArrayBundle` s.

A bundle is a directory::

    <name>/
      index.json                  # format version, the bundle meta, and per array: dtype, shape,
                                  # its shard files and the SHA-256 of its bytes
      part-000-00000.safetensors  # rows [0, r) of every array of group 0 (e.g. train.x, train.y.*)
      part-000-00001.safetensors  # rows [r, 2r) ...
      part-001-00000.safetensors  # group 1 (e.g. test.*) ...

Arrays of one split with the same number of rows form a group and are cut at the same rows, so
a shard holds whole samples. Shards are safetensors files, whose tensors lie uncompressed at
known offsets: :class:`ShardedArray` memory-maps them and reads only the rows asked for, so a
data set larger than memory can be trained on (the OS page cache decides what stays in RAM).

Pure numpy/safetensors: the training code reads shards without Kedro.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "omnivec2-shards"
VERSION = 1
INDEX = "index.json"

#: safetensors dtype names → numpy
_DTYPES = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
           "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64, "F16": np.float16,
           "F32": np.float32, "F64": np.float64}


@dataclass(frozen=True)
class _Part:
    """One tensor inside one shard file."""

    file: str
    offset: int  # byte offset of the tensor data in the file
    rows: int


class ShardedArray:
    """A read-only array stored row-wise in several safetensors shards, memory-mapped on demand.

    Supports ``len``, ``shape``, ``dtype``, ``ndim``, integer / slice / index-array row
    selection (``a[i]``, ``a[3:10]``, ``a[[5, 1, 9]]``) and ``np.asarray(a)`` (reads everything).
    Pickling keeps only the file locations, so worker processes reopen the shards themselves.

    Args:
        root: Bundle directory.
        name: Array name (for messages).
        dtype: Element type.
        shape: Full shape; the first axis is the row axis split over the shards.
        parts: Where each shard's rows lie.
        digest: SHA-256 of the array's bytes (computed when written).
    """

    def __init__(self, root: Path, name: str, dtype: np.dtype, shape: tuple[int, ...], parts: list[_Part],
                 digest: str) -> None:
        self.root, self.name, self.dtype, self.shape = Path(root), name, np.dtype(dtype), tuple(shape)
        self.parts, self.digest = parts, digest
        self.starts = np.cumsum([0] + [p.rows for p in parts])
        self._maps: list[np.ndarray | None] = [None] * len(parts)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": [None] * len(self.parts)}

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"ShardedArray({self.name!r}, shape={self.shape}, dtype={self.dtype}, shards={len(self.parts)})"

    def _map(self, i: int) -> np.ndarray:
        m = self._maps[i]
        if m is None:
            p = self.parts[i]
            shape = (p.rows, *self.shape[1:])
            path = self.root / p.file
            if int(np.prod(shape, dtype=np.int64)) == 0:
                m = np.empty(shape, self.dtype)
            else:
                m = np.memmap(path, dtype=self.dtype, mode="r", offset=p.offset, shape=shape)
            self._maps[i] = m
        return m

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed) as a new in-memory array."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"{self.name}: row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self._map(int(s))[idx[sel] - self.starts[s]]
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            return self[rows][(slice(None), *rest) if not isinstance(rows, (int, np.integer)) else rest]
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == np.bool_:
            key = np.flatnonzero(key)
        return self.take(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def iter_chunks(self) -> Iterator[np.ndarray]:
        """The rows shard by shard (bounded memory)."""
        for i in range(len(self.parts)):
            yield np.asarray(self._map(i))


def is_lazy(a: Any) -> bool:
    """True for arrays read from disk on demand (rows must be fetched with ``take``)."""
    return isinstance(a, ShardedArray)


def _groups(arrays: dict[str, Any]) -> list[list[str]]:
    """Array names grouped by split prefix and row count (0-d arrays each alone)."""
    groups: dict[tuple[str, int], list[str]] = {}
    for name in sorted(arrays):
        a = arrays[name]
        rows = len(a) if np.ndim(a) else -1
        key = (name.split(".", 1)[0], rows) if rows >= 0 else (name, -1)
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _row_bytes(arrays: dict[str, Any], names: list[str]) -> int:
    return sum(int(np.prod(arrays[n].shape[1:], dtype=np.int64)) * np.dtype(arrays[n].dtype).itemsize
               for n in names)


def _header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file and the offset of its data block."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header["__data_start__"] = 8 + size
    return header


def save_bundle(arrays: dict[str, Any], meta: dict[str, Any], root: str | Path, shard_mb: float = 64.0) -> None:
    """Write arrays (numpy or :class:`ShardedArray`) and meta as a sharded bundle directory, atomically.

    Rows are copied shard by shard, so re-sharding a lazily read bundle stays within memory.

    Args:
        arrays: ``{"<split>.<key>": array}``; the first axis is the sample axis.
        meta: JSON-able bundle metadata.
        root: Target directory (replaced as a whole; a crash leaves the previous one).
        shard_mb: Target shard size in MiB (at least one row per shard).
    """
    from safetensors.numpy import save_file

    from omnivec2_pipelines.utils import atomic_path

    if shard_mb <= 0:
        raise ValueError(f"shard_mb must be > 0, got {shard_mb!r}")
    index: dict[str, Any] = {"format": FORMAT, "version": VERSION, "meta": meta, "arrays": {}}
    with atomic_path(Path(root)) as tmp:
        tmp.mkdir()
        for g, names in enumerate(_groups(arrays)):
            a0 = arrays[names[0]]
            if np.ndim(a0) == 0:
                rows, per = 0, 1
            else:
                rows = len(a0)
                per = max(1, int(shard_mb * 2**20) // max(1, _row_bytes(arrays, names)))
            digests = {n: hashlib.sha256() for n in names}
            parts: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
            for s, start in enumerate(range(0, max(rows, 1), per)):
                file = f"part-{g:03d}-{s:05d}.safetensors"
                block = {n: np.ascontiguousarray(arrays[n][start:start + per]) if rows else np.array(arrays[n])
                         for n in names}  # (np.ascontiguousarray would turn a 0-d array into 1-d)
                save_file(block, str(tmp / file))
                header = _header(tmp / file)
                for n in names:
                    digests[n].update(block[n].tobytes())
                    begin = header[n]["data_offsets"][0] + header["__data_start__"]
                    parts[n].append({"file": file, "offset": begin, "rows": int(len(block[n])) if rows else 0})
            for n in names:
                index["arrays"][n] = {"dtype": np.dtype(arrays[n].dtype).str, "shape": list(np.shape(arrays[n])),
                                      "parts": parts[n], "sha256": digests[n].hexdigest()}
        (tmp / INDEX).write_text(json.dumps(index))


def load_bundle(root: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arrays, meta)`` of a sharded bundle: 0-d arrays in memory, the others as :class:`ShardedArray`.

    Raises:
        ValueError: naming the directory when it is not a bundle of a known version.
    """
    root = Path(root)
    index_path = root / INDEX
    if not index_path.is_file():
        raise ValueError(f"{root}: not a sharded bundle (no {INDEX}); expected a directory written by "
                         f"save_bundle / the tokenization pipeline")
    index = json.loads(index_path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{index_path}: format {index.get('format')!r} version {index.get('version')!r}; "
                         f"expected {FORMAT!r} version {VERSION}")
    from safetensors.numpy import load_file

    arrays: dict[str, Any] = {}
    for name, spec in index["arrays"].items():
        parts = [_Part(p["file"], int(p["offset"]), int(p["rows"])) for p in spec["parts"]]
        for p in parts:
            if not (root / p.file).is_file():
                raise ValueError(f"{root}: shard {p.file} of array {name!r} is missing")
        if not spec["shape"]:  # a 0-d array: tiny, kept in memory
            arrays[name] = load_file(str(root / parts[0].file))[name]
        else:
            arrays[name] = ShardedArray(root, name, np.dtype(spec["dtype"]), tuple(spec["shape"]), parts,
                                        spec["sha256"])
    return arrays, index["meta"]

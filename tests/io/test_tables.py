"""TableChunksDataset: a table saved chunk by chunk as Parquet part files, replaced atomically."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError

from omnivec2_pipelines.io import TableChunksDataset
from omnivec2_pipelines.io import tables
from omnivec2_pipelines.io.tables import chunk_position, check_whole_table, mark_chunks, write_parquet


def _table(n: int, start: int = 0, tag: str = "a") -> pd.DataFrame:
    """A canonical-looking table with a list-of-uint8 payload column, rows ``start .. start + n - 1``."""
    rows = range(start, start + n)
    return pd.DataFrame({"sample_id": [f"{tag}{i}" for i in rows], "label": np.arange(start, start + n, dtype=np.int64) % 3,
                         "split": ["train" if i % 4 else "test" for i in rows],
                         "pixels": [np.full(i % 5 + 1, i, dtype=np.uint8) for i in rows]},
                        index=pd.RangeIndex(start, start + n))


def _chunks(sizes: list[int], tag: str = "a") -> list[pd.DataFrame]:
    starts = np.cumsum([0, *sizes])
    return list(mark_chunks(_table(n, int(s), tag) for n, s in zip(sizes, starts)))


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p != path)


def _assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns="pixels"), b.drop(columns="pixels"))
    for x, y in zip(a["pixels"], b["pixels"]):
        np.testing.assert_array_equal(np.asarray(x), y)


def test_mark_chunks_and_positions() -> None:
    chunks = _chunks([3, 3, 1])
    assert [c.attrs["chunk"] for c in chunks] == [{"index": 0, "last": False}, {"index": 1, "last": False},
                                                 {"index": 2, "last": True}]
    assert chunk_position(_table(2)) == (0, True)  # a plain DataFrame is one whole table
    with pytest.raises(ValueError, match="no table chunks"):
        list(mark_chunks([]))
    assert check_whole_table(_chunks([2])[0], "x.table") is not None
    with pytest.raises(ValueError, match=r"x\.table holds only chunk 2 of a table saved in several chunks"):
        check_whole_table(chunks[-1], "x.table")


def test_round_trip_of_several_chunks(tmp_path: Path) -> None:
    ds = TableChunksDataset(str(tmp_path / "t.parquet"))
    assert not ds.exists()
    chunks = _chunks([4, 4, 2])
    for c in chunks:
        ds.save(c)
    target = tmp_path / "t.parquet"
    assert sorted(p.name for p in target.iterdir()) == ["part-00000.parquet", "part-00001.parquet",
                                                        "part-00002.parquet"]
    assert _siblings(target) == []  # no temporary directory left
    (tmp_path / "plain").mkdir()
    assert target.stat().st_mode == (tmp_path / "plain").stat().st_mode  # usual permissions, not mkdtemp's 0700
    whole = _table(10)
    loaded = ds.load()
    assert isinstance(loaded.index, pd.RangeIndex) and loaded.attrs == {}
    _assert_frames_equal(loaded, whole)
    _assert_frames_equal(pd.concat(list(ds.iter_chunks())), whole)
    assert [len(c) for c in ds.iter_chunks()] == [4, 4, 2]
    _assert_frames_equal(pd.read_parquet(target).reset_index(drop=True), whole)  # pandas reads the directory
    assert ds.preview(3)["data"][2][0] == "a2" and ds.exists()


def test_plain_dataframe_replaces_a_chunked_table(tmp_path: Path) -> None:
    ds = TableChunksDataset(str(tmp_path / "t.parquet"))
    for c in _chunks([3, 3]):
        ds.save(c)
    plain = _table(2, tag="b")
    plain.attrs["ingestion_errors"] = {"skipped": np.int64(0)}  # attrs are not stored (not even JSON-able ones)
    ds.save(plain)
    assert [p.name for p in (tmp_path / "t.parquet").iterdir()] == ["part-00000.parquet"]
    _assert_frames_equal(ds.load(), _table(2, tag="b"))
    assert plain.attrs["ingestion_errors"] == {"skipped": 0}  # the caller's frame is untouched


def test_crash_in_the_middle_keeps_the_previous_table(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    TableChunksDataset(str(path)).save(_table(5))
    ds = TableChunksDataset(str(path))
    first, second, _ = _chunks([2, 2, 2], tag="new")
    ds.save(first)
    ds.save(second)  # no last chunk: the producer failed
    _assert_frames_equal(TableChunksDataset(str(path)).load(), _table(5))
    assert [p.name for p in path.iterdir()] == ["part-00000.parquet"]
    assert len(_siblings(path)) == 1  # the unfinished table, in a hidden temporary sibling
    del ds
    gc.collect()
    assert _siblings(path) == []  # removed with its dataset
    # a new table starting over at chunk 0 replaces the unfinished one
    ds = TableChunksDataset(str(path))
    ds.save(first)
    for c in _chunks([1, 1]):
        ds.save(c)
    assert len(ds.load()) == 2 and _siblings(path) == []


def test_killed_writer_leaves_previous_table_and_next_save_cleans_up(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    TableChunksDataset(str(path)).save(_table(5))
    code = (f"import os, pandas as pd\nfrom omnivec2_pipelines.io import TableChunksDataset\n"
            f"df = pd.DataFrame({{'x': [1, 2]}}); df.attrs['chunk'] = {{'index': 0, 'last': False}}\n"
            f"ds = TableChunksDataset({str(path)!r})\nds.save(df)\nos._exit(0)\n")  # killed: no cleanup
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(_siblings(path)) == 1
    _assert_frames_equal(TableChunksDataset(str(path)).load(), _table(5))
    TableChunksDataset(str(path)).save(_table(3))
    assert _siblings(path) == [] and len(TableChunksDataset(str(path)).load()) == 3


def test_single_parquet_file_of_the_former_format_loads_and_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    _table(4).to_parquet(path)
    ds = TableChunksDataset(str(path))
    assert ds.exists()
    _assert_frames_equal(ds.load(), _table(4))
    for c in _chunks([2, 1]):
        ds.save(c)
    assert path.is_dir() and len(ds.load()) == 3 and _siblings(path) == []


def test_bad_input_gives_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    ds = TableChunksDataset(str(path))
    with pytest.raises(DatasetError, match=r"t\.parquet does not exist; run the ingestion pipeline"):
        ds.load()
    with pytest.raises(DatasetError, match="expected a pandas DataFrame"):
        ds.save({"x": [1]})
    bad = _table(2)
    bad.attrs["chunk"] = {"index": -1, "last": True}
    with pytest.raises(DatasetError, match=r"attrs\['chunk'\] must be"):
        ds.save(bad)
    first, second, third = _chunks([1, 1, 1])
    with pytest.raises(DatasetError, match="got table chunk 1 but expected chunk 0"):
        ds.save(second)
    ds.save(first)
    with pytest.raises(DatasetError, match="got table chunk 2 but expected chunk 1"):
        ds.save(third)
    assert not path.exists() and _siblings(path) == []  # the out-of-order table was dropped
    path.mkdir()
    with pytest.raises(DatasetError, match="has no part-\\*.parquet files"):
        ds.load()
    assert not ds.exists()


def test_write_error_drops_the_unfinished_table(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.parquet"
    TableChunksDataset(str(path)).save(_table(5))
    ds = TableChunksDataset(str(path))
    first, second = _chunks([2, 2])
    ds.save(first)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tables, "write_parquet", disk_full)
    with pytest.raises(DatasetError, match="No space left"):
        ds.save(second)
    assert _siblings(path) == [] and len(TableChunksDataset(str(path)).load()) == 5
    assert os.listdir(path) == ["part-00000.parquet"]


def test_write_parquet_bounds_row_groups_and_reads_back_like_to_parquet(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    table = _table(50)
    table.attrs["ingestion_errors"] = {"skipped": 0}
    write_parquet(table, tmp_path / "small.parquet", row_group_bytes=200)
    assert pq.ParquetFile(tmp_path / "small.parquet").metadata.num_row_groups > 5
    table.to_parquet(tmp_path / "ref.parquet", index=False)
    back, ref = pd.read_parquet(tmp_path / "small.parquet"), pd.read_parquet(tmp_path / "ref.parquet")
    assert back.attrs == {} and back.dtypes.to_dict() == ref.dtypes.to_dict()
    _assert_frames_equal(back, ref)
    write_parquet(table.iloc[:0], tmp_path / "empty.parquet")
    assert list(pd.read_parquet(tmp_path / "empty.parquet").columns) == list(table.columns)

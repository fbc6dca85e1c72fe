"""The ingestion generator node through Kedro: a table saved in chunks, the full report saved last."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from omnivec2_pipelines.io import AtomicDataset, TableChunksDataset
from omnivec2_pipelines.modalities import get_modality
from omnivec2_pipelines.modalities.base import DataError
from omnivec2_pipelines.pipeline_registry import build_pipelines
from omnivec2_pipelines.pipelines.data import nodes


def _image_tree(root: Path) -> Path:
    """13 train and 4 test grayscale images of three classes, plus one corrupt train image."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", (5, 4, 4)), ("test", (2, 1, 1))):
        for cls, n in zip(("ant", "bee", "cow"), per_class):
            for i in range(n):
                path = root / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (6, 5), dtype=np.uint8)).save(path)
    (root / "train" / "bee" / "bad.png").write_bytes(b"not a png")
    return root


def _catalog(tmp_path: Path, source: dict, table) -> DataCatalog:
    report = AtomicDataset({"type": "json.JSONDataset"}, str(tmp_path / "report.json"))
    return DataCatalog({"params:image.source": MemoryDataset(source, copy_mode="assign"),
                        "image.table": table, "image.ingestion_report": report})


def test_ingestion_in_chunks_saves_every_row_and_the_full_report(tmp_path: Path) -> None:
    source = {"format": "imagefolder", "path": str(_image_tree(tmp_path / "img")), "on_error": "skip",
              "val_fraction": 0.25, "seed": 0, "batch_files": 4}
    table_ds = TableChunksDataset(str(tmp_path / "tables" / "image.parquet"))
    catalog = _catalog(tmp_path, source, table_ds)
    SequentialRunner().run(build_pipelines(["image"])["ingestion"], catalog)

    expected = get_modality("image").read(source)  # the whole table in one go
    table = table_ds.load()
    assert len(table) == 17 and len(list(table_ds.iter_chunks())) == 5  # ceil(17 / 4) part files
    pd.testing.assert_frame_equal(table.drop(columns="pixels"), expected.drop(columns="pixels"))
    assert all(np.array_equal(a, b) for a, b in zip(table["pixels"], expected["pixels"]))
    report = catalog.load("image.ingestion_report")
    assert report["rows"] == 17
    assert report["per_split"] == expected["split"].value_counts().sort_index().to_dict()
    assert report["per_class"] == {"ant": 7, "bee": 5, "cow": 5}
    assert report["errors"]["skipped"] == 1 and report["errors"]["by_reason"] == {"corrupt": 1}
    assert report["source"]["batch_files"] == "4"


def test_failing_ingestion_keeps_the_previous_table(tmp_path: Path) -> None:
    root = _image_tree(tmp_path / "img")
    source = {"format": "imagefolder", "path": str(root), "on_error": "skip", "batch_files": 4}
    table_ds = TableChunksDataset(str(tmp_path / "tables" / "image.parquet"))
    SequentialRunner().run(build_pipelines(["image"])["ingestion"], _catalog(tmp_path, source, table_ds))
    before = table_ds.load()
    for p in (root / "train" / "cow").iterdir():  # cow left only in test: refused after every chunk is read
        p.write_bytes(b"broken")
    with pytest.raises(DataError, match=r"classes \['cow'\] occur in the test split but not in train"):
        SequentialRunner().run(build_pipelines(["image"])["ingestion"], _catalog(tmp_path, source, table_ds))
    pd.testing.assert_frame_equal(table_ds.load().drop(columns="pixels"), before.drop(columns="pixels"))
    assert [p.name for p in (tmp_path / "tables").iterdir() if not p.name.startswith(".")] == ["image.parquet"]


def test_memory_catalog_with_several_chunks_fails_clearly_at_tokenization(tmp_path: Path) -> None:
    source = {"format": "imagefolder", "path": str(_image_tree(tmp_path / "img")), "on_error": "skip",
              "batch_files": 4}
    ingest = nodes.ingest_node("image")
    outputs = [tuple(out) for out in ingest(source)]  # each yielded list is emptied once the next is asked for
    assert [t.attrs["chunk"] for t, _ in outputs][-1] == {"index": 4, "last": True}
    assert [r["rows"] for _, r in outputs] == [4, 8, 12, 16, 17]  # the report is cumulative
    last_chunk = outputs[-1][0]  # what a MemoryDataset keeps
    with pytest.raises(ValueError, match=r"image\.table holds only chunk 4 of a table saved in several chunks"):
        nodes.tokenize_node("image")(last_chunk, {"size": [8, 8], "patch_size": [4, 4]})
    (whole, report), = [tuple(out) for out in ingest({**source, "batch_files": 2048})]  # one chunk: fine
    assert whole.attrs["chunk"] == {"index": 0, "last": True} and report["rows"] == len(whole) == 17
    nodes.tokenize_node("image")(whole, {"size": [8, 8], "patch_size": [4, 4]})


class _WatchedTable(TableChunksDataset):
    """Records, at each save, how many earlier chunks are still alive somewhere in the process."""

    def __init__(self, filepath: str) -> None:
        super().__init__(filepath)
        self.saved: list[weakref.ref] = []
        self.alive: list[int] = []

    def _save(self, data: pd.DataFrame) -> None:
        super()._save(data)
        gc.collect()
        self.alive.append(sum(r() is not None for r in self.saved))
        self.saved.append(weakref.ref(data))


def test_kedro_keeps_only_a_few_chunks_alive(tmp_path: Path) -> None:
    """Kedro's itertools.tee would keep every yielded chunk; the node empties each one once it is saved."""
    source = {"format": "imagefolder", "path": str(_image_tree(tmp_path / "img")), "on_error": "skip",
              "batch_files": 2}
    table_ds = _WatchedTable(str(tmp_path / "tables" / "image.parquet"))
    SequentialRunner().run(build_pipelines(["image"])["ingestion"], _catalog(tmp_path, source, table_ds))
    assert len(table_ds.saved) == 9 and len(table_ds.load()) == 17
    assert max(table_ds.alive) <= 1, table_ds.alive  # the previous chunk at most, never all of them
    with pytest.raises(DatasetError, match="Saving 'None'"):  # a late reader gets an emptied item: loud
        catalog = _catalog(tmp_path, source, MemoryDataset())
        outputs = nodes.ingest_node("image")(source)
        first = next(outputs)
        next(outputs)
        catalog.save("image.table", first[0])

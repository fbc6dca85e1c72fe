"""Batch sources: in memory and streamed from shards give the same batches; ranks split them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnivec2_pipelines.io import ArrayBundleDataset
from omnivec2_pipelines.shards import ShardedArray, load_bundle, save_bundle
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.data import BatchSource
from tests.conftest import grid_bundle, series_bundle


def _lazy(tmp_path, x: np.ndarray, y: np.ndarray) -> tuple[ShardedArray, ShardedArray]:
    save_bundle({"train.x": x, "train.y": y}, {}, tmp_path / "b", shard_mb=x[0].nbytes * 7 / 2**20)
    arrays, _ = load_bundle(tmp_path / "b")
    return arrays["train.x"], arrays["train.y"]


def test_streamed_batches_equal_in_memory_batches_and_ranks_split_them(tmp_path) -> None:
    x = np.arange(60 * 3, dtype=np.float32).reshape(60, 3)
    y = np.arange(60)
    lx, ly = _lazy(tmp_path, x, y)
    mem, lazy = BatchSource(x, y, seed=3), BatchSource(lx, ly, seed=3)
    ranks = [BatchSource(lx, ly, seed=3) for _ in range(2)]
    for _ in range(40):  # several epochs
        xm, ym = mem.draw(8)
        xl, yl = lazy.draw(8)
        assert torch.equal(xm, xl) and torch.equal(ym, yl) and torch.equal(xm[:, 0] / 3, ym.float())
        halves = [r.draw(8, shard=(i, 2)) for i, r in enumerate(ranks)]
        assert torch.equal(torch.cat([h[0] for h in halves]), xm)
    assert lazy.wait_s > 0
    with pytest.raises(ValueError, match="a global batch of 7 rows cannot be split evenly over 2 ranks"):
        ranks[0].draw(7, shard=(0, 2))


def test_resume_state_of_a_streamed_source_ignores_the_prefetched_batch(tmp_path) -> None:
    x, y = np.arange(30, dtype=np.float32)[:, None], np.arange(30)
    a = BatchSource(*_lazy(tmp_path, x, y), seed=1)
    a.draw(4)  # the next batch is being read ahead now
    state = a.state_dict()
    expected = a.draw(4)[0]
    b = BatchSource(x, y, seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.draw(4)[0], expected)


def test_a_stage_trains_from_shards_without_reading_them_all(tmp_path, tiny_model_params, monkeypatch) -> None:
    bundles = {"grid": grid_bundle("grid", n=400), "series": series_bundle("series", n=400)}
    streamed = {}
    for m, b in bundles.items():
        ds = ArrayBundleDataset(str(tmp_path / m), shard_mb=0.01)
        ds.save(b)
        streamed[m] = ds.load()
    x = streamed["grid"].get("train", "x")
    assert isinstance(x, ShardedArray) and len(x.parts) > 10
    rows_read = []
    take = ShardedArray.take
    monkeypatch.setattr(ShardedArray, "take", lambda self, idx: rows_read.append(len(idx)) or take(self, idx))
    params = {"steps": 6, "batch_size": 8, "mask_ratio": 0.5}
    trainer = {"device": "cpu", "progress": False, "warmup_steps": 1}
    from_disk, _ = stages.pretrain_unimodal(streamed, tiny_model_params, params, trainer)
    # 3 steps per modality + one batch read ahead, out of 400 rows each
    assert sum(rows_read) <= 2 * (3 + 1) * 8 < 400
    assert sum(m is not None for m in x._maps) < len(x.parts)  # most shards were never opened
    in_memory, _ = stages.pretrain_unimodal(bundles, tiny_model_params, params, trainer)
    for k, v in in_memory.model.state_dict().items():
        assert torch.allclose(v, from_disk.model.state_dict()[k], atol=1e-6), k


def test_streamed_batches_are_page_locked_in_the_prefetch_thread(tmp_path, monkeypatch) -> None:
    """Pinning is part of the background read, not of the training step (main thread)."""
    import threading

    threads = []

    def fake_pin(self):  # CPU-only machines cannot page-lock; record where it would happen
        threads.append(threading.current_thread().name)
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    x = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    lx, ly = _lazy(tmp_path, x, np.arange(40))
    src, ref = BatchSource(lx, ly, seed=1), BatchSource(x, np.arange(40), seed=1)
    for _ in range(6):
        got, want = src.draw(8, pin=True), ref.draw(8)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    after_first = threads[2:]  # the first batch is read (and pinned) in the step: nothing was prefetched yet
    assert after_first and all(t.startswith("prefetch-") for t in after_first), threads

"""Atomic writes give the permissions a normal write would (0666 & ~umask, dirs 0777 & ~umask)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.io import ArrayBundleDataset, AtomicDataset
from omnivec2_pipelines.io.tables import TableChunksDataset
from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.utils import atomic_path, current_umask


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    """Permission bits of ``root`` and everything under it, by relative path."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for p in root.rglob("*"):
        out[p.relative_to(root).as_posix()] = stat.S_IMODE(p.stat().st_mode)
    return out


def _assert_normal(root: Path, umask: int) -> None:
    for name, mode in _modes(root).items():
        full = root / name
        expected = (0o777 if full.is_dir() else 0o666) & ~umask
        assert mode == expected, f"{full}: {oct(mode)}, a normal write gives {oct(expected)}"


def test_current_umask_reads_without_changing(umask) -> None:
    assert current_umask() == umask
    assert os.umask(umask) == umask  # unchanged


def test_atomic_file_and_directory_get_the_umask_modes(tmp_path, umask) -> None:
    with atomic_path(tmp_path / "f.bin") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # a writer that stages privately (mkstemp-like)
        os.write(fd, b"x")
        os.close(fd)
    _assert_normal(tmp_path / "f.bin", umask)
    with atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir(mode=0o700)
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "a.txt").write_text("a")
        os.chmod(tmp / "sub" / "a.txt", 0o600)
    _assert_normal(tmp_path / "d", umask)
    # the folder the file lives in keeps its own mode
    assert stat.S_IMODE(tmp_path.stat().st_mode) != 0 and sorted(os.listdir(tmp_path)) == ["d", "f.bin"]


def test_tokenized_shards_and_checkpoint_are_readable_by_others(tmp_path, umask, bundles,
                                                                tiny_model_params) -> None:
    # safetensors' save_file leaves its files 0600: the shards and the checkpoint must not
    bundle = ArrayBundle({"train.x": np.arange(60, dtype=np.float32).reshape(20, 3),
                          "train.y.classification": np.arange(20)}, {"modality": "m", "splits": {"train": 20}})
    ArrayBundleDataset(str(tmp_path / "tokenized" / "m"), shard_mb=0.0001).save(bundle)
    assert len(list((tmp_path / "tokenized" / "m").glob("part-*.safetensors"))) > 1
    _assert_normal(tmp_path / "tokenized" / "m", umask)

    from omnivec2_pipelines.training import stages
    from omnivec2_pipelines.training.checkpoint import Checkpoint

    Checkpoint(stages.build_model(tiny_model_params, bundles), {}).save(tmp_path / "ckpt")
    _assert_normal(tmp_path / "ckpt", umask)


def test_atomic_dataset_and_table_get_the_umask_modes(tmp_path, umask) -> None:
    AtomicDataset({"type": "json.JSONDataset"}, str(tmp_path / "metrics.json")).save({"a": 1.0})
    _assert_normal(tmp_path / "metrics.json", umask)
    TableChunksDataset(str(tmp_path / "t.parquet")).save(pd.DataFrame({"a": [1, 2]}))
    _assert_normal(tmp_path / "t.parquet", umask)

"""Versioned checkpoints and files (Kedro's dataset versioning), resolving a folder of versions, pruning them."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DatasetError, Version

from omnivec2_pipelines.io import AtomicDataset, CheckpointDataset
from omnivec2_pipelines.io.versions import main, prune, versioned_datasets, versions
from omnivec2_pipelines.models import ModelConfig, OmniVec2
from omnivec2_pipelines.training.checkpoint import (
    Checkpoint,
    load_checkpoint,
    read_config,
    resolve_checkpoint_dir,
    save_checkpoint,
)

V1, V2, V3 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z", "2026-01-03T00.00.00.000Z"
TINY = {"width": 16, "depth_f": 1, "heads_f": 2, "reduced_width": 16, "depth_g": 1, "heads_g": 2}


def _ckpt(tag: str) -> Checkpoint:
    return Checkpoint(OmniVec2(ModelConfig.from_dict(TINY)), {"tag": tag})


def test_versioned_checkpoints_keep_every_save_and_load_the_newest_or_a_named_one(tmp_path) -> None:
    root = tmp_path / "multitask"
    for v in (V1, V2):
        CheckpointDataset(str(root), version=Version(None, v)).save(_ckpt(v))
    assert versions(root) == [V1, V2]
    assert (root / V1 / "multitask" / "model.safetensors").is_file()
    latest = CheckpointDataset(str(root), version=Version(None, None))
    assert latest.exists() and latest.load().meta["tag"] == V2
    assert CheckpointDataset(str(root), version=Version(V1, None)).load().meta["tag"] == V1
    with pytest.raises(DatasetError, match="does not exist"):
        CheckpointDataset(str(root), version=Version("2020-01-01T00.00.00.000Z", None)).load()
    with pytest.raises(DatasetError, match="must not exist"):  # a version is never overwritten
        CheckpointDataset(str(root), version=Version(None, V1)).save(_ckpt("again"))
    # a parameter naming the folder (<stage>.init, resume_from) or the Python API reads the newest, like Kedro
    assert resolve_checkpoint_dir(root) == root / V2 / "multitask"
    assert load_checkpoint(root)[1]["tag"] == V2 and read_config(root)["meta"]["tag"] == V2
    assert Checkpoint.load(root / V1 / "multitask").meta["tag"] == V1


def test_versioned_checkpoint_without_versions(tmp_path) -> None:
    root = tmp_path / "pretrain_paired"
    ds = CheckpointDataset(str(root), version=Version(None, None))
    assert not ds.exists()
    with pytest.raises(DatasetError, match="pretrain_paired has no saved version; run the stage"):
        ds.load()
    # one saved before versioning was turned on is read until a version exists
    save_checkpoint(_ckpt("legacy").model, root, {"tag": "legacy"})
    assert ds.exists() and ds.load().meta["tag"] == "legacy"
    CheckpointDataset(str(root), version=Version(None, V1)).save(_ckpt(V1))
    assert CheckpointDataset(str(root), version=Version(None, None)).load().meta["tag"] == V1
    assert resolve_checkpoint_dir(root) == root / V1 / "pretrain_paired"
    # unversioned: the directory itself, replaced on save
    plain = CheckpointDataset(str(tmp_path / "plain"))
    plain.save(_ckpt("a"))
    plain.save(_ckpt("b"))
    assert plain.load().meta["tag"] == "b" and versions(tmp_path / "plain") == []


def test_versioned_atomic_dataset(tmp_path) -> None:
    path = str(tmp_path / "loss_multitask.csv")
    cfg = {"type": "pandas.CSVDataset", "save_args": {"index": False}}
    for i, v in enumerate((V1, V2)):
        AtomicDataset(cfg, path, version=Version(None, v)).save(pd.DataFrame({"step": [0], "loss": [float(i)]}))
    assert (tmp_path / "loss_multitask.csv" / V1 / "loss_multitask.csv").is_file()
    assert AtomicDataset(cfg, path, version=Version(None, None)).load()["loss"].tolist() == [1.0]
    assert AtomicDataset(cfg, path, version=Version(V1, None)).load()["loss"].tolist() == [0.0]
    assert not AtomicDataset(cfg, str(tmp_path / "none.csv"), version=Version(None, None)).exists()


def test_prune_keeps_the_newest_versions_of_every_versioned_dataset(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    ckpts = data / "06_models" / "multitask"
    for v in (V1, V2, V3):
        CheckpointDataset(str(ckpts), version=Version(None, v)).save(_ckpt(v))
        AtomicDataset("json.JSONDataset", str(data / "08_reporting/runs/metrics.json"),
                      version=Version(None, v)).save({"v": v})
    (data / "08_reporting" / "report.md").write_text("not versioned")
    assert versioned_datasets(data) == [data / "06_models/multitask", data / "08_reporting/runs/metrics.json"]
    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        prune(ckpts, 0)
    assert prune(ckpts, 2) == [ckpts / V1] and versions(ckpts) == [V2, V3]

    main(["--keep", "1", "--dry-run", str(data)])
    assert versions(ckpts) == [V2, V3] and "would delete" in capsys.readouterr().out
    main(["--keep", "1", str(data)])
    assert versions(ckpts) == [V3] and versions(data / "08_reporting/runs/metrics.json") == [V3]
    assert CheckpointDataset(str(ckpts), version=Version(None, None)).load().meta["tag"] == V3
    assert (data / "08_reporting" / "report.md").is_file()

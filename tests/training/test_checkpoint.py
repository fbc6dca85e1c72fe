from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint


def _model(bundles, params):
    torch.manual_seed(0)
    model = stages.build_model(params, bundles)
    from omnivec2_pipelines.models import HeadConfig

    model.add_head(HeadConfig("series", "forecasting", "regression", 16))
    return model.eval()


def test_checkpoint_rebuilds_same_model(tmp_path, bundles, tiny_model_params) -> None:
    model = _model(bundles, tiny_model_params)
    save_checkpoint(model, tmp_path / "ckpt", {"stage": "x"})
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors"]
    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta == {"stage": "x"}
    x = torch.from_numpy(bundles["series"].get("test", "x_context")[:4])
    with torch.no_grad():
        assert torch.equal(model("series", x, "forecasting"), loaded.eval()("series", x, "forecasting"))
    assert loaded.cfg.to_dict() == model.cfg.to_dict()


def test_save_replaces_whole_dir_and_leaves_no_temp(tmp_path, bundles, tiny_model_params) -> None:
    model = _model(bundles, tiny_model_params)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "stale.bin").write_text("old")
    Checkpoint(model, {}).save(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["config.json", "model.safetensors"]


def test_missing_and_corrupt_files_name_the_file(tmp_path, bundles, tiny_model_params) -> None:
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        load_checkpoint(tmp_path)
    save_checkpoint(_model(bundles, tiny_model_params), tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="model.safetensors are unreadable"):
        load_checkpoint(tmp_path / "c")


def test_pickle_payload_is_refused_without_running(tmp_path, bundles, tiny_model_params) -> None:
    save_checkpoint(_model(bundles, tiny_model_params), tmp_path / "c")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "c" / "model.safetensors").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(tmp_path / "c")
    assert not marker.exists()


def test_config_mismatch_is_reported(tmp_path, bundles, tiny_model_params) -> None:
    save_checkpoint(_model(bundles, tiny_model_params), tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "config.json").read_text())
    doc["model"]["depth_f"] = 2
    (tmp_path / "c" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not match its config"):
        load_checkpoint(tmp_path / "c")

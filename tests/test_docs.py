"""The 'Adding a modality' guide's example module runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from omnivec2_pipelines.modalities.base import _REGISTRY, DataError
from omnivec2_pipelines.training import stages

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding_a_modality.md"


@pytest.fixture
def sensor():
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[0]
    namespace: dict = {"__name__": "omnivec2_pipelines.modalities.sensor"}
    exec(compile(code, str(DOC), "exec"), namespace)
    yield _REGISTRY["sensor"]
    _REGISTRY.pop("sensor", None)


def test_doc_example_runs_end_to_end(tmp_path, sensor, tiny_model_params) -> None:
    manifest = sensor.make_sample_data(tmp_path / "sensor", {"seed": 0})
    table = sensor.read({"format": "npy_folders", "path": str(tmp_path / "sensor")})
    assert len(table) == manifest["files"] == 56 and set(table["split"]) == {"train", "val", "test"}
    bundle = sensor.tokenize(table, {"length": 64, "patch_size": 16})
    model = stages.build_model(tiny_model_params, {"sensor": bundle})
    from omnivec2_pipelines.models import HeadConfig

    model.add_head(HeadConfig("sensor", "classification", "classification", 2))
    out = model("sensor", torch.from_numpy(bundle.get("test", "x")), "classification")
    assert out.shape == (bundle.meta["splits"]["test"], 2)

    bad = tmp_path / "sensor" / "train" / "idle" / "rec_000.npy"
    np.save(bad, np.full((2, 8), np.nan))
    with pytest.raises(DataError, match="rec_000.npy: contains NaN"):
        sensor.read({"format": "npy_folders", "path": str(tmp_path / "sensor")})
    skipped = sensor.read({"format": "npy_folders", "path": str(tmp_path / "sensor"), "on_error": "skip"})
    assert skipped.attrs["ingestion_errors"]["by_reason"] == {"nan": 1} and len(skipped) == 55

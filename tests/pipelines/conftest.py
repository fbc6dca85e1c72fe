"""Fixtures for pipeline tests: the project's real parameters, shrunk, and tiny raw data."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

PROJECT = Path(__file__).resolve().parents[2]
MODALITIES = ["image", "audio", "time_series"]

TINY = {
    "model": {"width": 32, "depth_f": 1, "heads_f": 2, "reduced_width": 32, "depth_g": 1, "heads_g": 2},
    "trainer": {"device": "cpu", "progress": False, "warmup_steps": 1, "log_every": 2},
    "pretrain_unimodal": {"steps": 3, "batch_size": 8},
    "pretrain_paired": {"steps": 2, "batch_size": 8},
    "multitask": {"steps": 4, "batch_size": 8},
}


def project_params() -> dict:
    """Parameters exactly as the project's conf/base defines them."""
    return OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")["parameters"]


def tiny_params(raw_root: Path) -> dict:
    """The project's parameters with tiny training sizes and all data under ``raw_root``."""
    params = project_params()
    for key, over in TINY.items():
        params[key].update(over)
    for m in MODALITIES:
        params["sample_data"][m]["path"] = str(raw_root / m)
        params[m]["source"]["path"] = str(raw_root / m)
    params["sample_data"]["audio"]["clips_per_class_per_fold"] = 2
    return params


@pytest.fixture(scope="session")
def raw_root(tmp_path_factory) -> Path:
    """Embedded sample data of every modality, written once per session."""
    from omnivec2_pipelines.modalities import get_modality

    root = tmp_path_factory.mktemp("raw")
    params = tiny_params(root)
    for m in MODALITIES:
        get_modality(m).make_sample_data(root / m, params["sample_data"][m])
    return root

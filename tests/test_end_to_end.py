"""All six pipelines, for real, through the Kedro CLI in a temporary copy of the project."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml

from omnivec2_pipelines.io.versions import versions
from omnivec2_pipelines.training.checkpoint import Checkpoint
from tests.project_copy import TINY_PARAMS, copy_project, deep_update, run_cmd
from tests.tiny import MODALITIES

pytestmark = pytest.mark.slow


def test_full_default_run_in_project_copy(tmp_path, monkeypatch) -> None:
    root = copy_project(tmp_path / "project")
    local: dict = {}
    for over in TINY_PARAMS.values():
        deep_update(local, over)
    # conf/local overrides single nested keys (soft merge), as a user would
    (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(local))

    run_cmd(["kedro", "run", "--pipelines", "sample_data"], root)
    assert (root / "data/01_raw/image/train").is_dir() and (root / "data/01_raw/audio/meta/esc50.csv").is_file()
    proc = run_cmd(["kedro", "run"], root)
    assert "Pipeline execution completed successfully" in proc.stdout + proc.stderr

    metrics = json.loads((root / "data/08_reporting/metrics.json").read_text())
    for m in MODALITIES:  # every enabled modality is evaluated, beside its baseline
        assert any(k.startswith(f"{m}.") and ".baseline." not in k for k in metrics), m
        assert any(k.startswith(f"{m}.") and ".baseline." in k for k in metrics), m
    assert 0.0 <= metrics["image.classification.accuracy"] <= 1.0
    assert metrics["time_series.forecasting.mse"] >= 0 and 0 <= metrics["point_cloud.segmentation.miou"] <= 1
    md = (root / "data/08_reporting/report.md").read_text()
    assert "| image | classification | accuracy |" in md
    assert (root / "data/08_reporting/figures/loss/multitask.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "data/08_reporting/figures/confusion/xray.classification.png").is_file()
    report = json.loads((root / "data/08_reporting/ingestion/xray.json").read_text())
    assert report["errors"]["skipped"] == 0 and report["rows"] > 0
    # every stage's checkpoint and loss history is kept under the run id (versioned datasets)
    (run_id,) = versions(root / "data/06_models/multitask")
    for stage, steps in (("pretrain_unimodal", 3), ("pretrain_paired", 2), ("multitask", 4)):
        hist = pd.read_csv(root / f"data/08_reporting/loss_{stage}.csv/{run_id}/loss_{stage}.csv")
        assert len(hist) == steps  # the tiny conf/local values were applied
        assert (root / f"data/06_models/{stage}/{run_id}/{stage}/model.safetensors").is_file()

    assert (root / "data/05_model_input/tokenized/image/index.json").is_file()  # sharded, read lazily

    # the same stage on 2 data-parallel ranks (gloo), chosen by one parameter
    before = (root / f"data/06_models/multitask/{run_id}/multitask/model.safetensors").read_bytes()
    proc = run_cmd(["kedro", "run", "--pipelines", "multitask", "--params", "trainer.nproc_per_node=2"], root)
    assert "multitask: 2 worker(s) (2 per node x 1 node(s), gloo)" in proc.stdout + proc.stderr
    first, second = versions(root / "data/06_models/multitask")  # a new version; the first one is kept
    assert first == run_id
    assert len(pd.read_csv(root / f"data/08_reporting/loss_multitask.csv/{second}/loss_multitask.csv")) == 4
    assert (root / f"data/06_models/multitask/{second}/multitask/model.safetensors").read_bytes() != before
    assert (root / f"data/06_models/multitask/{first}/multitask/model.safetensors").read_bytes() == before

    # the final checkpoint (a stage's folder reads its newest version) rebuilds with no other input and runs
    # single-stream inference
    ckpt = Checkpoint.load(root / "data/06_models/multitask")
    assert ckpt.meta["weights_digest"] == Checkpoint.load(
        root / f"data/06_models/multitask/{second}/multitask").meta["weights_digest"]
    x = torch.zeros(2, *ckpt.meta["data"]["image"]["tokenizer"]["input_size"]).unsqueeze(1)
    assert ckpt.model.eval()("image", x, "classification").shape == (2, 10)
    assert ckpt.meta["data"]["image"]["tasks"]["classification"]["class_names"][:3] == ["0", "1", "2"]

    # the quickstart notebook runs against this project's outputs (Python API, no Kedro)
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("OMNIVEC2_ROOT", str(root))
    nb = nbformat.read(root / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "image__classification" in printed and "of 8 test samples right" in printed
    assert (root / "data/08_reporting/quickstart_predictions.png").read_bytes()[:4] == b"\x89PNG"

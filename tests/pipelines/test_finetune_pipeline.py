"""``kedro run --pipelines finetune`` for real: a new data set of a known modality with other classes, read
through the normal ingestion and tokenization, fine-tuned from the run's checkpoint and from scratch."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import yaml

from omnivec2_pipelines.training.checkpoint import Checkpoint
from tests.project_copy import TINY_PARAMS, copy_project, deep_update, run_cmd


def test_finetune_on_a_new_image_folder_with_three_classes(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    root = copy_project(tmp_path / "project")
    local: dict = {"modalities": ["image", "tabular"]}
    for over in TINY_PARAMS.values():
        deep_update(local, over)
    local = {k: v for k, v in local.items() if k in ("modalities", "model", "trainer", "image", "tabular",
                                                      "pretrain_unimodal", "pretrain_paired", "multitask")}
    (root / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(local))
    run_cmd(["kedro", "run", "--pipelines", "sample_data"], root)
    run_cmd(["kedro", "run"], root)

    # a new ImageFolder data set (standard layout) with three of the ten digits, under other names
    new = root / "data" / "01_raw" / "three_digits"
    for split in ("train", "test"):
        for digit, name in (("0", "zero"), ("1", "one"), ("7", "seven")):
            shutil.copytree(root / "data/01_raw/image" / split / digit, new / split / name)
    finetune = {"finetune": {"data": {"image": {"source": {"path": str(new)}}}, "modalities": ["image"],
                             "label_fractions": [0.5, 1.0], "scratch": True, "steps": 3, "batch_size": 8,
                             "eval_every": 2}}
    (root / "conf" / "local" / "parameters_finetune.yml").write_text(yaml.safe_dump(finetune))
    proc = run_cmd(["kedro", "run", "--pipelines", "finetune"], root)
    out = proc.stdout + proc.stderr
    assert "finetune.image.ingest" in out and "re-created" in out

    report = json.loads((root / "data/08_reporting/finetune/ingestion/image.json").read_text())
    assert sorted(report["per_class"]) == ["one", "seven", "zero"]
    results = json.loads((root / "data/08_reporting/finetune.json").read_text())
    runs = {(r["fraction"], r["start"]): r for r in results["runs"]}
    assert set(runs) == {(0.5, "pretrained"), (1.0, "pretrained"), (0.5, "scratch"), (1.0, "scratch")}
    assert runs[(1.0, "pretrained")]["recreated_heads"] == {
        "image.classification": "10 -> 3 outputs"}
    assert all(0.0 <= r["model"]["accuracy"] <= 1.0 and "accuracy" in r["baseline"] for r in runs.values())
    assert "## image.classification (accuracy ↑)" in (root / "data/08_reporting/finetune.md").read_text()
    assert (root / "data/08_reporting/figures/finetune/image.classification.png").read_bytes()[:4] == b"\x89PNG"

    (version,) = (root / "data/06_models/finetune").iterdir()  # versioned: <run id>/finetune/<run>
    (saved,) = version.iterdir()
    ckpt = Checkpoint.load(saved / "image.classification__pretrained__1")
    assert ckpt.meta["data"]["image"]["tasks"]["classification"]["class_names"] == ["one", "seven", "zero"]
    assert ckpt.meta["finetune"]["init"]["stage"] == "multitask"
    (hist_file,) = (root / "data/08_reporting/loss_finetune.csv").glob("*/loss_finetune.csv")
    hist = pd.read_csv(hist_file)
    assert set(hist["start"]) == {"pretrained", "scratch"} and len(hist) == 4 * 3

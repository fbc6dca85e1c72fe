"""kedro-viz layers: every catalog entry (and factory) names the layer of its data folder."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.project_copy import PROJECT, copy_project, run_cmd

#: The data folders and the kedro-viz layer each one is.
LAYERS = {"01_raw": "raw", "02_intermediate": "intermediate", "03_primary": "primary", "04_feature": "feature",
          "05_model_input": "model_input", "06_models": "models", "07_model_output": "model_output",
          "08_reporting": "reporting"}


def test_every_catalog_entry_has_the_layer_of_its_folder() -> None:
    catalog = yaml.safe_load((PROJECT / "conf/base/catalog.yml").read_text())
    assert catalog
    for name, entry in catalog.items():
        layer = ((entry.get("metadata") or {}).get("kedro-viz") or {}).get("layer")
        assert layer in LAYERS.values(), f"{name}: metadata.kedro-viz.layer is {layer!r}"
        where = entry.get("filepath") or entry.get("path")
        folder = re.match(r"data/(0\d_[a-z_]+)/", str(where))
        assert folder, f"{name}: {where!r} is not under a data/0N_<layer>/ folder"
        assert layer == LAYERS[folder.group(1)], f"{name}: layer {layer!r}, but it lives in {folder.group(1)}"


@pytest.mark.slow
def test_kedro_viz_build_shows_the_layers(tmp_path) -> None:
    root = copy_project(tmp_path / "project")
    run_cmd(["kedro", "viz", "build"], root)
    seen: set[str] = set()
    for path in sorted((root / "build/api/pipelines").iterdir()):
        graph = json.loads(path.read_text())
        for n in graph["nodes"]:
            if n["type"] == "data":  # every dataset of every pipeline sits in a layer
                assert n.get("layer") in LAYERS.values(), (path.name, n["name"], n.get("layer"))
                seen.add(n["layer"])
        assert set(graph["layers"]) <= set(LAYERS.values()), (path.name, graph["layers"])
    assert {"raw", "primary", "model_input", "models", "reporting"} <= seen
    default = json.loads((root / "build/api/main").read_text())
    assert {"primary", "model_input", "models", "reporting"} <= set(default["layers"])

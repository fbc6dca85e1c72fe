"""kedro-viz lineage: `kedro viz build` makes a static site offline; headless Chromium renders the nodes."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading

import pytest

from tests.project_copy import copy_project, run_cmd

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=20000", "--window-size=1400,900"]

pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (make test installs it as root)")


def test_viz_build_renders_pipeline_nodes_in_chromium(tmp_path) -> None:
    assert CHROMIUM, "chromium missing: .ci/run / make test must install Debian's chromium"
    root = copy_project(tmp_path / "project")
    run_cmd(["kedro", "viz", "build"], root)
    assert (root / "build" / "index.html").is_file() and (root / "build" / "api" / "main").is_file()
    # the catalog's kedro-viz layers reach the graph (tests/test_catalog_layers.py checks each dataset)
    layers = json.loads((root / "build" / "api" / "main").read_text())["layers"]
    assert {"primary", "model_input", "models", "reporting"} <= set(layers), layers

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "build"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        profile = tmp_path / "chromium-profile"
        dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "viz.png"
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", url],
                       capture_output=True, timeout=120)
    finally:
        server.shutdown()
    # the rendered page (after JavaScript ran) lists the pipelines' nodes and namespaces
    for name in ("pretrain_unimodal", "pretrain_paired", "multitask", "evaluate", "hyperspectral", "point_cloud"):
        assert name in dom, name
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000

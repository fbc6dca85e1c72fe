"""Sample data of the graph modality: the REAL MUTAG data set shipped in grakel's test data, copied."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from omnivec2_pipelines.modalities.base import DataError, atomic_directory
from omnivec2_pipelines.modalities.graph import REQUIRED_SUFFIXES, parse_ints

#: Files copied for the embedded default data (MUTAG from grakel).
_SAMPLE_SUFFIXES: tuple[str, ...] = REQUIRED_SUFFIXES + ("_node_labels.txt", "_edge_labels.txt")


def _bundled_tu_dir(name: str) -> Path:
    """Folder of the TU data set ``name`` shipped in grakel's test data (found without import)."""
    spec = importlib.util.find_spec("grakel")
    if spec is None or spec.origin is None:
        raise DataError("grakel is not installed; it provides the bundled MUTAG sample data")
    folder = Path(spec.origin).parent / "tests" / "data" / name
    if not all((folder / f"{name}{s}").is_file() for s in REQUIRED_SUFFIXES):
        have = sorted(p.name for p in folder.parent.iterdir()) if folder.parent.is_dir() else []
        raise DataError(f"grakel has no bundled TU data set {name!r} under {folder.parent}; "
                        f"available: {have}")
    return folder


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Copy the REAL MUTAG data set bundled with grakel (its test data) into ``root``.

    MUTAG: 188 nitroaromatic compounds (nodes = atoms with 7 atom-type labels, edges =
    bonds), labelled by mutagenic effect on a bacterium (2 classes). Copied as TU files
    ``MUTAG_A.txt``, ``_graph_indicator``, ``_graph_labels``, ``_node_labels``,
    ``_edge_labels`` (+ the README when present); grakel is located without importing it.

    Args:
        root: Output folder (replaced atomically).
        params: ``name`` of the bundled TU data set (default ``"MUTAG"``).

    Returns:
        Manifest ``{"source", "name", "files", "graphs", "classes"}``.
    """
    name = str(params.get("name", "MUTAG"))
    src = _bundled_tu_dir(name)
    copied = 0
    with atomic_directory(Path(root)) as tmp:
        for suffix in _SAMPLE_SUFFIXES + ("_node_attributes.txt",):
            f = src / f"{name}{suffix}"
            if f.is_file():
                (tmp / f.name).write_bytes(f.read_bytes())
                copied += 1
        if (src / "README.txt").is_file():
            (tmp / f"{name}_README.txt").write_bytes((src / "README.txt").read_bytes())
            copied += 1
        labels = parse_ints(tmp / f"{name}_graph_labels.txt", 1, "one graph label per line")
    classes = [str(v) for v in sorted(set(labels[:, 0].tolist()))]
    return {"source": f"TU {name} bundled with grakel (real)", "name": name, "files": copied,
            "graphs": int(len(labels)), "classes": classes}

"""Custom Kedro datasets. Both write atomically (temporary file/dir + rename)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from safetensors.numpy import load_file, save_file

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.training.checkpoint import Checkpoint
from omnivec2_pipelines.utils import atomic_path


class ArrayBundleDataset(AbstractDataset[ArrayBundle, ArrayBundle]):
    """An :class:`ArrayBundle` as one safetensors file (arrays) with its JSON meta in the header.

    Example catalog entry::

        "{modality}.tokenized":
          type: omnivec2_pipelines.io.ArrayBundleDataset
          filepath: data/05_model_input/{modality}.safetensors

    Args:
        filepath: Path of the ``.safetensors`` file.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _load(self) -> ArrayBundle:
        path = Path(self._filepath)
        if not path.is_file():
            raise DatasetError(f"tokenized bundle {path} does not exist; run the tokenization pipeline first")
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
        arrays = load_file(str(path))
        return ArrayBundle(arrays, json.loads(header.get("meta", "{}")))

    def _save(self, data: ArrayBundle) -> None:
        if not isinstance(data, ArrayBundle):
            raise DatasetError(f"{self._filepath}: expected an ArrayBundle, got {type(data).__name__}")
        with atomic_path(self._filepath) as tmp:
            save_file({k: v for k, v in data.arrays.items()}, str(tmp), metadata={"meta": json.dumps(data.meta)})

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class CheckpointDataset(AbstractDataset[Checkpoint, Checkpoint]):
    """A model checkpoint directory: ``model.safetensors`` + ``config.json`` (no pickle).

    Args:
        path: Checkpoint directory, replaced as a whole on save.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def _load(self) -> Checkpoint:
        if not Path(self._path).is_dir():
            raise DatasetError(f"checkpoint {self._path} does not exist; run the stage that writes it first")
        return Checkpoint.load(self._path)

    def _save(self, data: Checkpoint) -> None:
        if not isinstance(data, Checkpoint):
            raise DatasetError(f"{self._path}: expected a Checkpoint, got {type(data).__name__}")
        data.save(self._path)

    def _exists(self) -> bool:
        return Path(self._path).is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

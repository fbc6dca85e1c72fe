"""Custom Kedro datasets. Both write atomically (temporary file/dir + rename)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

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
        return ArrayBundle.load(path)

    def _save(self, data: ArrayBundle) -> None:
        if not isinstance(data, ArrayBundle):
            raise DatasetError(f"{self._filepath}: expected an ArrayBundle, got {type(data).__name__}")
        data.save(self._filepath)

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


class AtomicDataset(AbstractDataset[Any, Any]):
    """Any file dataset, saved atomically: written to a temporary sibling, then renamed into place.

    A crash at any point leaves the previous good file (or none), never a truncated one.
    Loading is delegated unchanged. Example catalog entry::

        metrics:
          type: omnivec2_pipelines.io.AtomicDataset
          dataset: {type: json.JSONDataset, save_args: {indent: 2}}
          filepath: data/08_reporting/metrics.json

    Args:
        dataset: Config of the wrapped dataset (``type`` and its arguments, without ``filepath``),
            or just its type name.
        filepath: The file the wrapped dataset reads and writes.
    """

    def __init__(self, dataset: dict[str, Any] | str, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        if "filepath" in self._config:
            raise DatasetError("AtomicDataset: give 'filepath' at the top level, not inside 'dataset'")
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata
        self._reader = self._inner(self._filepath)
        if hasattr(self._reader, "preview"):
            # kedro-viz previews through the wrapped dataset (its return annotation names the preview type)
            self.preview = self._reader.preview

    def _inner(self, path: PurePosixPath | Path) -> AbstractDataset:
        return AbstractDataset.from_config(f"atomic:{self._filepath}", {**self._config, "filepath": str(path)})

    def _load(self) -> Any:
        return self._reader.load()

    def _save(self, data: Any) -> None:
        with atomic_path(self._filepath) as tmp:
            self._inner(tmp).save(data)

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._config.get("type")}

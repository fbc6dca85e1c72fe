"""Custom Kedro datasets. Both write atomically (temporary file/dir + rename)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.utils import atomic_path

if TYPE_CHECKING:  # torch is imported when a checkpoint is loaded or saved, not at catalog creation
    from omnivec2_pipelines.training.checkpoint import Checkpoint


class ArrayBundleDataset(AbstractDataset[ArrayBundle, ArrayBundle]):
    """An :class:`ArrayBundle` as a directory of safetensors shards, read lazily.

    Loading memory-maps the shards: arrays come back as
    :class:`~omnivec2_pipelines.shards.ShardedArray` s that read only the rows asked for, so
    training streams data sets larger than memory. Saving writes shard by shard into a temporary
    directory that replaces the old one at the end (see :func:`omnivec2_pipelines.shards.save_bundle`).

    Example catalog entry::

        "{modality}.tokenized":
          type: omnivec2_pipelines.io.ArrayBundleDataset
          path: data/05_model_input/tokenized/{modality}
          shard_mb: 64

    Args:
        path: Bundle directory.
        shard_mb: Target shard size in MiB.
    """

    def __init__(self, path: str, shard_mb: float = 64.0, metadata: dict[str, Any] | None = None) -> None:
        if not isinstance(shard_mb, (int, float)) or isinstance(shard_mb, bool) or shard_mb <= 0:
            raise DatasetError(f"ArrayBundleDataset({path}): shard_mb must be a positive number, got {shard_mb!r}")
        self._path = PurePosixPath(path)
        self._shard_mb = float(shard_mb)
        self.metadata = metadata

    def _load(self) -> ArrayBundle:
        from omnivec2_pipelines.shards import load_bundle

        path = Path(self._path)
        if not path.is_dir():
            raise DatasetError(f"tokenized bundle {path} does not exist; run the tokenization pipeline first")
        try:
            arrays, meta = load_bundle(path)
        except ValueError as e:
            raise DatasetError(str(e)) from e
        return ArrayBundle(arrays, meta)

    def _save(self, data: ArrayBundle) -> None:
        from omnivec2_pipelines.shards import save_bundle

        if not isinstance(data, ArrayBundle):
            raise DatasetError(f"{self._path}: expected an ArrayBundle, got {type(data).__name__}")
        save_bundle(data.arrays, data.meta, self._path, self._shard_mb)

    def _exists(self) -> bool:
        return (Path(self._path) / "index.json").is_file()

    @property
    def path(self) -> str:
        """The bundle's folder (``index.json`` + shards)."""
        return str(self._path)

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "shard_mb": self._shard_mb}


class CheckpointDataset(AbstractDataset[Any, Any]):
    """A model checkpoint directory: ``model.safetensors`` + ``config.json`` (no pickle).

    Args:
        path: Checkpoint directory, replaced as a whole on save.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def _load(self) -> Checkpoint:
        from omnivec2_pipelines.training.checkpoint import Checkpoint

        if not Path(self._path).is_dir():
            raise DatasetError(f"checkpoint {self._path} does not exist; run the stage that writes it first")
        return Checkpoint.load(self._path)

    def _save(self, data: Checkpoint) -> None:
        from omnivec2_pipelines.training.checkpoint import Checkpoint

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

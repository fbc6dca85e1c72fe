"""Custom Kedro datasets. Both write atomically (temporary file/dir + rename)."""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version
from kedro.io.core import VersionNotFoundError

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


def _is_checkpoint(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


class CheckpointDataset(AbstractVersionedDataset[Any, Any]):
    """A model checkpoint directory: ``model.safetensors`` + ``config.json`` (no pickle).

    Unversioned, the directory is replaced as a whole on save. With ``versioned: true`` in the catalog
    (Kedro's dataset versioning) every save writes a new ``<path>/<version>/<name>/`` (the version is
    the run's timestamp, shared by all versioned outputs of one ``kedro run``), nothing is replaced, and
    a load reads the newest version unless ``--load-versions <dataset>:<version>`` names one. A
    checkpoint saved before versioning was turned on (``<path>/config.json``) is read when there is
    no version yet.

    Example catalog entry::

        "{stage}_checkpoint":
          type: omnivec2_pipelines.io.CheckpointDataset
          path: data/06_models/{stage}
          versioned: true

    Args:
        path: Checkpoint directory (unversioned), or the folder of its versions.
        version: Kedro's load/save versions (set by the catalog for ``versioned: true``).
    """

    def __init__(self, path: str, version: Version | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(PurePosixPath(path), version, exists_function=_is_checkpoint)
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def _checkpoint_dir(self) -> Path:
        try:
            return Path(self._get_load_path())
        except VersionNotFoundError:
            if _is_checkpoint(str(self._path)):  # written before versioning was turned on
                return Path(self._path)
            raise DatasetError(f"checkpoint {self._path} has no saved version; run the stage that writes it "
                               f"first") from None

    def _load(self) -> Checkpoint:
        from omnivec2_pipelines.training.checkpoint import Checkpoint

        path = self._checkpoint_dir()
        if not path.is_dir():
            raise DatasetError(f"checkpoint {path} does not exist; run the stage that writes it first"
                               + (" or name an existing version (ls " + str(self._path) + ")" if self._version
                                  else ""))
        return Checkpoint.load(path)

    def _save(self, data: Checkpoint) -> None:
        from omnivec2_pipelines.training.checkpoint import Checkpoint

        if not isinstance(data, Checkpoint):
            raise DatasetError(f"{self._path}: expected a Checkpoint, got {type(data).__name__}")
        data.save(self._get_save_path())

    def _exists(self) -> bool:
        try:
            return self._checkpoint_dir().is_dir()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "version": self._version}


class CheckpointSetDataset(AbstractVersionedDataset[Any, Any]):
    """Named checkpoints (``{name: Checkpoint}``), one sub-directory each, replaced together on save.

    With ``versioned: true`` (as :class:`CheckpointDataset`) every save writes a new
    ``<path>/<version>/<name>/`` holding the set, and a load reads the newest.

    Args:
        path: Directory holding one checkpoint directory per name (unversioned), or the folder of its versions.
        version: Kedro's load/save versions (set by the catalog for ``versioned: true``).
    """

    def __init__(self, path: str, version: Version | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__(PurePosixPath(path), version, exists_function=lambda p: Path(p).is_dir())
        self._path = PurePosixPath(path)
        self.metadata = metadata

    def _load(self) -> dict[str, "Checkpoint"]:
        from omnivec2_pipelines.training.checkpoint import Checkpoint

        try:
            path = Path(self._get_load_path())
        except VersionNotFoundError:
            raise DatasetError(f"checkpoints {self._path} have no saved version; run the pipeline that writes "
                               f"them first") from None
        if not path.is_dir():
            raise DatasetError(f"checkpoints {path} do not exist; run the pipeline that writes them first")
        return {d.name: Checkpoint.load(d) for d in sorted(path.iterdir()) if d.is_dir()
                and not d.name.startswith(".")}

    def _save(self, data: dict[str, "Checkpoint"]) -> None:
        from omnivec2_pipelines.training.checkpoint import Checkpoint

        if not isinstance(data, dict) or not all(isinstance(v, Checkpoint) for v in data.values()):
            raise DatasetError(f"{self._path}: expected a mapping name -> Checkpoint")
        bad = [k for k in data if not k or "/" in k or k.startswith(".")]
        if bad:
            raise DatasetError(f"{self._path}: checkpoint names must be non-empty, without '/', not start with "
                               f"'.'; got {bad}")
        with atomic_path(self._get_save_path()) as tmp:
            tmp.mkdir()
            for name, ckpt in data.items():
                ckpt.save(tmp / name)

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).is_dir()
        except (VersionNotFoundError, DatasetError):
            return False

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "version": self._version}


class AtomicDataset(AbstractVersionedDataset[Any, Any]):
    """Any file dataset, saved atomically: written to a temporary sibling, then renamed into place.

    A crash at any point leaves the previous good file (or none), never a truncated one.
    Loading is delegated unchanged. With ``versioned: true`` (Kedro's dataset versioning) every save
    writes a new ``<filepath>/<version>/<name>`` and a load reads the newest (or the one
    ``--load-versions`` names). Example catalog entry::

        metrics:
          type: omnivec2_pipelines.io.AtomicDataset
          dataset: {type: json.JSONDataset, save_args: {indent: 2}}
          filepath: data/08_reporting/metrics.json

    Args:
        dataset: Config of the wrapped dataset (``type`` and its arguments, without ``filepath``),
            or just its type name.
        filepath: The file the wrapped dataset reads and writes (unversioned), or the folder of its versions.
        version: Kedro's load/save versions (set by the catalog for ``versioned: true``).
    """

    def __init__(self, dataset: dict[str, Any] | str, filepath: str, version: Version | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self._config = {"type": dataset} if isinstance(dataset, str) else dict(dataset)
        if "filepath" in self._config:
            raise DatasetError("AtomicDataset: give 'filepath' at the top level, not inside 'dataset'")
        super().__init__(PurePosixPath(filepath), version)
        self.metadata = metadata
        reader = self._inner(self._filepath)
        if hasattr(reader, "preview"):
            # kedro-viz previews through the wrapped dataset (its return annotation names the preview type)
            if version is None:
                self.preview = reader.preview
            else:
                @functools.wraps(reader.preview)
                def preview(*args: Any, **kwargs: Any) -> Any:
                    return self._inner(self._get_load_path()).preview(*args, **kwargs)

                self.preview = preview

    def _inner(self, path: PurePosixPath | Path) -> AbstractDataset:
        return AbstractDataset.from_config(f"atomic:{self._filepath}", {**self._config, "filepath": str(path)})

    def _load(self) -> Any:
        return self._inner(self._get_load_path()).load()

    def _save(self, data: Any) -> None:
        with atomic_path(self._get_save_path()) as tmp:
            self._inner(tmp).save(data)

    def _exists(self) -> bool:
        return Path(self._get_load_path()).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "dataset": self._config.get("type"), "version": self._version}

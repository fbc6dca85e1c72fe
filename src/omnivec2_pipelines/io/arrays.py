"""A dict of numpy arrays as one ``.npz`` file (no pickled objects), written atomically."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError

from omnivec2_pipelines.utils import atomic_path


class NpzDataset(AbstractDataset[dict[str, np.ndarray], dict[str, np.ndarray]]):
    """``{name: array}`` saved with :func:`numpy.savez` and loaded without pickle (text as unicode arrays).

    Example catalog entry::

        "predict.{modality}.{task}.arrays":
          type: omnivec2_pipelines.io.arrays.NpzDataset
          filepath: data/07_model_output/predictions/{modality}.{task}.npz

    Args:
        filepath: The ``.npz`` file.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _load(self) -> dict[str, np.ndarray]:
        with np.load(str(self._filepath), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def _save(self, data: dict[str, np.ndarray]) -> None:
        bad = [k for k, v in data.items() if not isinstance(v, np.ndarray) or v.dtype == object]
        if bad:
            raise DatasetError(f"NpzDataset {self._filepath}: {bad} are not numeric or unicode numpy arrays")
        Path(self._filepath).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._filepath) as tmp:
            with open(tmp, "wb") as f:  # a file object: savez would append .npz to a path
                np.savez(f, **data)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

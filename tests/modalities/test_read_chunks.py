"""Every modality's ``read_chunks`` concatenates to its ``read`` (image, depth and x-ray in several chunks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omnivec2_pipelines.modalities import get_modality
from omnivec2_pipelines.modalities.base import concat_chunks
from tests.tiny import MODALITIES, tiny_params


@pytest.mark.parametrize("modality", MODALITIES)
def test_read_chunks_concatenate_to_read(modality, raw_root) -> None:
    mod, source = get_modality(modality), tiny_params(raw_root)[modality]["source"]
    chunks = list(mod.read_chunks(source, 64 if modality == "image" else 500))
    bounded = {"image": [64, 64, 64, 8], "depth": [500, 193]}  # 200 tiny MNIST digits, 693 rgb/depth pairs
    if modality in bounded:
        assert [len(c) for c in chunks] == bounded[modality]
    elif modality == "xray":  # the tiny set has fewer files than one batch
        assert len(chunks) == 1 and len(chunks[0]) <= 500
    else:  # the default reader: one chunk
        assert len(chunks) == 1
    whole, table = mod.read(source), concat_chunks(chunks)
    assert table.attrs == whole.attrs and isinstance(table.index, pd.RangeIndex)
    payload = [c for c in whole.columns if whole[c].dtype == object]  # arrays: compare element-wise
    pd.testing.assert_frame_equal(table.drop(columns=payload), whole.drop(columns=payload))
    for c in payload:
        assert all(_same(a, b) for a, b in zip(table[c], whole[c])), c


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b

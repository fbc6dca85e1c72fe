"""Every modality's ``read_chunks`` concatenates to its ``read`` (the image reader in several chunks)."""

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
    chunks = list(mod.read_chunks(source, 500))
    if modality == "image":  # 1797 digits in chunks of at most 500 files
        assert [len(c) for c in chunks] == [500, 500, 500, 297]
    else:  # the default (x-ray and infrared too, which subclass the image modality): one chunk
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

"""Property-based bad input: arbitrary corruption of any reader's files and arbitrary tensors fed to any
tokenizer end in a clean, named error (DataError / ValueError), never a crash deep inside a library."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnivec2_pipelines.modalities import get_modality
from omnivec2_pipelines.modalities.base import DataError, registered_modalities
from omnivec2_pipelines.models.config import TokenizerConfig
from omnivec2_pipelines.models.tokenizers import build_tokenizer
from tests.tiny import MODALITIES, tiny_params

#: The file of each built-in modality's standard layout that gets corrupted (any other registered modality: the
#: largest file of its sample data).
VICTIM = {"image": "train/*/*.png", "video": "train/*/*.mp4", "audio": "audio/*.wav", "text": "*.csv",
          "depth": "train/rgb/*.png", "point_cloud": "train/*/*.txt", "time_series": "*_TRAIN.ts",
          "tabular": "*.csv", "graph": "*_A.txt", "xray": "train/*/*.dcm", "infrared": "*.csv",
          "imu": "*_TRAIN.ts", "hyperspectral": "cube.mat"}


def corruptions(original: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, max(0, len(original) - 1)).map(lambda k: original[:k]),  # truncated
        st.binary(max_size=300),  # garbage
        st.lists(st.tuples(st.integers(0, max(0, len(original) - 1)), st.integers(0, 255)), min_size=1,
                 max_size=8).map(lambda flips: _flip(original, flips)),  # a few bytes changed
    )


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for i, v in flips:
        if b:
            b[i] = v
    return bytes(b)


def _victim(modality: str, root: Path) -> Path:
    if modality in VICTIM:
        return sorted(root.glob(VICTIM[modality]))[0]
    return max((f for f in root.rglob("*") if f.is_file()), key=lambda f: (f.stat().st_size, str(f)))


@pytest.mark.parametrize("modality", registered_modalities())
def test_corrupt_file_gives_a_named_data_error(modality, raw_root, tmp_path) -> None:
    assert set(VICTIM) <= set(MODALITIES) == set(registered_modalities())
    root = tmp_path / modality
    shutil.copytree(raw_root / modality, root)
    victim = _victim(modality, root)
    original = victim.read_bytes()
    source = {**tiny_params(tmp_path)[modality]["source"], "path": str(root)}
    mod = get_modality(modality)

    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=corruptions(original), skip=st.booleans())
    def check(data: bytes, skip: bool) -> None:
        victim.write_bytes(data)
        try:
            mod.read({**source, "on_error": "skip" if skip else "raise"})
        except DataError as e:
            assert str(e)  # a message (which names the file or the data set)
        finally:
            victim.write_bytes(original)

    check()


KINDS = sorted({get_modality(m).name for m in MODALITIES})


@pytest.mark.parametrize("modality", KINDS)
def test_tokenizers_reject_bad_tensors_cleanly(modality, tiny_bundles) -> None:
    cfg = TokenizerConfig.from_dict(tiny_bundles[modality].meta["tokenizer"])
    tok = build_tokenizer(cfg, 16)

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(shape=st.lists(st.integers(0, 7), min_size=0, max_size=5),
           fill=st.sampled_from([0.0, 1.0, float("nan"), 1e30, -3.0]))
    def check(shape: list[int], fill: float) -> None:
        x = torch.full(shape, fill)
        try:
            tokens, valid = tok(x)
        except ValueError:
            return
        assert tokens.ndim == 3 and valid.shape == tokens.shape[:2]

    check()

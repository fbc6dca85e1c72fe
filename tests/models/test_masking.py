from __future__ import annotations

import pytest
import torch

from omnivec2_pipelines.models.masking import gather_tokens, random_masking


def test_ratio_and_restore() -> None:
    valid = torch.ones(4, 20, dtype=torch.bool)
    m = random_masking(valid, 0.75, torch.Generator().manual_seed(0))
    assert m.ids_keep.shape == (4, 5)
    assert (m.masked.sum(1) == 15).all()
    x = torch.arange(20.0).expand(4, 20).unsqueeze(-1)
    kept = gather_tokens(x, m.ids_keep)
    assert (~m.masked).gather(1, m.ids_keep).all()  # kept ids are exactly the unmasked ones
    assert torch.equal(kept.squeeze(-1).sort(1).values, x.squeeze(-1)[~m.masked].reshape(4, 5))


def test_padding_is_hidden_first_and_seeded() -> None:
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[:, 6:] = False
    m = random_masking(valid, 0.5, torch.Generator().manual_seed(3))
    assert m.ids_keep.shape == (2, 3) and valid.gather(1, m.ids_keep).all()  # 3 of 6 real kept
    assert m.masked[:, 6:].all()
    m2 = random_masking(valid, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(m.ids_keep, m2.ids_keep)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_ratio_out_of_range(ratio: float) -> None:
    with pytest.raises(ValueError, match=r"mask ratio must be in \(0, 1\)"):
        random_masking(torch.ones(1, 4, dtype=torch.bool), ratio)


def test_short_padded_samples_are_masked_per_sample() -> None:
    valid = torch.zeros(3, 48, dtype=torch.bool)
    for i, n_real in enumerate((48, 20, 4)):
        valid[i, :n_real] = True
    m = random_masking(valid, 0.15, torch.Generator().manual_seed(0))
    hidden_real = (m.masked & valid).sum(1).tolist()
    assert hidden_real == [7, 3, 1]  # round(0.15 * n_real), at least one
    assert m.ids_keep.shape[1] == 41  # the longest sample keeps 41; others pad with invalid tokens
    kept_valid = valid.gather(1, m.ids_keep).sum(1).tolist()
    assert kept_valid == [41, 17, 3]

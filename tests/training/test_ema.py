"""The weight average (``trainer.ema_decay``): its arithmetic, what validation sees, what a stage keeps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.ema import WeightAverage, ema_decay_at
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig
from tests.training.test_validation import _multitask, model  # noqa: F401  (the fixture)


def test_decay_warms_up_to_the_configured_value() -> None:
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 10) == pytest.approx(11 / 20)
    assert ema_decay_at(0.9, 1000) == 0.9


def test_average_follows_the_formula_and_skips_frozen_parameters() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    net[1].bias.requires_grad_(False)
    ema = WeightAverage(net, 0.5)
    assert "1.bias" not in ema.names and "0.weight" in ema.names
    expected = {n: p.detach().clone() for n, p in net.named_parameters()}
    for step in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update(step)
        d = ema_decay_at(0.5, step)
        for n, p in net.named_parameters():
            expected[n] = d * expected[n] + (1 - d) * p.detach()
    for n, t in ema.state_dict().items():
        torch.testing.assert_close(t, expected[n])


def test_applied_swaps_in_the_average_and_puts_the_live_weights_back() -> None:
    net = nn.Linear(2, 2)
    ema = WeightAverage(net, 0.9)
    with torch.no_grad():
        net.weight.add_(1.0)
    live = net.weight.detach().clone()
    with ema.applied():
        torch.testing.assert_close(net.weight.detach(), ema.state_dict()["weight"])
        assert not torch.equal(net.weight.detach(), live)
    assert torch.equal(net.weight.detach(), live)


def test_bad_decay_names_the_key() -> None:
    with pytest.raises(ValueError, match="trainer.ema_decay"):
        TrainerConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="trainer.ema_decay"):
        TrainerConfig(ema_decay=-0.1)


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_stage_ends_with_the_average_of_its_live_weights(model, bundles) -> None:
    objective = _multitask(bundles, model)
    live: list[dict[str, torch.Tensor]] = []
    trainer = Trainer(TrainerConfig(steps=6, lr=3e-3, ema_decay=0.7, progress=False, device="cpu"))
    start = _trainable(model)
    trainer.fit(model, objective, "multitask", on_step=lambda s: live.append(_trainable(model)))
    expected = start
    for step, weights in enumerate(live):
        d = ema_decay_at(0.7, step)
        expected = {n: d * expected[n] + (1 - d) * weights[n] for n in expected}
    final = _trainable(model)
    for n in expected:
        torch.testing.assert_close(final[n], expected[n])
    assert not all(torch.equal(final[n], live[-1][n]) for n in final)  # not the last step's weights
    assert trainer.selection["weights"] == "last step (weight average, decay 0.7)"


def test_validation_scores_and_selection_keeps_the_average(model, bundles) -> None:
    objective = _multitask(bundles, model)
    seen: list[dict[str, torch.Tensor]] = []
    live: dict[int, dict[str, torch.Tensor]] = {}

    def validator(m, device):
        seen.append(_trainable(m))
        return [0.2, 0.9, 0.1][len(seen) - 1], {}

    trainer = Trainer(TrainerConfig(steps=12, lr=3e-3, ema_decay=0.8, eval_every=4, progress=False, device="cpu"))
    trainer.fit(model, objective, "multitask", validator=validator,
                on_step=lambda s: live.__setitem__(s + 1, _trainable(model)))
    assert trainer.selection["chosen_step"] == 8
    final = _trainable(model)
    for n in final:  # the weights validated at step 8 (the average), not the live weights of step 8
        assert torch.equal(final[n], seen[1][n]), n
    assert not all(torch.equal(seen[1][n], live[8][n]) for n in final)


class _Killed(Exception):
    pass


def test_resume_continues_the_average(bundles, tiny_model_params, tmp_path) -> None:
    """A stage stopped after step 5 and run again from its resume state (saved every 2 steps) ends with
    the same averaged weights as an uninterrupted run: the average is part of the state."""
    from omnivec2_pipelines.training.resume import ResumeConfig

    cfg = TrainerConfig(steps=9, lr=3e-3, ema_decay=0.95, progress=False, device="cpu")

    def run(resume_dir, kill_at=None):
        torch.manual_seed(0)
        m = stages.build_model(tiny_model_params, bundles)
        objective = _multitask(bundles, m)

        def hook(step):
            if step == kill_at:
                raise _Killed

        Trainer(cfg).fit(m, objective, "multitask", resume=ResumeConfig(resume_dir, 2, "fp"), on_step=hook)
        return _trainable(m)

    straight = run(tmp_path / "a")
    with pytest.raises(_Killed):
        run(tmp_path / "b", kill_at=5)
    resumed = run(tmp_path / "b")
    for n in straight:
        assert torch.equal(straight[n], resumed[n]), n

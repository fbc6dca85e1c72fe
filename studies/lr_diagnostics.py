"""What limits the multitask stage's learning rate: training loss and attention-logit growth per lr.

Trains the multitask stage from a fresh network (the run's `model`, `trainer` and `multitask` blocks, the
cosine schedule of the default stage length, no validation) for ``--steps`` steps at each ``--lr``, and
prints per window of steps the mean training loss and the largest |attention logit| (q·k / sqrt(d), every
attention layer of f, fusion, g, measured every 10th step). Logits that grow into the tens make the softmax
one-hot, the instability ``model.qk_norm`` removes (Wortsman et al. 2023). Results: README, "The study".

Run from the project root after ``kedro run --pipelines sample_data`` and
``kedro run --pipelines ingestion,tokenization``::

    python studies/lr_diagnostics.py --lr 1e-3 2e-3 --steps 300
    python studies/lr_diagnostics.py --lr 2e-3 --steps 300 --model qk_norm=true
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from omnivec2_pipelines.io.datasets import ArrayBundleDataset
from omnivec2_pipelines.models.layers import Attention
from omnivec2_pipelines.training import objectives, stages
from omnivec2_pipelines.training import trainer as trainer_mod

CONF = Path("conf/base")
EVERY = 10  # steps between attention-logit measurements


class _Stop(Exception):
    """Ends the stage after the requested steps (the schedule stays that of the full stage)."""


def _value(text: str) -> object:
    return yaml.safe_load(text)


def run(lr: float, steps: int, model_over: dict, window: int) -> list[dict[str, float]]:
    """One diagnostic run; a row per window of steps."""
    base = yaml.safe_load((CONF / "parameters.yml").read_text())
    stage = yaml.safe_load((CONF / "parameters_multitask.yml").read_text())["multitask"]
    bundles = {m: ArrayBundleDataset(path=f"data/05_model_input/tokenized/{m}").load() for m in base["modalities"]}
    stage = {**stage, "lr": lr}
    trainer = {**base["trainer"], "eval_every": 0, "checkpoint_every": 0, "track": "none", "progress": False,
               "log_every": window}
    start = stages.fresh_checkpoint(bundles, {**base["model"], **model_over}, trainer["seed"])

    state = {"step": 0, "record": False, "logits": {}}

    def hook(module: Attention, args: tuple, kwargs: dict, _out: object) -> None:
        if state["record"]:
            with torch.no_grad():
                top = float(module.logits(args[0], kwargs.get("context")).abs().max())
            state["logits"][state["step"]] = max(top, state["logits"].get(state["step"], 0.0))

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in start.model.modules()
               if isinstance(m, Attention)]
    losses: list[float] = []
    step_fn = objectives.Multitask.step

    def step(self: objectives.Multitask, model: object, ctx: object) -> objectives.StepOutput:
        state["record"] = state["step"] % EVERY == 0
        out = step_fn(self, model, ctx)
        losses.append(float(out.loss.detach()))
        state["step"] += 1
        return out

    def stop(_stage: str, step: int, _loss: float) -> None:
        if step + 1 >= steps:
            raise _Stop

    objectives.Multitask.step = step
    trainer_mod.STEP_CALLBACKS.append(stop)
    try:
        stages.multitask(start, bundles, stage, trainer, None, None)
    except _Stop:
        pass
    finally:
        objectives.Multitask.step = step_fn
        trainer_mod.STEP_CALLBACKS.remove(stop)
        for h in handles:
            h.remove()
    rows = []
    for a in range(0, min(steps, len(losses)), window):
        logits = [v for s, v in state["logits"].items() if a <= s < a + window]
        rows.append({"lr": lr, "steps": f"{a}-{a + window - 1}", "loss": float(np.mean(losses[a:a + window])),
                     "max_logit": max(logits) if logits else float("nan")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 2e-3])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--model", nargs="*", default=[], help="model overrides, e.g. qk_norm=true")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.steps <= 0 or args.window <= 0 or args.steps % args.window:
        parser.error(f"--steps ({args.steps}) must be a positive multiple of --window ({args.window})")
    over = {k: _value(v) for k, v in (item.split("=", 1) for item in args.model)}
    rows = [r for lr in args.lr for r in run(lr, args.steps, over, args.window)]
    print(f"model overrides: {over or 'none'}")
    print(f"{'lr':>8} {'steps':>10} {'train loss':>11} {'max |logit|':>12}")
    for r in rows:
        print(f"{r['lr']:8.0e} {r['steps']:>10} {r['loss']:11.3f} {r['max_logit']:12.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

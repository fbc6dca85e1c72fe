"""Is a task short of steps or over-fitting? Train it alone from a fresh network, score train and test.

Trains the multitask stage on one (modality, task) from a freshly initialised network (the run's `model`,
`trainer` and `multitask` blocks, the modality's own block; single stream, as the study's `single_task`),
for each ``--steps`` value, and prints one JSON line per run: the test metrics, the same metrics on the task's
own train rows, the chosen (best val) step and the seconds. Test close to train and both low: the network is
short of steps (it under-fits); train near perfect and test low: it over-fits, or the test rows differ from
the train rows (a spatially disjoint test area). Results: README, "The study" (2026-12-06 evening).

Run from the project root after ``kedro run --pipelines sample_data`` and
``kedro run --pipelines ingestion,tokenization``::

    python studies/task_alone.py --modality xray --steps 600 1800
    python studies/task_alone.py --modality hyperspectral --steps 700 1400 --batch-size 32
    python studies/task_alone.py --modality xray --set multitask.label_smoothing=0 --set model.drop_path=0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from omnivec2_pipelines.io.datasets import ArrayBundleDataset
from omnivec2_pipelines.training import stages
from omnivec2_pipelines.training.evaluation import evaluate

CONF = Path("conf/base")


def _params() -> dict:
    """The base parameters: every ``parameters*.yml`` and the modality blocks, merged."""
    files = sorted(CONF.glob("parameters*.yml")) + sorted((CONF / "parameters_modalities").glob("*.yml"))
    out: dict = {}
    for f in files:
        out.update(yaml.safe_load(f.read_text()) or {})
    return out


def _override(p: dict, assignment: str) -> None:
    """Apply ``dotted.key=value`` (the value read as YAML) to ``p`` in place."""
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set takes dotted.key=value, got {assignment!r}")
    *path, last = key.split(".")
    node = p
    for part in path:
        if not isinstance(node.get(part), dict):
            raise SystemExit(f"--set {assignment}: {part!r} is not a block of the parameters")
        node = node[part]
    node[last] = yaml.safe_load(value)


def run(modality: str, task: str, steps: int, batch_size: int, seed: int, overrides: list[str]) -> dict:
    """One run of ``steps`` steps; its train and test metrics (flat ``<modality>.<task>.<metric>`` keys)."""
    p = _params()
    for assignment in overrides:
        _override(p, assignment)
    bundles = {modality: ArrayBundleDataset(path=f"data/05_model_input/tokenized/{modality}").load()}
    if task not in bundles[modality].tasks:
        raise SystemExit(f"{modality} has tasks {sorted(bundles[modality].tasks)}, not {task!r}")
    start = stages.fresh_checkpoint(bundles, p["model"], seed)
    stage = {**p["multitask"], "tasks": {modality: [task]}, "steps": steps, "batch_size": batch_size,
             "seed": seed, "pairs_per_step": 1}
    trainer = {**p["trainer"], "track": "none", "progress": False, "checkpoint_every": 0}
    t0 = time.perf_counter()
    ckpt, _ = stages.multitask(start, bundles, stage, trainer, {modality: p[modality]}, p["model"])
    seconds = time.perf_counter() - t0
    out = {"modality": modality, "task": task, "steps": steps, "batch_size": batch_size, "seed": seed,
           "seconds": round(seconds, 1), "chosen_step": ckpt.meta.get("training", {}).get("chosen_step")}
    for split in ("test", "train"):
        metrics = evaluate(ckpt.model, bundles, split, device="cpu", baselines=False)
        out.update({f"{split}.{k.split('.', 2)[2]}": round(v, 4) for k, v in metrics.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modality", required=True)
    ap.add_argument("--task", default="classification")
    ap.add_argument("--steps", type=int, nargs="+", default=[600])
    ap.add_argument("--batch-size", type=int, default=32, help="32: a task's share of the default batch of 64")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter, e.g. multitask.label_smoothing=0 (repeatable)")
    a = ap.parse_args()
    for steps in a.steps:
        out = run(a.modality, a.task, steps, a.batch_size, a.seed, a.set)
        print(json.dumps({**out, "set": a.set} if a.set else out), flush=True)


if __name__ == "__main__":
    main()

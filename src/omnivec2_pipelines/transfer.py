"""Leave-one-modality-out transfer: is the body trained on the other modalities worth anything on a new one?

For every modality in ``transfer.hold_out``, the method's stages (``transfer.stages``, at
``transfer.budget`` times their steps, like the study) train on every *other* enabled modality;
then the fine-tuning block (:mod:`~omnivec2_pipelines.training.finetune`, with ``transfer.finetune``
over ``finetune``) trains the held-out modality's tasks at each labelled fraction, from that
checkpoint and from scratch with the same budget, beside the classical baseline fitted on the same
labelled rows. Trained stages are cached under ``transfer.cache_dir`` by the study's keys (data,
model, trainer, chain of stages), so running it again only trains what changed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Mapping

from omnivec2_pipelines.params_schema import STAGES, check_keys

if TYPE_CHECKING:
    from omnivec2_pipelines.modalities.base import ArrayBundle

log = logging.getLogger(__name__)

TRANSFER_KEYS = ("hold_out", "stages", "budget", "seed", "cache_dir", "finetune")


def validate_transfer_params(transfer: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``transfer`` block, checked against the enabled modalities (names the key); returns it with defaults."""
    from omnivec2_pipelines.training.params import finetune_spec

    block = dict(transfer or {})
    check_keys(block, TRANSFER_KEYS, "transfer")
    enabled = list(params.get("modalities") or [])
    hold = block.get("hold_out")
    if not isinstance(hold, list) or not hold or not all(isinstance(m, str) for m in hold):
        raise ValueError(f"transfer.hold_out must be a non-empty list of enabled modalities, got {hold!r}")
    for m in hold:
        if m not in enabled:
            raise ValueError(f"transfer.hold_out names {m!r}, which is not enabled; enabled: {enabled}")
    if len(enabled) < 3:
        raise ValueError(f"transfer needs at least three enabled modalities (two to train the method on once one is "
                         f"held out), got {enabled}")
    stages = block.get("stages", list(STAGES))
    if not isinstance(stages, list) or not stages or any(s not in STAGES for s in stages) or \
            stages != [s for s in STAGES if s in stages] or stages[-1] != STAGES[-1]:
        raise ValueError(f"transfer.stages must be stages of {list(STAGES)} in that order, ending with "
                         f"{STAGES[-1]}, got {stages!r}")
    budget = block.get("budget", 1.0)
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or budget <= 0:
        raise ValueError(f"transfer.budget must be a positive number, got {budget!r}")
    seed = block.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"transfer.seed must be an integer, got {seed!r}")
    over = block.get("finetune") or {}
    if not isinstance(over, Mapping):
        raise ValueError(f"transfer.finetune must be a mapping of finetune keys, got {over!r}")
    for key in ("init", "modalities", "data", "tasks"):
        if key in over:
            raise ValueError(f"transfer.finetune.{key} is set by the transfer itself (each held-out modality's "
                             f"tasks, from the checkpoint trained without it); remove it")
    finetune_spec({**(params.get("finetune") or {}), **over, "modalities": hold[:1], "data": {}, "init": None},
                  params.get("trainer") or {}, hold[:1])
    return {"hold_out": hold, "stages": stages, "budget": float(budget), "seed": seed,
            "cache_dir": str(block.get("cache_dir", "data/07_model_output/transfer")), "finetune": dict(over)}


def run_transfer(transfer: Mapping[str, Any], params: Mapping[str, Any], bundles: Mapping[str, ArrayBundle],
                 pipelines_for: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Every held-out modality: train the method without it, fine-tune on it; ``transfer.json``'s document,
    the Markdown report and the figures.

    Args:
        transfer: The ``transfer`` block.
        params: All run parameters.
        bundles: Tokenized data of every enabled modality.
        pipelines_for: ``modalities -> {name: Pipeline}`` (the stages and ``evaluation`` for those modalities).
    """
    from omnivec2_pipelines import reporting
    from omnivec2_pipelines.study import StudyRunner, StudySpec, Variant, run_params
    from omnivec2_pipelines.training import finetune

    block = validate_transfer_params(transfer, params)
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"hold_out": {}, "budget": block["budget"], "stages": block["stages"],
                           "seed": block["seed"]}
    variant = Variant("without", tuple(block["stages"]))
    for held in block["hold_out"]:
        rest = {m: b for m, b in bundles.items() if m != held}
        spec = StudySpec(variants={"without": variant}, seeds=(block["seed"],), budget=block["budget"],
                         cache_dir=block["cache_dir"])
        runner = StudyRunner(spec, params, rest, pipelines_for(sorted(rest)))
        p = run_params(params, variant, block["seed"], block["budget"])
        p["trainer"]["resume_dir"] = f"{block['cache_dir']}/.resume"
        log.info("transfer: the method without %s (%s at budget %g)", held, "+".join(block["stages"]),
                 block["budget"])
        ckpt, used = runner._train_chain(variant.stages, p, f"without_{held}")
        ft_params = {**(params.get("finetune") or {}), **block["finetune"], "modalities": [held], "data": {},
                     "init": None, "tasks": "all", "track": "none"}  # runs of the transfer, not experiments
        _, _, summary = finetune.finetune_stage(ckpt, {held: bundles[held]}, ft_params,
                                                {**p["trainer"], "seed": block["seed"]},
                                                {held: {"augment": (params.get(held) or {}).get("augment")}})
        doc["hold_out"][held] = {**summary, "trained_on": sorted(rest), "stages_trained": used}
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    runs = [r for h in doc["hold_out"].values() for r in h["runs"]]
    md = transfer_markdown(doc, reporting.finetune_markdown({"runs": runs}))
    return doc, md, reporting.finetune_figures({"runs": runs})


def transfer_markdown(doc: Mapping[str, Any], tables: str) -> str:
    """The report: what was held out and trained on, then one label-efficiency table per task, and whether
    the body trained without the modality beats scratch at the smallest fraction."""
    lines = ["# Leave-one-modality-out transfer", "",
             f"The method ({' → '.join(doc['stages'])}, budget {doc['budget']:g}, seed {doc['seed']}) was trained "
             "without each held-out modality, then fine-tuned on it (`pretrained`) and compared with the same "
             "fine-tuning from a fresh network (`scratch`).", ""]
    for held, h in doc["hold_out"].items():
        by_task: dict[str, dict[tuple[float, str], Any]] = {}
        for r in h["runs"]:
            by_task.setdefault(r["task"], {})[(r["fraction"], r["start"])] = r
        for task, runs in sorted(by_task.items()):
            small = min(f for f, _ in runs)
            pre, scr = runs.get((small, "pretrained")), runs.get((small, "scratch"))
            if pre and scr:
                main = pre["main_metric"]
                a, b = pre["model"].get(main), scr["model"].get(main)
                ahead = (a < b) if pre["direction"] == "min" else (a > b)
                lines.append(f"- **{task}** held out (trained on {len(h['trained_on'])} other modalities): at "
                             f"{small:g} of the labels the pretrained body {'beats' if ahead else 'does not beat'} "
                             f"scratch ({main} {a:.4g} vs {b:.4g}).")
    lines += ["", tables.replace("# Fine-tuning\n", "", 1)]
    return "\n".join(lines)

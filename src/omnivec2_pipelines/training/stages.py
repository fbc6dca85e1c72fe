"""The three OmniVec2 training stages as plain functions (pure torch; Kedro nodes call these).

Each takes ``modality_params``, ``{modality: {key: value}}``: the keys of every modality's parameter block
that it reads (``mask_ratio`` for pretraining, ``augment`` for multitask); the stage's own ``mask_ratio`` /
``augment`` override them.

Where a stage starts (:func:`start_point`): stage 1 from a fresh network, the others from the previous
stage's checkpoint; ``<stage>.init`` names a checkpoint to start from instead, and ``resume_from``
(``<stage>.resume_from`` or ``trainer.resume_from``) a finished run of the same stage to continue for
more steps, from the training state saved beside its checkpoint. The checkpoint's meta records where
the stage started, what it trained on and with what (:func:`checkpoint_meta`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Mapping

import pandas as pd
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2, TokenizerConfig, head_key
from omnivec2_pipelines.params_schema import STAGES
from omnivec2_pipelines.training import augment, distributed, tracking
from omnivec2_pipelines.training.checkpoint import (
    REGULARISATION,
    Checkpoint,
    load_init,
    load_training_state,
    project_provenance,
    resolve_checkpoint_dir,
    weights_digest,
)
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import MaskedPaired, MaskedUnimodal, Multitask, Objective, TaskData
from omnivec2_pipelines.training.params import (  # noqa: F401  (validate_stage_params: the stages' public check)
    _check_stage_params,
    _check_world,
    _mask_ratios,
    check_body_lr_scale,
    check_loss_weights,
    check_start,
    modality_augment,
    stage_contrastive,
    stage_sampling,
    validate_stage_params,
)
from omnivec2_pipelines.training.resume import ResumeConfig, TrainingState, fingerprint
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig
from omnivec2_pipelines.training.validation import ReconstructionValidator, TaskValidator, Validator, val_rows

log = logging.getLogger(__name__)


def _data_meta(bundles: Mapping[str, ArrayBundle]) -> dict[str, Any]:
    return {m: b.meta for m, b in bundles.items()}


def data_digests(bundles: Mapping[str, ArrayBundle]) -> dict[str, str]:
    """``{modality: SHA-256 of its tokenized arrays and meta}`` (cheap for data read from disk: a sharded
    array's content hash was taken when it was written)."""
    return {m: fingerprint(b.meta, sorted(b.arrays.items())) for m, b in sorted(bundles.items())}


def build_model(model_params: Mapping[str, Any], bundles: Mapping[str, ArrayBundle]) -> OmniVec2:
    """A fresh model with one tokenizer per modality, shaped by each bundle's metadata."""
    params = {k: v for k, v in dict(model_params).items() if k not in ("tokenizers", "heads")}
    try:
        cfg = ModelConfig.from_dict(params)
    except TypeError as e:
        raise ValueError(f"model parameters: {e}") from e
    model = OmniVec2(cfg)
    attach_modalities(model, bundles)
    return model


def attach_modalities(model: OmniVec2, bundles: Mapping[str, ArrayBundle], init: str = "") -> None:
    """Add tokenizers for new modalities; refuse data that no longer fits an existing tokenizer.

    Args:
        model: The starting network.
        bundles: The run's tokenized data.
        init: The parameter that named the checkpoint (``multitask.init``), for the message; "": none did.
    """
    for m, b in bundles.items():
        tcfg = TokenizerConfig.from_dict(b.meta["tokenizer"])
        if m not in model.tokenizers:
            model.add_modality(m, tcfg)
            continue
        if model.cfg.tokenizers[m] == tcfg:
            continue
        if init:
            raise ValueError(f"{init}: the checkpoint's {m} tokenizer was built for {model.cfg.tokenizers[m]} but "
                             f"the tokenized data needs {tcfg}; tokenize {m} as the checkpoint's data was "
                             f"({m}.tokenization), or start from a checkpoint trained on this tokenization")
        raise ValueError(f"the checkpoint's {m} tokenizer was built for {model.cfg.tokenizers[m]} but the "
                         f"tokenized data now needs {tcfg}; re-run pretrain_unimodal after changing "
                         f"{m}.tokenization")


@dataclass
class Start:
    """What a stage starts from.

    Attributes:
        model: The network, with a tokenizer for every modality of the run.
        meta: What it is, recorded as the checkpoint's ``meta["init"]``: ``kind`` (``fresh``,
            ``previous_stage``, ``init``, ``resume_from``), and the path, stage and weights digest of the
            checkpoint it came from.
        key: The parameter that named that checkpoint (``multitask.init``), "" when none did.
        source_meta: That checkpoint's own meta.
        state: With ``resume_from``: the training state of the finished run, continued.
    """

    model: OmniVec2
    meta: dict[str, Any]
    key: str = ""
    source_meta: dict[str, Any] = field(default_factory=dict)
    state: TrainingState | None = None


def _with_regularisation(model: OmniVec2, model_params: Mapping[str, Any] | None, key: str) -> OmniVec2:
    """The starting network with the run's ``model.dropout`` / ``model.drop_path`` (they shape no weights)."""
    if model_params is None:
        return model
    run = ModelConfig.from_dict({k: v for k, v in dict(model_params).items() if k in REGULARISATION})
    changes = {k: getattr(run, k) for k in REGULARISATION if getattr(run, k) != getattr(model.cfg, k)}
    if not changes:
        return model
    log.info("%s: training with the run's %s (the checkpoint had %s)", key,
             ", ".join(f"model.{k}={v}" for k, v in changes.items()),
             ", ".join(f"{k}={getattr(model.cfg, k)}" for k in changes))
    rebuilt = OmniVec2(ModelConfig.from_dict({**model.cfg.to_dict(), **changes}))
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt


def start_point(stage: str, previous: Checkpoint | None, bundles: Mapping[str, ArrayBundle],
                model_params: Mapping[str, Any] | None, stage_params: Mapping[str, Any],
                trainer_params: Mapping[str, Any], seed: int) -> Start:
    """The network a stage trains, and where it came from.

    ``<stage>.init`` / ``resume_from`` (checked first, see :func:`~omnivec2_pipelines.training.params.check_start`)
    name a checkpoint to start from; else stage 1 builds a fresh network from ``model_params`` and the
    others take ``previous``. Tokenizers of modalities the network lacks start from ``seed``.

    Args:
        stage: The stage.
        previous: The previous stage's checkpoint (None for stage 1, or when a parameter names the start).
        bundles: The run's tokenized data.
        model_params: The run's ``params:model`` (None: a checkpoint's architecture is not checked).
        stage_params: The stage's block.
        trainer_params: The ``trainer`` block.
        seed: Seeds the weights of a fresh network and of new tokenizers.

    Raises:
        FileNotFoundError / ValueError: naming the parameter, when the checkpoint is missing or does not fit.
    """
    spec = check_start(stage, stage_params, trainer_params, model_params)
    if spec is None and previous is None:
        if stage != STAGES[0]:
            raise ValueError(f"{stage} starts from the previous stage's checkpoint or from {stage}.init; "
                             f"neither was given")
        torch.manual_seed(seed)  # initial weights depend only on the seed
        return Start(build_model(model_params or {}, bundles), {"kind": "fresh", "seed": seed})
    state = None
    if spec is None:
        model, key, source = previous.model, "", previous.meta
        meta = {"kind": "previous_stage", "stage": source.get("stage"), "weights_digest": weights_digest(model)}
    else:
        kind, path, key = spec
        path = resolve_checkpoint_dir(path)  # a stage's folder of versions: its newest
        ck = load_init(path, key)
        source = ck.meta
        meta = {"kind": kind, "path": str(Path(path).resolve()), "stage": source.get("stage"),
                "weights_digest": weights_digest(ck.model)}
        if kind == "resume_from":
            state = load_training_state(path, key)
            meta["steps_run"] = state.step
            log.info("%s: continuing the finished run in %s (%s) from step %d", stage, path, key, state.step)
        else:
            log.info("%s: starting from the checkpoint %s (%s)%s", stage, path, key,
                     ", not from the previous stage's" if stage != STAGES[0] else "")
        model = _with_regularisation(ck.model, model_params, key)
    torch.manual_seed(seed)  # new tokenizers (and heads) start from seeded weights
    attach_modalities(model, bundles, key)
    return Start(model, meta, key, source, state)


def _check_continuable(stage: str, start: Start, objective: Objective, digests: Mapping[str, str]) -> None:
    """A continued run trains what the saved run trained: the same parameters and batch sources, as many rows."""
    state, key = start.state, start.key
    saved, now = set(state.weights()), set(start.model.state_dict())
    if saved != now:
        def parts(names: set[str]) -> list[str]:
            return sorted({".".join(n.split(".")[:2]) for n in names})

        raise ValueError(f"{key}: this run's network differs from the saved run's (new: {parts(now - saved)}, "
                         f"gone: {parts(saved - now)}); continue with the same modalities and tasks")
    sources, current = state.doc["objective"], objective.batch_sources()
    if set(sources) != set(current):
        raise ValueError(f"{key}: the saved run drew batches from {sorted(sources)}, this run would draw from "
                         f"{sorted(current)}; continue with the same modalities and tasks")
    for name, src in sorted(current.items()):
        if len(sources[name]["order"]) != len(src):
            raise ValueError(f"{key}: {name} has {len(src)} rows, the saved run's had {len(sources[name]['order'])}; "
                             f"continue on the same data, or start a new run from the checkpoint with {stage}.init")
    changed = sorted(m for m, d in (start.source_meta.get("data_digests") or {}).items()
                     if m in digests and digests[m] != d)
    if changed:
        log.warning("%s: the tokenized data of %s changed since the saved run (same row counts); continuing anyway",
                    key, changed)


def _pretrain_sources(bundles: Mapping[str, ArrayBundle], seed: int) -> dict[str, BatchSource]:
    out = {}
    for i, (m, b) in enumerate(sorted(bundles.items())):
        key = b.meta.get("pretrain_input_key", "x")
        out[m] = BatchSource(b.get("train", key), None, seed + i, f"{m}.train.{key}")
    return out


_NOT_IN_FINGERPRINT = {"progress", "log_every", "checkpoint_every", "resume_dir", "device", "compile", "pin_memory",
                       "rdzv_endpoint", "rdzv_backend", "rdzv_id", "rdzv_timeout", "max_restarts", "track",
                       "track_dir"}


def resume_config(stage: str, tcfg: TrainerConfig, stage_params: Mapping[str, Any], model: OmniVec2,
                  bundles: Mapping[str, ArrayBundle], digests: Mapping[str, str] | None = None) -> ResumeConfig | None:
    """Resume settings of a stage, fingerprinted by its parameters, initial weights and input data.

    ``digests``: :func:`data_digests` of ``bundles``, when already computed.
    """
    if not tcfg.resume_dir or tcfg.checkpoint_every <= 0:
        return None
    params = {"stage": stage, "stage_params": dict(stage_params), "model": model.cfg.to_dict(),
              "trainer": {k: v for k, v in asdict(tcfg).items() if k not in _NOT_IN_FINGERPRINT},
              "data": dict(digests if digests is not None else data_digests(bundles))}
    return ResumeConfig(Path(tcfg.resume_dir) / stage, tcfg.checkpoint_every,
                        fingerprint(params, sorted(model.state_dict().items())))


def _fingerprinted(stage_params: Mapping[str, Any],
                   modality_params: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Any]:
    """The stage's parameters and the modality keys it read, for the resume fingerprint."""
    if not modality_params:
        return stage_params
    return {**stage_params, "modality_params": {m: dict(v) for m, v in sorted(modality_params.items())}}


def _tracking(stage: str, tcfg: TrainerConfig, stage_params: Mapping[str, Any]) -> list[tracking.TrainingCallback]:
    """This rank's experiment-tracking callbacks (``trainer.track``), logging the stage's block and trainer
    settings as the run's parameters."""
    params = {"stage": stage, stage: dict(stage_params), "trainer": asdict(tcfg)}
    return tracking.stage_callbacks(tcfg.track, tcfg.track_dir, stage, params, tcfg.log_every)


def _fit_worker(tcfg: TrainerConfig, model: OmniVec2, objective: Objective, stage: str,
                resume: ResumeConfig | None, validator: Validator | None, continue_from: TrainingState | None,
                stage_params: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any], tuple[dict[str, Any], dict[str, Any]] | None]:
    """One rank of a data-parallel stage: train, hand back the weights (as numpy), history, selection and
    final training state (its tensors as numpy)."""
    # tensors reach the workers in shared memory: every rank needs its own copy of the weights it updates
    model = copy.deepcopy(model)
    trainer = Trainer(tcfg)
    history = trainer.fit(model, objective, stage, resume, validator=validator, continue_from=continue_from,
                          callbacks=_tracking(stage, tcfg, stage_params or {}))
    final = trainer.final_state
    return ({k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, history, trainer.selection,
            None if final is None else ({k: v.numpy() for k, v in final.tensors.items()}, final.doc))


def checkpoint_meta(stage: str, model: OmniVec2, tcfg: TrainerConfig, bundles: Mapping[str, ArrayBundle],
                    digests: Mapping[str, str], selection: Mapping[str, Any], start: Start,
                    steps_run: int) -> dict[str, Any]:
    """What a stage's checkpoint records, so that a model trained from it can be traced back.

    Keys: ``stage``; ``init`` (where it started, :attr:`Start.meta`); ``training`` (``steps``, ``steps_run``,
    ``lr``, ``seed`` and the model selection: ``chosen_step``, ``best_step``, ``val_score``, ``stopped``, ...);
    ``modalities``; ``tasks`` (``{"<modality>.<task>": {kind, out_dim, class_names}}`` of its heads);
    ``data`` (each bundle's meta); ``data_digests``; ``weights_digest``; ``project`` (package version, git
    revision, None where unknown).
    """
    tasks = {}
    for h in sorted(model.cfg.heads.values(), key=lambda h: (h.modality, h.task)):
        spec = (bundles[h.modality].meta.get("tasks") or {}).get(h.task, {}) if h.modality in bundles else {}
        tasks[f"{h.modality}.{h.task}"] = {"kind": h.kind, "out_dim": h.out_dim,
                                           "class_names": list(spec.get("class_names") or []) or None}
    return {"stage": stage, "init": start.meta,
            "training": {"steps": tcfg.steps, "steps_run": steps_run, "lr": tcfg.lr, "seed": tcfg.seed, **selection},
            "modalities": sorted(bundles), "tasks": tasks, "data": _data_meta(bundles), "data_digests": dict(digests),
            "weights_digest": weights_digest(model), "project": project_provenance()}


def _run(stage: str, start: Start | OmniVec2, objective: Objective, tcfg: TrainerConfig,
         bundles: Mapping[str, ArrayBundle], stage_params: Mapping[str, Any],
         validator: Validator | None = None) -> tuple[Checkpoint, pd.DataFrame]:
    """Train in this process, or on ``trainer.nproc_per_node x trainer.nnodes`` data-parallel ranks.

    ``start``: from :func:`start_point`, or a network (recorded as ``{"kind": "given", "weights_digest": ...}``).
    The checkpoint carries :func:`checkpoint_meta` and the training state after the last step.
    """
    if isinstance(start, OmniVec2):
        start = Start(start, {"kind": "given", "weights_digest": weights_digest(start)})
    model = start.model
    _check_world(stage, stage_params, tcfg)
    digests = data_digests(bundles)
    if start.state is not None:
        _check_continuable(stage, start, objective, digests)
    resume = resume_config(stage, tcfg, stage_params, model, bundles, digests)
    if tcfg.world_size > 1:
        weights, history, selection, final = distributed.launch(
            _fit_worker, (tcfg, model.cpu(), objective, stage, resume, validator, start.state, stage_params),
            tcfg.launch_spec(), stage)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        final_state = None if final is None else TrainingState({k: torch.from_numpy(v) for k, v in final[0].items()},
                                                               final[1])
    else:
        trainer = Trainer(tcfg)
        history = trainer.fit(model, objective, stage, resume, validator=validator, continue_from=start.state,
                              callbacks=_tracking(stage, tcfg, stage_params))
        selection, final_state = trainer.selection, trainer.final_state
    model.cpu()
    meta = checkpoint_meta(stage, model, tcfg, bundles, digests, selection, start, len(history))
    return Checkpoint(model, meta, final_state), history


def _reconstruction_validator(stage: str, bundles: Mapping[str, ArrayBundle], ratios: Mapping[str, float],
                              tcfg: TrainerConfig, norm_target: bool) -> Validator | None:
    """Masked reconstruction on the val rows of every modality that has some (None when validation is off)."""
    if tcfg.eval_every <= 0:
        return None
    inputs = {}
    for m, b in sorted(bundles.items()):
        x = val_rows(b, b.meta.get("pretrain_input_key", "x"), tcfg.eval_samples)
        if x is None:
            log.warning("%s: %s has no val rows, so it is not validated during training (give the data set a "
                        "val split, or %s.source.val_fraction > 0)", stage, m, m)
        else:
            inputs[m] = x
    return ReconstructionValidator(inputs, ratios, norm_target, tcfg.seed) if inputs else None


def pretrain_unimodal(bundles: Mapping[str, ArrayBundle], model_params: Mapping[str, Any],
                      stage_params: Mapping[str, Any], trainer_params: Mapping[str, Any],
                      modality_params: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 1: masked token reconstruction, one modality per step, from a fresh model (or ``init``)."""
    _check_stage_params("pretrain_unimodal", stage_params)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    ratios = _mask_ratios("pretrain_unimodal", stage_params, sorted(bundles), modality_params)
    start = start_point("pretrain_unimodal", None, bundles, model_params, stage_params, trainer_params, tcfg.seed)
    norm = stage_params.get("norm_target", True)
    obj = MaskedUnimodal(_pretrain_sources(bundles, tcfg.seed), ratios, stage_params.get("batch_size", 64), norm,
                         *stage_sampling("pretrain_unimodal", stage_params),
                         *stage_contrastive("pretrain_unimodal", stage_params))
    return _run("pretrain_unimodal", start, obj, tcfg, bundles, _fingerprinted(stage_params, modality_params),
                _reconstruction_validator("pretrain_unimodal", bundles, ratios, tcfg, norm))


def fresh_checkpoint(bundles: Mapping[str, ArrayBundle], model_params: Mapping[str, Any], seed: int) -> Checkpoint:
    """A freshly initialised network (weights from ``seed``), for stages run without pretraining."""
    torch.manual_seed(seed)
    return Checkpoint(build_model(model_params, bundles), {"stage": "init", "data": _data_meta(bundles)})


def pretrain_paired(previous: Checkpoint | None, bundles: Mapping[str, ArrayBundle], stage_params: Mapping[str, Any],
                    trainer_params: Mapping[str, Any], modality_params: Mapping[str, Mapping[str, Any]] | None = None,
                    model_params: Mapping[str, Any] | None = None) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 2: from stage 1's checkpoint (or ``init``), two modalities per step, fused, both reconstructed.

    ``model_params``: the run's ``params:model``, to check a checkpoint named by ``init`` / ``resume_from``.
    """
    _check_stage_params("pretrain_paired", stage_params)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    ratios = _mask_ratios("pretrain_paired", stage_params, sorted(bundles), modality_params)
    start = start_point("pretrain_paired", previous, bundles, model_params, stage_params, trainer_params, tcfg.seed)
    norm = stage_params.get("norm_target", True)
    obj = MaskedPaired(_pretrain_sources(bundles, tcfg.seed), ratios, stage_params.get("batch_size", 64), norm,
                       *stage_sampling("pretrain_paired", stage_params))
    return _run("pretrain_paired", start, obj, tcfg, bundles, _fingerprinted(stage_params, modality_params),
                _reconstruction_validator("pretrain_paired", bundles, ratios, tcfg, norm))


#: Parts of the network that belong to no modality or task: the shared body.
BODY_PREFIXES = ("f.", "reduce.", "fusion.", "g.")


def body_parameters(model: OmniVec2, known: Collection[str] | None = None) -> list[str]:
    """Names of the shared body's parameters: f, the reduction, fusion, g, and the tokenizers and modality
    embeddings of the ``known`` modalities (None: every modality the model has); not heads, not decoders."""
    known = set(model.tokenizers) if known is None else set(known)
    return [n for n, _ in model.named_parameters()
            if n.startswith(BODY_PREFIXES) or (n.split(".")[0] in ("tokenizers", "modality_embed")
                                               and n.split(".")[1] in known)]


def body_lr_scales(model: OmniVec2, scale: float) -> dict[str, float]:
    """``{parameter name: scale}`` over :func:`body_parameters` ({} for scale 1: nothing changes)."""
    return {} if scale == 1.0 else dict.fromkeys(body_parameters(model), scale)


def select_tasks(bundles: Mapping[str, ArrayBundle], spec: Any) -> list[tuple[str, str]]:
    """Resolve ``multitask.tasks`` (``"all"`` or ``{modality: [task, ...]}``) against the data."""
    if spec in (None, "all"):
        return [(m, t) for m, b in sorted(bundles.items()) for t in sorted(b.tasks)]
    if not isinstance(spec, Mapping):
        raise ValueError(f"multitask.tasks must be 'all' or a mapping modality -> [task, ...], got {spec!r}")
    out = []
    for m, tasks in spec.items():
        if m not in bundles:
            raise ValueError(f"multitask.tasks names modality {m!r}, which is not enabled; enabled: {sorted(bundles)}")
        for t in [tasks] if isinstance(tasks, str) else tasks:
            if t not in bundles[m].tasks:
                raise ValueError(f"multitask.tasks.{m}: unknown task {t!r}; {m} has {sorted(bundles[m].tasks)}")
            out.append((m, t))
    return out


def multitask(previous: Checkpoint | None, bundles: Mapping[str, ArrayBundle], stage_params: Mapping[str, Any],
              trainer_params: Mapping[str, Any], modality_params: Mapping[str, Mapping[str, Any]] | None = None,
              model_params: Mapping[str, Any] | None = None) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 3: from stage 2's checkpoint (or ``init``), two (modality, task) pairs per step, summed losses.

    ``model_params``: the run's ``params:model``, to check a checkpoint named by ``init`` / ``resume_from``.
    """
    _check_stage_params("multitask", stage_params)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    start = start_point("multitask", previous, bundles, model_params, stage_params, trainer_params, tcfg.seed)
    model = start.model  # new heads start from seeded weights, after the new tokenizers
    tasks = []
    pairs = select_tasks(bundles, stage_params.get("tasks", "all"))
    aug = modality_augment(stage_params, modality_params, list(bundles))
    weights = check_loss_weights(stage_params.get("loss_weights"), {m: list(b.tasks) for m, b in bundles.items()})
    for i, (m, t) in enumerate(pairs):
        spec = bundles[m].tasks[t]
        if head_key(m, t) not in model.heads:
            model.add_head(HeadConfig(m, t, spec.kind, spec.out_dim))
        src = BatchSource(bundles[m].get("train", spec.input_key), bundles[m].get("train", spec.target_key),
                          tcfg.seed + i, f"{m}.train.{spec.input_key}")
        tasks.append(TaskData(m, t, spec.kind, src, augment.for_task(aug.get(m, {}), spec.kind),
                              weights.get(f"{m}.{t}", 1.0)))
    obj = Multitask(tasks, stage_params.get("batch_size", 64), stage_params.get("single_stream", 0.0),
                    stage_params.get("label_smoothing", 0.0), *stage_sampling("multitask", stage_params),
                    lr_scales=body_lr_scales(model, check_body_lr_scale(stage_params.get("body_lr_scale", 1.0))),
                    pairs_per_step=stage_params.get("pairs_per_step", 1),
                    focus=stage_params.get("sampling_focus", 0.0),
                    patience=stage_params.get("sampling_patience", 0),
                    patience_factor=stage_params.get("sampling_patience_factor", 0.25))
    log.info("multitask: probability that each task takes part in a step %s", obj.sampler.describe())
    validator = TaskValidator.from_bundles(pairs, bundles, tcfg.eval_samples, tcfg.seed) if tcfg.eval_every else None
    return _run("multitask", start, obj, tcfg, bundles, _fingerprinted(stage_params, modality_params), validator)

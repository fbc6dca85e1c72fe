"""The three OmniVec2 training stages as plain functions (pure torch; Kedro nodes call these).

Each takes ``modality_params``, ``{modality: {key: value}}``: the keys of every modality's parameter block
that it reads (``mask_ratio`` for pretraining, ``augment`` for multitask); the stage's own ``mask_ratio`` /
``augment`` override them.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.models import HeadConfig, ModelConfig, OmniVec2, TokenizerConfig, head_key
from omnivec2_pipelines.training import augment, distributed
from omnivec2_pipelines.training.checkpoint import Checkpoint
from omnivec2_pipelines.training.data import BatchSource
from omnivec2_pipelines.training.objectives import MaskedPaired, MaskedUnimodal, Multitask, Objective, TaskData
from omnivec2_pipelines.training.params import (  # noqa: F401  (validate_stage_params: the stages' public check)
    _check_stage_params,
    _check_world,
    _mask_ratios,
    check_loss_weights,
    modality_augment,
    stage_sampling,
    validate_stage_params,
)
from omnivec2_pipelines.training.resume import ResumeConfig, fingerprint
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig
from omnivec2_pipelines.training.validation import ReconstructionValidator, TaskValidator, Validator, val_rows

log = logging.getLogger(__name__)

def _data_meta(bundles: Mapping[str, ArrayBundle]) -> dict[str, Any]:
    return {m: b.meta for m, b in bundles.items()}


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


def attach_modalities(model: OmniVec2, bundles: Mapping[str, ArrayBundle]) -> None:
    """Add tokenizers for new modalities; refuse data that no longer fits an existing tokenizer."""
    for m, b in bundles.items():
        tcfg = TokenizerConfig.from_dict(b.meta["tokenizer"])
        if m not in model.tokenizers:
            model.add_modality(m, tcfg)
            continue
        if model.cfg.tokenizers[m] != tcfg:
            raise ValueError(f"the checkpoint's {m} tokenizer was built for {model.cfg.tokenizers[m]} but the "
                             f"tokenized data now needs {tcfg}; re-run pretrain_unimodal after changing "
                             f"{m}.tokenization")


def _pretrain_sources(bundles: Mapping[str, ArrayBundle], seed: int) -> dict[str, BatchSource]:
    out = {}
    for i, (m, b) in enumerate(sorted(bundles.items())):
        key = b.meta.get("pretrain_input_key", "x")
        out[m] = BatchSource(b.get("train", key), None, seed + i, f"{m}.train.{key}")
    return out


_NOT_IN_FINGERPRINT = {"progress", "log_every", "checkpoint_every", "resume_dir", "device", "compile", "pin_memory",
                       "rdzv_endpoint", "rdzv_backend", "rdzv_id", "rdzv_timeout", "max_restarts"}


def resume_config(stage: str, tcfg: TrainerConfig, stage_params: Mapping[str, Any], model: OmniVec2,
                  bundles: Mapping[str, ArrayBundle]) -> ResumeConfig | None:
    """Resume settings of a stage, fingerprinted by its parameters, initial weights and input arrays."""
    if not tcfg.resume_dir or tcfg.checkpoint_every <= 0:
        return None
    params = {"stage": stage, "stage_params": dict(stage_params), "model": model.cfg.to_dict(),
              "trainer": {k: v for k, v in asdict(tcfg).items() if k not in _NOT_IN_FINGERPRINT},
              "data": {m: b.meta for m, b in sorted(bundles.items())}}
    tensors = [*sorted(model.state_dict().items()),
               *((f"{m}/{k}", a) for m, b in sorted(bundles.items()) for k, a in sorted(b.arrays.items()))]
    return ResumeConfig(Path(tcfg.resume_dir) / stage, tcfg.checkpoint_every, fingerprint(params, tensors))


def _fingerprinted(stage_params: Mapping[str, Any],
                   modality_params: Mapping[str, Mapping[str, Any]] | None) -> Mapping[str, Any]:
    """The stage's parameters and the modality keys it read, for the resume fingerprint."""
    if not modality_params:
        return stage_params
    return {**stage_params, "modality_params": {m: dict(v) for m, v in sorted(modality_params.items())}}


def _fit_worker(tcfg: TrainerConfig, model: OmniVec2, objective: Objective, stage: str,
                resume: ResumeConfig | None, validator: Validator | None
                ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """One rank of a data-parallel stage: train, hand back the weights (as numpy), history and selection."""
    # tensors reach the workers in shared memory: every rank needs its own copy of the weights it updates
    model = copy.deepcopy(model)
    trainer = Trainer(tcfg)
    history = trainer.fit(model, objective, stage, resume, validator=validator)
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}, history, trainer.selection


def _run(stage: str, model: OmniVec2, objective: Objective, tcfg: TrainerConfig,
         bundles: Mapping[str, ArrayBundle], stage_params: Mapping[str, Any],
         validator: Validator | None = None) -> tuple[Checkpoint, pd.DataFrame]:
    """Train in this process, or on ``trainer.nproc_per_node x trainer.nnodes`` data-parallel ranks.

    The checkpoint's meta records the model selection (chosen step, val score, why training stopped).
    """
    _check_world(stage, stage_params, tcfg)
    resume = resume_config(stage, tcfg, stage_params, model, bundles)
    if tcfg.world_size > 1:
        weights, history, selection = distributed.launch(
            _fit_worker, (tcfg, model.cpu(), objective, stage, resume, validator), tcfg.launch_spec(), stage)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    else:
        trainer = Trainer(tcfg)
        history = trainer.fit(model, objective, stage, resume, validator=validator)
        selection = trainer.selection
    meta = {"stage": stage, "data": _data_meta(bundles), "training": {"steps": tcfg.steps, **selection}}
    return Checkpoint(model.cpu(), meta), history


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
    """Stage 1: masked token reconstruction, one modality per step, from a fresh model."""
    _check_stage_params("pretrain_unimodal", stage_params)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    ratios = _mask_ratios("pretrain_unimodal", stage_params, sorted(bundles), modality_params)
    torch.manual_seed(tcfg.seed)  # initial weights depend only on the seed
    model = build_model(model_params, bundles)
    norm = stage_params.get("norm_target", True)
    obj = MaskedUnimodal(_pretrain_sources(bundles, tcfg.seed), ratios, stage_params.get("batch_size", 64), norm,
                         *stage_sampling("pretrain_unimodal", stage_params))
    return _run("pretrain_unimodal", model, obj, tcfg, bundles, _fingerprinted(stage_params, modality_params),
                _reconstruction_validator("pretrain_unimodal", bundles, ratios, tcfg, norm))


def fresh_checkpoint(bundles: Mapping[str, ArrayBundle], model_params: Mapping[str, Any], seed: int) -> Checkpoint:
    """A freshly initialised network (weights from ``seed``), for stages run without pretraining."""
    torch.manual_seed(seed)
    return Checkpoint(build_model(model_params, bundles), {"stage": "init", "data": _data_meta(bundles)})


def pretrain_paired(init: Checkpoint, bundles: Mapping[str, ArrayBundle], stage_params: Mapping[str, Any],
                    trainer_params: Mapping[str, Any], modality_params: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 2: from stage 1's checkpoint, two modalities per step, fused, both reconstructed."""
    _check_stage_params("pretrain_paired", stage_params)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    ratios = _mask_ratios("pretrain_paired", stage_params, sorted(bundles), modality_params)
    model = init.model
    torch.manual_seed(tcfg.seed)
    attach_modalities(model, bundles)
    norm = stage_params.get("norm_target", True)
    obj = MaskedPaired(_pretrain_sources(bundles, tcfg.seed), ratios, stage_params.get("batch_size", 64), norm,
                       *stage_sampling("pretrain_paired", stage_params))
    return _run("pretrain_paired", model, obj, tcfg, bundles, _fingerprinted(stage_params, modality_params),
                _reconstruction_validator("pretrain_paired", bundles, ratios, tcfg, norm))


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


def multitask(init: Checkpoint, bundles: Mapping[str, ArrayBundle], stage_params: Mapping[str, Any],
              trainer_params: Mapping[str, Any], modality_params: Mapping[str, Mapping[str, Any]] | None = None
              ) -> tuple[Checkpoint, pd.DataFrame]:
    """Stage 3: from stage 2's checkpoint, two (modality, task) pairs per step, summed losses."""
    _check_stage_params("multitask", stage_params)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    model = init.model
    torch.manual_seed(tcfg.seed)  # new heads/tokenizers start from seeded weights
    attach_modalities(model, bundles)
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
                    stage_params.get("label_smoothing", 0.0), *stage_sampling("multitask", stage_params))
    log.info("multitask: probability that each task takes part in a step %s", obj.sampler.describe())
    validator = TaskValidator.from_bundles(pairs, bundles, tcfg.eval_samples, tcfg.seed) if tcfg.eval_every else None
    return _run("multitask", model, obj, tcfg, bundles, _fingerprinted(stage_params, modality_params), validator)

"""Checks of the training stages' parameters that need no data and no torch (run before a pipeline starts)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping

from omnivec2_pipelines.models.config import ModelConfig
from omnivec2_pipelines.training.config import TrainerConfig

_TRAINER_KEYS = {f.name for f in fields(TrainerConfig)}
_STAGE_KEYS = {
    "pretrain_unimodal": {"batch_size", "mask_ratio", "norm_target"},
    "pretrain_paired": {"batch_size", "mask_ratio", "norm_target"},
    "multitask": {"batch_size", "tasks"},
}


def _check_stage_params(stage: str, params: Mapping[str, Any]) -> None:
    allowed = _TRAINER_KEYS | _STAGE_KEYS[stage]
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} under '{stage}'; allowed: {sorted(allowed)}")
    bs = params.get("batch_size", 64)
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
        raise ValueError(f"{stage}.batch_size must be a positive integer, got {bs!r}")
    if stage != "pretrain_unimodal" and bs < 2:
        raise ValueError(f"{stage}.batch_size must be >= 2 (half of every batch comes from each of the two "
                         f"paired modalities), got {bs}")


def _check_world(stage: str, stage_params: Mapping[str, Any], tcfg: TrainerConfig) -> None:
    """A data-parallel run splits every global batch evenly over the ranks; check that it can,
    and that this machine has the workers asked for, before any data is read."""
    world = tcfg.world_size
    if world == 1:
        return
    bs = stage_params.get("batch_size", 64)
    per_draw = bs if stage == "pretrain_unimodal" else bs // 2
    if per_draw % world:
        what = "batch_size" if stage == "pretrain_unimodal" else "batch_size / 2 (each half comes from one modality)"
        raise ValueError(f"{stage}.{what} = {per_draw} is not divisible by the {world} data-parallel ranks "
                         f"(trainer.nproc_per_node={tcfg.nproc_per_node} x trainer.nnodes={tcfg.nnodes}); "
                         f"choose a batch size that splits evenly")
    from omnivec2_pipelines.training import distributed  # torch: only for data-parallel runs

    distributed.check_spec(tcfg.launch_spec())


def _mask_ratios(stage: str, params: Mapping[str, Any], modalities: list[str]) -> dict[str, float]:
    spec = params.get("mask_ratio", {})
    if isinstance(spec, (int, float)):
        spec = {"default": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{stage}.mask_ratio must be a number or a mapping modality -> ratio, got {spec!r}")
    ratios = {}
    for m in modalities:
        r = spec.get(m, spec.get("default"))
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1:
            raise ValueError(f"{stage}.mask_ratio.{m} must be a number in (0, 1) (or set "
                             f"{stage}.mask_ratio.default), got {r!r}")
        ratios[m] = float(r)
    return ratios



def validate_stage_params(stage: str, stage_params: Mapping[str, Any], trainer_params: Mapping[str, Any],
                          modalities: list[str], model_params: Mapping[str, Any] | None = None) -> None:
    """Check one training stage's parameters without touching data (called before a run starts).

    Raises:
        ValueError / TypeError: naming the key and the allowed values.
    """
    if not isinstance(stage_params, Mapping):
        raise ValueError(f"'{stage}' parameters must be a mapping, got {type(stage_params).__name__}")
    _check_stage_params(stage, stage_params)
    _check_world(stage, stage_params, TrainerConfig.from_params(trainer_params, stage_params))
    if stage in ("pretrain_paired", "multitask") and len(modalities) < 2:
        raise ValueError(f"{stage} needs at least two enabled modalities ('modalities'), got {modalities}")
    if "mask_ratio" in _STAGE_KEYS[stage]:
        _mask_ratios(stage, stage_params, sorted(modalities))
    if stage == "multitask":
        spec = stage_params.get("tasks", "all")
        if spec not in (None, "all"):
            if not isinstance(spec, Mapping):
                raise ValueError(f"multitask.tasks must be 'all' or a mapping modality -> [task, ...], got {spec!r}")
            for m, tasks in spec.items():
                if m not in modalities:
                    raise ValueError(f"multitask.tasks names modality {m!r}, which is not enabled; "
                                     f"enabled: {sorted(modalities)}")
                if not isinstance(tasks, (str, list)) or not tasks:
                    raise ValueError(f"multitask.tasks.{m} must be a task name or a non-empty list, got {tasks!r}")
    if model_params is not None:
        params = {k: v for k, v in dict(model_params).items() if k not in ("tokenizers", "heads")}
        ModelConfig.from_dict(params)

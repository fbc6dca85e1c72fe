"""Checks of the training stages' parameters that need no data (run before a pipeline starts).

They need no torch either, except to ask whether a ``cuda`` device exists.
"""

from __future__ import annotations

import re
from typing import Any, Collection, Mapping

from omnivec2_pipelines.models.config import ModelConfig
from omnivec2_pipelines.params_schema import (  # noqa: F401  (AUGMENT_OPS: re-exported)
    AUGMENT_OPS,
    STAGE_KEYS,
    check_keys,
    did_you_mean,
    stage_schema,
)
from omnivec2_pipelines.training.config import TrainerConfig
from omnivec2_pipelines.training.sampling import check_sampling


def _check_stage_params(stage: str, params: Mapping[str, Any], modalities: Collection[str] | None = None) -> None:
    """Keys (``mask_ratio`` names too when ``modalities`` is given) and batch size of a stage's block."""
    check_keys(params, stage_schema(stage, modalities), stage)
    bs = params.get("batch_size", 64)
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
        raise ValueError(f"{stage}.batch_size must be a positive integer, got {bs!r}")
    if stage != "pretrain_unimodal" and bs < 2:
        raise ValueError(f"{stage}.batch_size must be >= 2 (half of every batch comes from each of the two "
                         f"paired modalities), got {bs}")
    stage_sampling(stage, params)


def stage_sampling(stage: str, params: Mapping[str, Any]) -> tuple[str, float]:
    """``<stage>.sampling`` (default ``uniform``) and ``<stage>.sampling_temperature`` (default 1.0)."""
    return check_sampling(stage, params.get("sampling", "uniform"), params.get("sampling_temperature", 1.0))


def check_loss_weights(spec: Any, available: Mapping[str, Collection[str]] | None = None) -> dict[str, float]:
    """``multitask.loss_weights``: ``{modality: {task: weight >= 0}}`` → ``{"modality.task": weight}``.

    Args:
        spec: The parameter value (``null``: every task weighs 1).
        available: ``{modality: task names}`` to check the names against (None: not checked).
    """
    if spec in (None, False):
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"multitask.loss_weights must be a mapping modality -> {{task: weight}}, got {spec!r}")
    out = {}
    for m, tasks in spec.items():
        where = f"multitask.loss_weights.{m}"
        if available is not None and m not in available:
            raise ValueError(f"{where}: {m!r} is not an enabled modality; enabled: {sorted(available)}")
        if not isinstance(tasks, Mapping):
            raise ValueError(f"{where} must be a mapping task -> weight, got {tasks!r}")
        for t, w in tasks.items():
            if available is not None and t not in available[m]:
                raise ValueError(f"{where}: unknown task {t!r}; {m} has {sorted(available[m])}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"{where}.{t} must be a number >= 0, got {w!r}")
            out[f"{m}.{t}"] = float(w)
    return out


def _check_ops(ops: Any, where: str) -> dict[str, float] | None:
    """One modality's augmentation ``{op: strength}`` (``null``/``false``: None), checked, as floats."""
    if ops in (None, False):
        return None
    if not isinstance(ops, Mapping):
        raise ValueError(f"{where} must be a mapping op -> strength ({list(AUGMENT_OPS)}), got {ops!r}")
    for op, s in ops.items():
        if op not in AUGMENT_OPS:
            from omnivec2_pipelines.params_schema import unknown_key_error

            raise unknown_key_error(str(op), AUGMENT_OPS, where)
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
            raise ValueError(f"{where}.{op} must be a number >= 0, got {s!r}")
    return {str(op): float(s) for op, s in ops.items()}


def check_augment(spec: Any, modalities: Collection[str]) -> dict[str, dict[str, float]]:
    """``multitask.augment``, the stage's override: ``{modality: {op: strength}}`` (a modality's ``null``/``false``: none).

    Modalities that are not enabled are allowed (a config may serve several runs); unknown ops and
    negative strengths raise naming the key.
    """
    if spec in (None, False):
        return {}
    if not isinstance(spec, Mapping):
        raise ValueError(f"multitask.augment must be a mapping modality -> {{op: strength}}, got {spec!r}")
    out: dict[str, dict[str, float]] = {}
    for m, ops in spec.items():
        checked = _check_ops(ops, f"multitask.augment.{m}")
        if checked is not None:
            out[str(m)] = checked
    return out


def modality_augment(stage_params: Mapping[str, Any], modality_params: Mapping[str, Mapping[str, Any]] | None,
                     modalities: Collection[str]) -> dict[str, dict[str, float]]:
    """The augmentation of each modality's multitask batches: ``multitask.augment.<modality>`` when the stage
    sets it, else ``<modality>.augment`` (both ``{op: strength}``; ``null``: none)."""
    override = check_augment(stage_params.get("augment"), modalities)
    given = stage_params.get("augment") if isinstance(stage_params.get("augment"), Mapping) else {}
    out = {}
    for m in modalities:
        if m in given:
            ops = override.get(m)
        else:
            ops = _check_ops(((modality_params or {}).get(m) or {}).get("augment"), f"{m}.augment")
        if ops:
            out[m] = ops
    return out


def check_device(device: str, key: str) -> None:
    """A CUDA device must exist on this machine (torch is imported only for a ``cuda`` device).

    Args:
        device: ``trainer.device`` as a stage resolves it (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...).
        key: The parameter that set it, for the message (``trainer.device``, ``multitask.device``).

    Raises:
        ValueError: for a CUDA device on a machine without CUDA, or a device index it does not have.
    """
    if not str(device).startswith("cuda"):
        return
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"{key}={device!r} is not a CUDA device; expected 'cuda' or 'cuda:<index>'")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{key}={device!r} but CUDA is not available on this machine; use 'auto' or 'cpu'")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"{key}={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")


def check_tasks(spec: Any, modalities: Collection[str], available: Mapping[str, Collection[str]],
                source: str = "can produce") -> None:
    """Check ``multitask.tasks`` (``"all"`` or ``{modality: [task, ...]}``) against the tasks there are.

    Args:
        spec: The ``multitask.tasks`` value.
        modalities: The enabled modalities.
        available: Task names per modality; a modality missing here is not checked.
        source: How ``available`` was learnt, for the message (``"can produce"``, ``"has in data/..."``).

    Raises:
        ValueError: naming ``multitask.tasks.<modality>`` and the tasks there are.
    """
    if spec in (None, "all"):
        return
    if not isinstance(spec, Mapping):
        raise ValueError(f"multitask.tasks must be 'all' or a mapping modality -> [task, ...], got {spec!r}")
    for m, tasks in spec.items():
        if m not in modalities:
            close = did_you_mean(m, modalities)
            hint = f"did you mean {close!r}? " if close else ""
            raise ValueError(f"multitask.tasks names modality {m!r}, which is not enabled; {hint}"
                             f"enabled: {sorted(modalities)}")
        if not isinstance(tasks, (str, list)) or not tasks:
            raise ValueError(f"multitask.tasks.{m} must be a task name or a non-empty list, got {tasks!r}")
        for t in [tasks] if isinstance(tasks, str) else tasks:
            if m in available and t not in available[m]:
                close = did_you_mean(t, available[m])
                hint = f"did you mean {close!r}? " if close else ""
                raise ValueError(f"multitask.tasks.{m}: unknown task {t!r}; {hint}{m} {source} "
                                 f"{sorted(available[m])}")


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


def _mask_ratios(stage: str, params: Mapping[str, Any], modalities: list[str],
                 modality_params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, float]:
    """``{modality: ratio}``: the stage's ``mask_ratio.<modality>``, else its ``mask_ratio.default`` (or a
    number for all), else the modality's own ``<modality>.mask_ratio``."""
    spec = params.get("mask_ratio")
    if spec is None:
        spec = {}
    if isinstance(spec, (int, float)):
        spec = {"default": spec}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{stage}.mask_ratio must be a number or a mapping modality -> ratio, got {spec!r}")
    ratios = {}
    for m in modalities:
        own = ((modality_params or {}).get(m) or {}).get("mask_ratio")
        if m in spec or "default" in spec or own is None:
            r = spec.get(m, spec.get("default"))
            where = f"{stage}.mask_ratio.{m}"
            hint = f" (or set {m}.mask_ratio, or {stage}.mask_ratio.default)"
        else:
            r, where, hint = own, f"{m}.mask_ratio", ""
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < 1:
            raise ValueError(f"{where} must be a number in (0, 1){hint}, got {r!r}")
        ratios[m] = float(r)
    return ratios


def validate_stage_params(stage: str, stage_params: Mapping[str, Any], trainer_params: Mapping[str, Any],
                          modalities: list[str], model_params: Mapping[str, Any] | None = None,
                          modality_params: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Check one training stage's parameters without touching data (called before a run starts).

    ``modality_params``: ``{modality: {key: value}}``, the keys of each modality's block the stage reads
    (``mask_ratio``, ``augment``); None: only the stage's own overrides are checked.

    Raises:
        ValueError / TypeError: naming the key and the allowed values.
    """
    if not isinstance(stage_params, Mapping):
        raise ValueError(f"'{stage}' parameters must be a mapping, got {type(stage_params).__name__}")
    _check_stage_params(stage, stage_params, modalities)
    tcfg = TrainerConfig.from_params(trainer_params, stage_params)
    check_device(tcfg.device, f"{stage}.device" if "device" in stage_params else "trainer.device")
    _check_world(stage, stage_params, tcfg)
    if stage in ("pretrain_paired", "multitask") and len(modalities) < 2:
        raise ValueError(f"{stage} needs at least two enabled modalities ('modalities'), got {modalities}")
    if modality_params is not None:
        from omnivec2_pipelines.params_schema import STAGE_MODALITY_KEYS

        for m in modalities:
            for key in STAGE_MODALITY_KEYS[stage]:
                if key not in (modality_params.get(m) or {}):
                    raise ValueError(f"{m}.{key} is missing: {stage} reads it from every enabled modality's block "
                                     f"(conf/base/parameters_modalities/{m}.yml); set it"
                                     + (" (null: no augmentation)" if key == "augment" else ""))
    if "mask_ratio" in STAGE_KEYS[stage]:
        _mask_ratios(stage, stage_params, sorted(modalities), modality_params)
    if stage == "multitask":
        from omnivec2_pipelines.modalities.base import get_modality, registered_modalities

        declared = {m: get_modality(m).task_names for m in modalities if m in registered_modalities()}
        check_tasks(stage_params.get("tasks", "all"), modalities, declared)
        modality_augment(stage_params, modality_params, modalities)
        check_loss_weights(stage_params.get("loss_weights"), declared if set(declared) == set(modalities) else None)
    if model_params is not None:
        params = {k: v for k, v in dict(model_params).items() if k not in ("tokenizers", "heads")}
        ModelConfig.from_dict(params)

"""Checks of the training stages' parameters that need no data (run before a pipeline starts).

They need no torch either, except to ask whether a ``cuda`` device exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Collection, Mapping

from omnivec2_pipelines.models.config import ModelConfig
from omnivec2_pipelines.params_schema import (  # noqa: F401  (AUGMENT_OPS: re-exported)
    AUGMENT_OPS,
    STAGE_KEYS,
    STAGES,
    check_keys,
    did_you_mean,
    stage_schema,
)
from omnivec2_pipelines.training.config import TrainerConfig
from omnivec2_pipelines.training.sampling import check_focus, check_patience, check_sampling


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
    if stage == "multitask":
        check_pairs_per_step(params.get("pairs_per_step", 1), bs)
        check_focus(stage, params.get("sampling_focus", 0.0))
        check_patience(stage, params.get("sampling_patience", 0), params.get("sampling_patience_factor", 0.25))
    if stage == "pretrain_unimodal":
        stage_contrastive(stage, params)
    if "body_lr_scale" in params:
        check_body_lr_scale(params["body_lr_scale"], f"{stage}.body_lr_scale")


def check_pairs_per_step(value: Any, batch_size: int, modalities: int | None = None) -> int:
    """``multitask.pairs_per_step``: a positive integer P; a step draws tasks of 2P different modalities,
    ``batch_size / 2P`` samples each, so ``batch_size`` must be at least 2P (and ``modalities``, when given, too)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"multitask.pairs_per_step must be a positive integer (pairs of modalities per step), "
                         f"got {value!r}")
    if batch_size < 2 * value:
        raise ValueError(f"multitask.batch_size ({batch_size}) must be at least 2 x multitask.pairs_per_step "
                         f"({2 * value}): every drawn (modality, task) pair gets batch_size / (2 x pairs_per_step) samples")
    if modalities is not None and modalities < 2 * value:
        raise ValueError(f"multitask.pairs_per_step ({value}) needs {2 * value} different modalities with tasks, "
                         f"got {modalities}")
    return value


def check_body_lr_scale(value: Any, key: str = "multitask.body_lr_scale") -> float:
    """A learning-rate factor of the shared body: a number in (0, 10]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10:
        raise ValueError(f"{key} must be a number in (0, 10] (the factor on the learning rate of the pretrained "
                         f"body), got {value!r}")
    return float(value)


def stage_sampling(stage: str, params: Mapping[str, Any]) -> tuple[str, float]:
    """``<stage>.sampling`` (default ``uniform``) and ``<stage>.sampling_temperature`` (default 1.0)."""
    return check_sampling(stage, params.get("sampling", "uniform"), params.get("sampling_temperature", 1.0))


def check_contrastive(weight: Any, temperature: Any, stage: str = "pretrain_unimodal") -> tuple[float, float]:
    """``<stage>.contrastive_weight`` (a number >= 0; 0: reconstruction only) and
    ``<stage>.contrastive_temperature`` (a number in (0, 10])."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ValueError(f"{stage}.contrastive_weight must be a number >= 0 (0: masked reconstruction only), "
                         f"got {weight!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature <= 10:
        raise ValueError(f"{stage}.contrastive_temperature must be a number in (0, 10], got {temperature!r}")
    return float(weight), float(temperature)


def stage_contrastive(stage: str, params: Mapping[str, Any]) -> tuple[float, float]:
    """``<stage>.contrastive_weight`` (default 0) and ``<stage>.contrastive_temperature`` (default 0.2)."""
    return check_contrastive(params.get("contrastive_weight", 0.0), params.get("contrastive_temperature", 0.2), stage)


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
                source: str = "can produce", key: str = "multitask.tasks") -> None:
    """Check ``multitask.tasks`` (``"all"`` or ``{modality: [task, ...]}``) against the tasks there are.

    Args:
        spec: The ``multitask.tasks`` value.
        modalities: The enabled modalities.
        available: Task names per modality; a modality missing here is not checked.
        source: How ``available`` was learnt, for the message (``"can produce"``, ``"has in data/..."``).
        key: The parameter, for the message.

    Raises:
        ValueError: naming ``multitask.tasks.<modality>`` and the tasks there are.
    """
    if spec in (None, "all"):
        return
    if not isinstance(spec, Mapping):
        raise ValueError(f"{key} must be 'all' or a mapping modality -> [task, ...], got {spec!r}")
    for m, tasks in spec.items():
        if m not in modalities:
            close = did_you_mean(m, modalities)
            hint = f"did you mean {close!r}? " if close else ""
            raise ValueError(f"{key} names modality {m!r}, which is not enabled; {hint}"
                             f"enabled: {sorted(modalities)}")
        if not isinstance(tasks, (str, list)) or not tasks:
            raise ValueError(f"{key}.{m} must be a task name or a non-empty list, got {tasks!r}")
        for t in [tasks] if isinstance(tasks, str) else tasks:
            if m in available and t not in available[m]:
                close = did_you_mean(t, available[m])
                hint = f"did you mean {close!r}? " if close else ""
                raise ValueError(f"{key}.{m}: unknown task {t!r}; {hint}{m} {source} "
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


def stage_start(stage: str, stage_params: Mapping[str, Any] | None,
                trainer_params: Mapping[str, Any] | None = None) -> tuple[str, str, str] | None:
    """Where a stage starts when a parameter names a checkpoint: ``(kind, path, parameter)``, else None.

    ``kind`` is ``"init"`` (``<stage>.init``: a new run from the checkpoint's weights) or ``"resume_from"``
    (``<stage>.resume_from``, else ``trainer.resume_from``: continue that finished run of the stage). None:
    the stage starts as usual, stage 1 from a fresh network, the others from the previous stage's checkpoint.

    Raises:
        ValueError: for a value that is not a path, or when both are set.
    """
    stage_params = stage_params or {}
    if "resume_from" in stage_params:  # the stage's own value wins, as for every trainer key
        resume, resume_key = stage_params["resume_from"], f"{stage}.resume_from"
    else:
        resume, resume_key = (trainer_params or {}).get("resume_from"), "trainer.resume_from"
    init, init_key = stage_params.get("init"), f"{stage}.init"
    for value, key in ((init, init_key), (resume, resume_key)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a checkpoint directory (a path) or null, got {value!r}")
    if init and resume:
        raise ValueError(f"{init_key} and {resume_key} are both set: init starts a new run of {stage} from a "
                         f"checkpoint's weights, resume_from continues a finished run of {stage}; set one")
    if init:
        return "init", init, init_key
    if resume:
        return "resume_from", resume, resume_key
    return None


def reads_model(stage: str, stage_params: Mapping[str, Any] | None, trainer_params: Mapping[str, Any] | None) -> bool:
    """Whether a stage reads ``params:model``: stage 1 builds its network from it, and a stage that starts
    from a checkpoint a parameter names checks that checkpoint's architecture against it."""
    return stage == STAGES[0] or stage_start(stage, stage_params, trainer_params) is not None


def check_start(stage: str, stage_params: Mapping[str, Any], trainer_params: Mapping[str, Any] | None,
                model_params: Mapping[str, Any] | None = None) -> tuple[str, str, str] | None:
    """Check the checkpoint a stage starts from, when a parameter names one (its JSON only: no weights).

    ``<stage>.init``: the path is a checkpoint, of the architecture of the run's ``model`` (when given).
    ``resume_from`` besides: it holds the training state of a finished run of this stage, and ``steps``
    (the new total) exceeds the steps that run made.

    Returns:
        :func:`stage_start`'s ``(kind, path, parameter)``, or None.

    Raises:
        FileNotFoundError / ValueError: naming the parameter and what does not fit.
    """
    spec = stage_start(stage, stage_params, trainer_params)
    if spec is None:
        return None
    kind, path, key = spec
    from omnivec2_pipelines.training import checkpoint as ck  # torch: only for a stage that names a checkpoint

    doc = ck.read_config(path, key)
    if model_params is not None:
        ck.check_model_compatible(doc["model"], model_params, f"{key}={path}")
    if kind == "init":
        return spec
    state = ck.training_state_doc(path, key)
    saved = (state.get("info") or {}).get("stage") or (doc.get("meta") or {}).get("stage")
    if saved != stage:
        raise ValueError(f"{key}={path} is a checkpoint of {saved}, not of {stage}: resume_from continues a finished "
                         f"run of the same stage (to start {stage} from its weights, set {stage}.init)")
    steps = TrainerConfig.from_params(trainer_params or {}, stage_params).steps
    steps_key = f"{stage}.steps" if "steps" in stage_params else "trainer.steps"
    if steps <= state["step"]:
        raise ValueError(f"{steps_key}={steps} must exceed the {state['step']} steps that {path} already ran: with "
                         f"{key}, steps is the new total (e.g. {steps_key}={2 * state['step']} for "
                         f"{state['step']} more)")
    return spec


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
    if stage == "multitask":
        check_pairs_per_step(stage_params.get("pairs_per_step", 1), stage_params.get("batch_size", 64), len(modalities))
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
    check_start(stage, stage_params, trainer_params, model_params)


# ------------------------------------------------------------------------------------------------ finetune

#: The fine-tuning block's own keys (beside any trainer key, which overrides ``trainer`` for fine-tuning).
FINETUNE_KEYS: tuple[str, ...] = ("init", "modalities", "data", "tasks", "per_task", "mode", "body_lr_scale",
                                  "layer_decay", "label_fractions", "scratch", "batch_size", "label_smoothing",
                                  "augment", "split")
#: Keys of one modality's entry under ``finetune.data``.
FINETUNE_DATA_KEYS: tuple[str, ...] = ("source", "tokenization")
FINETUNE_MODES: tuple[str, ...] = ("full", "head")


@dataclass(frozen=True)
class FinetuneSpec:
    """The ``finetune`` block, checked (see ``conf/base/parameters_finetune.yml`` for every key).

    Attributes:
        init: Checkpoint directory to start from (None: the run's multitask checkpoint).
        modalities: Modalities whose data is fine-tuned on (None: the enabled ones).
        data: ``{modality: {source: {...}, tokenization: {...}}}``: a data set of the modality other than
            the run's (keys not given come from the modality's own block).
        tasks: ``"all"`` or ``{modality: [task, ...]}``.
        per_task: One model per (modality, task) (True) or one for all of them.
        mode: ``full`` (everything trains, the body at ``lr * body_lr_scale``) or ``head`` (body frozen).
        body_lr_scale: Factor on the learning rate of the shared body in ``full`` mode.
        layer_decay: Layer-wise learning-rate decay (None: off), e.g. 0.75.
        label_fractions: Shares of the train rows each model is trained with (stratified, seeded).
        scratch: Also train every model from a fresh network with the same budget.
        batch_size: Samples per step.
        label_smoothing: As in multitask.
        augment: ``{modality: {op: strength}}`` of the training batches (None: each modality's ``augment``).
        split: Split the models are scored on.
        trainer: The block's trainer keys (steps, lr, eval_every, ...), over ``trainer``.
    """

    init: str | None = None
    modalities: tuple[str, ...] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    tasks: Any = "all"
    per_task: bool = True
    mode: str = "full"
    body_lr_scale: float = 0.1
    layer_decay: float | None = None
    label_fractions: tuple[float, ...] = (1.0,)
    scratch: bool = False
    batch_size: int = 32
    label_smoothing: float = 0.1
    augment: Mapping[str, Any] | None = None
    split: str = "test"
    trainer: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for fingerprints and checkpoint meta."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "modalities": list(self.modalities) if self.modalities is not None else None,
                "label_fractions": list(self.label_fractions), "data": dict(self.data),
                "trainer": dict(self.trainer)}


def _number(value: Any, key: str, low: float, high: float, low_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        (value > low if low_open else value >= low) and value <= high)
    if not ok:
        raise ValueError(f"finetune.{key} must be a number in {'(' if low_open else '['}{low}, {high}], got {value!r}")
    return float(value)


def finetune_spec(params: Mapping[str, Any] | None, trainer_params: Mapping[str, Any] | None = None,
                  enabled: Collection[str] = ()) -> FinetuneSpec:
    """Check the ``finetune`` block (keys, types, ranges, trainer overrides) and return it as a spec.

    Args:
        params: The block.
        trainer_params: The ``trainer`` block (the fine-tuning trainer keys override it).
        enabled: The run's enabled modalities (the default of ``finetune.modalities``).

    Raises:
        ValueError / TypeError: naming ``finetune.<key>`` and what was expected.
    """
    from omnivec2_pipelines.modalities.base import get_modality, registered_modalities
    from omnivec2_pipelines.params_schema import modality_schema

    params = dict(params or {})
    trainer_keys = {f.name for f in fields(TrainerConfig)}
    check_keys(params, {**dict.fromkeys(FINETUNE_KEYS), **dict.fromkeys(trainer_keys)}, "finetune")
    TrainerConfig.from_params(trainer_params or {}, params)  # types of the trainer overrides
    mods = params.get("modalities")
    mods = [mods] if isinstance(mods, str) else mods  # one name, as --params gives it
    if mods is not None and (not isinstance(mods, list) or not all(isinstance(m, str) for m in mods) or not mods):
        raise ValueError(f"finetune.modalities must be null (the enabled modalities) or a non-empty list of "
                         f"names, got {mods!r}")
    data = params.get("data") or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"finetune.data must map modality -> {{source: ..., tokenization: ...}}, got {data!r}")
    known = set(registered_modalities())
    for m, entry in data.items():
        if m not in known:
            close = did_you_mean(m, known)
            raise ValueError(f"finetune.data: unknown modality {m!r}" + (f"; did you mean {close!r}?" if close else "")
                             + f"; registered: {sorted(known)}")
        check_keys(entry or {}, FINETUNE_DATA_KEYS, f"finetune.data.{m}")
        for part in FINETUNE_DATA_KEYS:  # the modality's own keys of that part
            check_keys((entry or {}).get(part) or {}, modality_schema(get_modality(m), part), f"finetune.data.{m}.{part}")
    modalities = tuple(mods) if mods is not None else tuple(sorted({*enabled, *data}))
    for m in data:
        if m not in modalities:
            raise ValueError(f"finetune.data names {m!r}, which is not in finetune.modalities {list(modalities)}")
    tasks = params.get("tasks", "all")
    check_tasks(tasks, modalities, {}, key="finetune.tasks")
    mode = params.get("mode", "full")
    if mode not in FINETUNE_MODES:
        raise ValueError(f"finetune.mode must be one of {list(FINETUNE_MODES)}, got {mode!r}")
    fractions = params.get("label_fractions", [1.0])
    if not isinstance(fractions, list) or not fractions:
        raise ValueError(f"finetune.label_fractions must be a non-empty list of numbers in (0, 1], got {fractions!r}")
    fractions = tuple(_number(f, "label_fractions[]", 0.0, 1.0) for f in fractions)
    if len(set(fractions)) != len(fractions):
        raise ValueError(f"finetune.label_fractions has repeated values: {list(fractions)}")
    for key in ("scratch", "per_task"):
        if not isinstance(params.get(key, False), bool):
            raise ValueError(f"finetune.{key} must be true or false, got {params[key]!r}")
    bs = params.get("batch_size", 32)
    if not isinstance(bs, int) or isinstance(bs, bool) or bs < 2:
        raise ValueError(f"finetune.batch_size must be an integer >= 2, got {bs!r}")
    layer_decay = params.get("layer_decay")
    split = params.get("split", "test")
    if split not in ("train", "val", "test"):
        raise ValueError(f"finetune.split must be one of train, val, test; got {split!r}")
    init = params.get("init")
    if init is not None and not isinstance(init, str):
        raise ValueError(f"finetune.init must be null (the run's multitask checkpoint) or a checkpoint directory, "
                         f"got {init!r}")
    augment = params.get("augment")
    check_augment(augment, modalities)
    return FinetuneSpec(
        init=init, modalities=modalities, data=dict(data), tasks=tasks, per_task=params.get("per_task", True),
        mode=mode, body_lr_scale=check_body_lr_scale(params.get("body_lr_scale", 0.1), "finetune.body_lr_scale"),
        layer_decay=None if layer_decay is None else _number(layer_decay, "layer_decay", 0.0, 1.0),
        label_fractions=fractions, scratch=params.get("scratch", False), batch_size=bs,
        label_smoothing=_number(params.get("label_smoothing", 0.1), "label_smoothing", 0.0, 0.999, low_open=False),
        augment=augment, split=split, trainer={k: v for k, v in params.items() if k in trainer_keys})

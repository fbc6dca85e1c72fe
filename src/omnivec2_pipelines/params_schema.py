"""The allowed keys of every parameter block, in one place, and the checks run before the first node.

A *schema* maps each allowed key of a block to what its value is:

* ``None``: any value (the block's checker, or the code reading it, checks the value);
* :data:`SIZE`: a size, a list of positive ints such as ``[32, 32]``; the string ``"32x32"`` is
  accepted too, because ``kedro run --params`` splits on commas (see :func:`normalize_sizes`);
* a nested schema: a mapping, or a tuple of key names that take any value.

Every top-level parameter is a *block*: ``modalities``; one block per registered modality (all of
its parameters: ``sample_data``, ``source``, ``tokenization``, ``mask_ratio``, ``augment``, one file
each in ``conf/base/parameters_modalities/``); ``trainer``; ``model``; the three stages;
``evaluation``; ``sweep``; and whatever a new pipeline registers::

    register_block("study", check="omnivec2_pipelines.study:validate_study_params")

:func:`check_keys_of_all` checks the keys of every block present: an unknown key, at any depth,
raises naming its full dotted key with a ``difflib`` suggestion. :func:`check_used_blocks` runs the
value checker of each block that a pipeline's nodes read (``params:<block>...`` inputs; of a
modality's block, the checker of each part read). A modality module declares the keys of its
``source``, ``sample_data`` and ``tokenization`` (``Modality.source_keys``, ``sample_data_keys``,
``tokenization_keys``); the trainer's, the model's and the sweep's keys are the fields of their
dataclasses (the sweep's module imports torch, so its keys are checked by runs that read ``sweep``).
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any


class _Size:
    """Schema leaf of a size (see :data:`SIZE`)."""

    def __repr__(self) -> str:
        return "SIZE"


#: Schema leaf of a size: ``[32, 32]``, also written ``"32x32"`` (parsed by :func:`parse_size`).
SIZE = _Size()

Schema = Mapping[str, Any]
#: A block's value checker, ``check(block_value, all_params)``: raises ``ValueError`` / ``TypeError``
#: naming the key. A ``"module:function"`` string is imported only when the block is checked.
Checker = Callable[[Any, Mapping[str, Any]], Any]

#: Keys of each training stage beside the trainer keys (a stage may override any ``trainer`` key, e.g.
#: ``resume_from``). ``init``: a checkpoint directory the stage starts from (null: stage 1 from a fresh
#: network, the others from the previous stage's checkpoint).
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "pretrain_unimodal": ("init", "batch_size", "mask_ratio", "norm_target", "sampling", "sampling_temperature",
                          "contrastive_weight", "contrastive_temperature"),
    "pretrain_paired": ("init", "batch_size", "mask_ratio", "norm_target", "sampling", "sampling_temperature"),
    "multitask": ("init", "batch_size", "tasks", "single_stream", "label_smoothing", "augment", "sampling",
                  "sampling_temperature", "loss_weights", "body_lr_scale", "pairs_per_step", "sampling_focus",
                  "sampling_patience", "sampling_patience_factor"),
}
#: The training stages, in the order they run (each starts from the previous stage's checkpoint).
STAGES: tuple[str, ...] = tuple(STAGE_KEYS)
#: The keys of every enabled modality's block that each stage reads (``params:<modality>.<key>`` inputs); a stage's
#: own ``mask_ratio`` / ``augment`` may override them for that stage.
STAGE_MODALITY_KEYS: dict[str, tuple[str, ...]] = {"pretrain_unimodal": ("mask_ratio",),
                                                   "pretrain_paired": ("mask_ratio",), "multitask": ("augment",)}
#: The parts of a modality's block: what its module declares the keys of, then what the stages read.
MODALITY_PARTS: tuple[str, ...] = ("sample_data", "source", "tokenization", "mask_ratio", "augment")
#: Blocks of the old layout (one entry per modality) and where their entries live now.
MOVED_BLOCKS: dict[str, str] = {"sample_data": "sample_data", "tokenization": "tokenization"}
#: Batch augmentation ops of ``<modality>.augment`` (implemented in :mod:`omnivec2_pipelines.training.augment`).
AUGMENT_OPS: tuple[str, ...] = ("shift", "flip", "time_mask", "freq_mask", "scale", "jitter", "rotate_z")
EVALUATION_KEYS: tuple[str, ...] = ("split", "batch_size", "baselines", "probe", "bootstrap")

_SIZE_TEXT = re.compile(r"\d+(?:[xX]\d+)+")


# ------------------------------------------------------------------------------------------------ keys


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word`` (``difflib``), or None."""
    close = difflib.get_close_matches(str(word), sorted(map(str, choices)), n=1)
    return close[0] if close else None


def unknown_key_error(key: str, allowed: Iterable[str], where: str = "") -> ValueError:
    """``unknown parameter 'where.key'; did you mean 'where.close'?`` (else the allowed keys).

    Args:
        key: The unknown key.
        allowed: The keys allowed beside it.
        where: Dotted path of the mapping that holds it ("" at the top level).
    """
    allowed = sorted(map(str, allowed))
    prefix = f"{where}." if where else ""
    close = did_you_mean(key, allowed)
    if close:
        return ValueError(f"unknown parameter '{prefix}{key}'; did you mean '{prefix}{close}'?")
    return ValueError(f"unknown parameter '{prefix}{key}'; allowed under '{where or '<top level>'}': "
                      f"{allowed}{_declared_by(where)}")


def as_schema(spec: Schema | Iterable[str] | None) -> dict[str, Any]:
    """A schema from a mapping, or from key names (each taking any value)."""
    if spec is None:
        return {}
    return dict(spec) if isinstance(spec, Mapping) else dict.fromkeys(spec)


def check_keys(value: Any, schema: Schema | Iterable[str], where: str) -> None:
    """Raise on the first key of ``value``, at any depth, that ``schema`` does not allow.

    Values that are not mappings are not looked into (their checkers check them).

    Args:
        value: A parameter block (or part of one).
        schema: What it may hold.
        where: Its dotted path, for the message (``"image.source"``).

    Raises:
        ValueError: ``unknown parameter '<where>.<key>'; did you mean '<where>.<close>'?``.
    """
    if not isinstance(value, Mapping):
        return
    schema = as_schema(schema)
    for key, sub_value in value.items():
        if key not in schema:
            raise unknown_key_error(key, schema, where)
        sub = schema[key]
        if sub is not None and not isinstance(sub, _Size):
            check_keys(sub_value, sub, f"{where}.{key}")


def _declared_by(where: str) -> str:
    """Where the keys under the dotted path ``where`` are declared, when a modality declares them."""
    parts = where.split(".")
    if len(parts) < 2:
        return ""
    from omnivec2_pipelines.modalities.base import registered_modalities

    if parts[0] in registered_modalities() and parts[1] in ("sample_data", "source", "tokenization"):
        return f" (keys declared by {parts[0]}'s Modality.{parts[1]}_keys)"
    return ""


# ----------------------------------------------------------------------------------------------- sizes


def parse_size(value: Any) -> Any:
    """``"32x32"`` → ``[32, 32]``, ``"2x8x8"`` → ``[2, 8, 8]``; any other value is returned unchanged."""
    if isinstance(value, str) and _SIZE_TEXT.fullmatch(value.strip()):
        return [int(v) for v in re.split("[xX]", value.strip())]
    return value


def _normalize(value: Any, schema: Any) -> Any:
    if isinstance(schema, _Size):
        return parse_size(value)
    if schema is None or not isinstance(value, Mapping):
        return value
    schema = as_schema(schema)
    return {k: _normalize(v, schema.get(k)) for k, v in value.items()}


def normalize_sizes(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every :data:`SIZE` value written ``"HxW"`` turned into a list of ints."""
    out = {}
    for name, value in params.items():
        block = block_of(name)
        out[name] = _normalize(value, block.keys()) if block else value
    return out


# ---------------------------------------------------------------------------------------------- blocks


#: What a block's keys are given as: a schema, key names, a function returning a schema, or a
#: ``"module:attribute"`` string naming one of those (imported when the keys are first needed).
SchemaSpec = Schema | Iterable[str] | Callable[[], Schema] | str


@dataclass(frozen=True)
class Block:
    """One top-level parameter block.

    Attributes:
        schema: Its allowed keys (see :data:`SchemaSpec`), or ``None`` when ``check`` checks them.
        check: Value checker run when a node of the pipeline reads the block, or ``None``.
        parts: Value checkers of single keys, ``{key: check(block_value, all_params)}``, each run when a
            node reads that key (``params:<block>.<key>...``) or the whole block.
    """

    schema: SchemaSpec | None = None
    check: Checker | str | None = None
    parts: Mapping[str, Checker] | None = None

    def keys(self) -> dict[str, Any] | None:
        """The block's schema, or None when its checker checks the keys."""
        if self.schema is None:
            return None
        spec = _resolve(self.schema)
        return as_schema(spec() if callable(spec) else spec)


#: Registered blocks by top-level key (each registered modality also has a block, see :func:`block_of`).
BLOCKS: dict[str, Block] = {}


def register_block(name: str, schema: SchemaSpec | None = None, check: Checker | str | None = None) -> None:
    """Register (or replace) the top-level parameter block ``name``.

    Args:
        name: Top-level parameter key, e.g. ``"study"``.
        schema: Its allowed keys (see :data:`SchemaSpec`); ``None`` when ``check`` checks them itself.
        check: ``check(block_value, all_params)`` or ``"module:function"`` (imported when needed), run
            before the first node of every run whose pipeline reads the block.
    """
    BLOCKS[name] = Block(schema, check)


def modality_schema(modality: Any, block: str) -> dict[str, Any]:
    """The schema of a modality's ``source``, ``sample_data`` or ``tokenization`` (what its module declares)."""
    from omnivec2_pipelines.modalities.base import COMMON_SAMPLE_DATA_KEYS, COMMON_SOURCE_KEYS

    common = {"source": COMMON_SOURCE_KEYS, "sample_data": COMMON_SAMPLE_DATA_KEYS, "tokenization": ()}[block]
    return {**as_schema(common), **as_schema(getattr(modality, f"{block}_keys"))}


def _modality_block(name: str) -> Block:
    from omnivec2_pipelines.modalities.base import get_modality

    mod = get_modality(name)

    def schema() -> Schema:
        declared = {part: modality_schema(mod, part) for part in ("sample_data", "source", "tokenization")}
        return {**declared, "mask_ratio": None, "augment": AUGMENT_OPS}

    return Block(schema, parts={"source": lambda value, params: _check_source(name, value)})


def block_of(name: str) -> Block | None:
    """The block registered as ``name``, or the block of the modality ``name``, or None."""
    from omnivec2_pipelines.modalities.base import registered_modalities

    if name in BLOCKS:
        return BLOCKS[name]
    return _modality_block(name) if name in registered_modalities() else None


def check_keys_of_all(params: Mapping[str, Any]) -> None:
    """Check the keys of every block in ``params``, used by the run or not.

    Raises:
        ValueError: at the first unknown key, naming its full dotted path (``image.tokenization.sise``),
            or at a block of the old layout (``tokenization``, ``sample_data``), naming where it moved.
    """
    from omnivec2_pipelines.modalities.base import registered_modalities

    top = {"modalities", *BLOCKS, *registered_modalities()}
    for name, value in params.items():
        if name in MOVED_BLOCKS and name not in top:
            raise moved_block_error(name, value)
        if name not in top:
            raise unknown_key_error(name, top)
        schema = block.keys() if (block := block_of(name)) else None
        if schema is not None:
            check_keys(value, schema, name)


def moved_block_error(name: str, value: Any) -> ValueError:
    """The error for a block of the old layout: ``tokenization: {image: ...}`` is now ``image: {tokenization: ...}``."""
    mods = sorted(value) if isinstance(value, Mapping) else []
    example = mods[0] if mods else "image"
    part = MOVED_BLOCKS[name]
    return ValueError(f"parameter block '{name}' moved: each modality's entry is now '<modality>.{part}', in that "
                      f"modality's block (conf/base/parameters_modalities/<modality>.yml); write "
                      f"'{example}: {{{part}: ...}}' instead of '{name}: {{{example}: ...}}'"
                      + (f" (found entries for {mods})" if mods else ""))


def blocks_read_by(pipeline: Any) -> list[str]:
    """The top-level blocks that nodes of ``pipeline`` read (``params:<block>[.<key>...]`` inputs), sorted."""
    return sorted(reads_of(pipeline))


def reads_of(pipeline: Any) -> dict[str, set[str]]:
    """``{block: keys read}`` of the ``params:<block>[.<key>...]`` inputs of ``pipeline``'s nodes
    (``""`` among the keys: the whole block)."""
    out: dict[str, set[str]] = {}
    for n in pipeline.nodes:
        for i in n.inputs:
            if i.startswith("params:"):
                block, _, rest = i.removeprefix("params:").partition(".")
                out.setdefault(block, set()).add(rest.split(".", 1)[0])
    return out


def _resolve(where: Any) -> Any:
    """``where`` itself, or the object a ``"module:attribute"`` string names (imported now)."""
    if not isinstance(where, str):
        return where
    module, _, attr = where.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def check_used_blocks(params: Mapping[str, Any], pipeline: Any) -> None:
    """Run the value checker of every block the pipeline's nodes read (and of each part read), in name order."""
    for name, keys in sorted(reads_of(pipeline).items()):
        block = block_of(name)
        if block is None:
            continue
        if block.check is not None:
            _resolve(block.check)(params.get(name), params)
        for key, check in (block.parts or {}).items():
            if key in keys or "" in keys:
                check(params.get(name), params)


# ----------------------------------------------------------------------------------- built-in blocks


def _check_source(modality: str, value: Any) -> None:
    """``<modality>.source``: format, path (it must exist), on_error, batch_files."""
    from omnivec2_pipelines.modalities.base import ErrorPolicy, check_source, get_modality, source_batch_files

    source = value.get("source") if isinstance(value, Mapping) else None
    check_source(source, get_modality(modality))
    ErrorPolicy(source, modality)
    source_batch_files(source, modality)


def _trainer_schema() -> Schema:
    from omnivec2_pipelines.training.config import TrainerConfig

    return dict.fromkeys(f.name for f in fields(TrainerConfig))


def _check_trainer(value: Any, params: Mapping[str, Any]) -> None:
    from omnivec2_pipelines.training.config import TrainerConfig
    from omnivec2_pipelines.training.params import check_device

    check_device(TrainerConfig.from_params(value or {}).device, "trainer.device")


def _model_schema() -> Schema:
    from omnivec2_pipelines.models.config import ModelConfig

    # tokenizers and heads are shaped by the data at run time, never set in the parameters
    return dict.fromkeys(f.name for f in fields(ModelConfig) if f.name not in ("tokenizers", "heads"))


def _check_model(value: Any, params: Mapping[str, Any]) -> None:
    from omnivec2_pipelines.models.config import ModelConfig

    ModelConfig.from_dict(dict(value or {}))


def stage_schema(stage: str, modalities: Iterable[str] | None = None) -> Schema:
    """A training stage's keys: every trainer key and the stage's own.

    Args:
        stage: The stage.
        modalities: Names allowed under ``mask_ratio`` beside ``default`` and the registered
            modalities (e.g. the data's); None: any name (a stage reads only those it trains on).
    """
    from omnivec2_pipelines.modalities.base import registered_modalities

    schema: dict[str, Any] = {**_trainer_schema(), **dict.fromkeys(STAGE_KEYS[stage])}
    if "mask_ratio" in schema and modalities is not None:
        schema["mask_ratio"] = tuple(dict.fromkeys(["default", *registered_modalities(), *modalities]))
    return schema


def modality_params(params: Mapping[str, Any], modalities: Iterable[str], stage: str) -> dict[str, dict[str, Any]]:
    """``{modality: {key: value}}``: the keys of each modality's block that ``stage`` reads (:data:`STAGE_MODALITY_KEYS`)."""
    out = {}
    for m in modalities:
        block = params.get(m)
        block = block if isinstance(block, Mapping) else {}
        out[m] = {k: block[k] for k in STAGE_MODALITY_KEYS[stage] if k in block}
    return out


def _stage_block(stage: str) -> tuple[Callable[[], Schema], Checker]:
    def check(value: Any, params: Mapping[str, Any]) -> None:
        from omnivec2_pipelines.training.params import reads_model, validate_stage_params

        modalities = list(params.get("modalities") or [])
        value, trainer = {} if value is None else value, params.get("trainer") or {}
        reads = isinstance(value, Mapping) and reads_model(stage, value, trainer)
        model = params.get("model") or {} if reads else None
        validate_stage_params(stage, value, trainer, modalities, model,
                              modality_params=modality_params(params, modalities, stage))

    return (lambda: stage_schema(stage, ())), check


def probe_stages(value: Any) -> tuple[str, ...]:
    """The stages whose checkpoints ``evaluation.probe`` asks to probe, in the method's order.

    Args:
        value: ``true`` (every stage), ``false`` / null (none), or a list of stage names.

    Raises:
        ValueError: Naming ``evaluation.probe`` (and the closest stage for a misspelt one).
    """
    if value is True:
        return STAGES
    if value is False or value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"evaluation.probe must be true, false or a list of stages of {list(STAGES)}, "
                         f"got {value!r}")
    for name in names:
        if name not in STAGES:
            close = did_you_mean(name, STAGES)
            raise ValueError(f"evaluation.probe: unknown stage {name!r}"
                             + (f"; did you mean {close!r}?" if close else f"; expected stages of {list(STAGES)}"))
    return tuple(s for s in STAGES if s in names)


def _check_evaluation(value: Any, params: Mapping[str, Any]) -> None:
    split = (value or {}).get("split", "test")
    if split not in ("train", "val", "test"):
        raise ValueError(f"evaluation.split must be one of train, val, test; got {split!r}")
    probe_stages((value or {}).get("probe", True))
    bootstrap_resamples(value or {})


def bootstrap_resamples(evaluation: Mapping[str, Any]) -> int:
    """``evaluation.bootstrap``: resamples of the model-minus-baseline interval (an int >= 0; 0: none).

    Raises:
        ValueError: Naming the key and the value.
    """
    value = evaluation.get("bootstrap", 1000)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"evaluation.bootstrap must be an int >= 0 (resamples; 0: no interval), got {value!r}")
    return value


def _check_finetune(value: Any, params: Mapping[str, Any]) -> None:
    from omnivec2_pipelines.training.params import finetune_spec

    finetune_spec(value, params.get("trainer") or {}, list(params.get("modalities") or []))


def _check_sweep(value: Any, params: Mapping[str, Any]) -> None:
    """The sweep block, and the trainer and stages its trials train (from ``sweep.stage`` on).

    The sweep's keys are ``SweepSpec``'s fields; its module imports torch, so only runs of the sweep
    check them.
    """
    from omnivec2_pipelines.sweep import SweepSpec

    check_keys(value, [f.name for f in fields(SweepSpec) if f.name != "extra"], "sweep")
    spec = SweepSpec.from_params(value or {})
    _check_trainer(params.get("trainer"), params)
    stages = list(STAGE_KEYS)
    if spec.stage not in stages:
        close = did_you_mean(spec.stage, stages)
        raise ValueError(f"sweep.stage={spec.stage!r}; expected one of {stages}"
                         + (f" (did you mean {close!r}?)" if close else ""))
    for stage in stages[stages.index(spec.stage):]:
        _stage_block(stage)[1](params.get(stage), params)


register_block("trainer", _trainer_schema, _check_trainer)
register_block("model", _model_schema, _check_model)
for _stage in STAGE_KEYS:
    register_block(_stage, *_stage_block(_stage))
register_block("evaluation", EVALUATION_KEYS, _check_evaluation)
register_block("sweep", check=_check_sweep)
# fine-tuning: its keys and values are checked by the spec builder (no torch)
register_block("finetune", check=_check_finetune)
register_block("transfer", "omnivec2_pipelines.transfer:TRANSFER_KEYS",
               "omnivec2_pipelines.transfer:validate_transfer_params")
# the study pipeline's block: its module owns its keys and checks its values (variants and their overrides)
register_block("study", "omnivec2_pipelines.study:STUDY_KEYS", "omnivec2_pipelines.study:validate_study_params")
register_block("predict", "omnivec2_pipelines.inference.params:PREDICT_KEYS",
               "omnivec2_pipelines.inference.params:check_predict_params")
register_block("export", "omnivec2_pipelines.inference.params:EXPORT_KEYS",
               "omnivec2_pipelines.inference.params:check_export_params")

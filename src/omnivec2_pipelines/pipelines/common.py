"""What the pipeline families share: the checkpoint annotation, a quiet ``node``, the tokenized inputs and the
per-modality parameters of the training stages."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from kedro.pipeline import Node, node

__all__ = ["Checkpoint", "modality_param_inputs", "quiet_node", "split_stage_inputs", "tokenized_inputs"]

if TYPE_CHECKING:
    from omnivec2_pipelines.training.checkpoint import Checkpoint
else:
    # Kedro resolves every node's annotations (typing.get_type_hints) when a run starts; importing the
    # real class would pull in torch, so at run time the name stands for "any object" (type checkers
    # still see the class above).
    Checkpoint = Any


def quiet_node(*args: Any, **kwargs: Any) -> Node:
    """``kedro.pipeline.node`` without the warning about dots in the namespaced names we read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        return node(*args, **kwargs)


def tokenized_inputs(modalities: list[str]) -> dict[str, str]:
    """Node inputs ``{modality: "<modality>.tokenized"}``: the bundles arrive as keyword arguments."""
    return {m: f"{m}.tokenized" for m in modalities}


#: Separates modality and key in the keyword names of :func:`modality_param_inputs` (``image__mask_ratio``).
_SEP = "__"


def modality_param_inputs(modalities: list[str], keys: tuple[str, ...]) -> dict[str, str]:
    """Node inputs ``{"<modality>__<key>": "params:<modality>.<key>"}``: the keys of every modality's block that a
    stage reads, as keyword arguments (so a run reads, and DVC tracks, exactly those keys)."""
    return {f"{m}{_SEP}{k}": f"params:{m}.{k}" for m in modalities for k in keys}


def split_stage_inputs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A stage node's keyword arguments → ``({modality: bundle}, {modality: {key: value}})``."""
    bundles: dict[str, Any] = {}
    params: dict[str, dict[str, Any]] = {}
    for name, value in kwargs.items():
        m, sep, key = name.partition(_SEP)
        if sep:
            params.setdefault(m, {})[key] = value
        else:
            bundles[name] = value
    return bundles, params

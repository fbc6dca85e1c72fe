"""What the pipeline families share: the checkpoint annotation, a quiet ``node``, the tokenized inputs."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from kedro.pipeline import Node, node

__all__ = ["Checkpoint", "quiet_node", "tokenized_inputs"]

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

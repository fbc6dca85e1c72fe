"""Training in pure PyTorch (never imports Kedro): one trainer, objectives per stage, checkpoints.

``TrainerConfig`` imports without torch; the other names load torch on first use.
"""

from typing import Any

from omnivec2_pipelines.training.config import TrainerConfig

__all__ = ["Checkpoint", "Trainer", "TrainerConfig", "load_checkpoint", "save_checkpoint"]
_LAZY = {"Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
         "Trainer": "trainer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

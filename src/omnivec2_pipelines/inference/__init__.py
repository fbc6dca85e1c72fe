"""Using a trained network: predictions on raw inputs (:class:`Predictor`) and models exported for serving.

Importing this package is cheap: torch loads when :class:`Predictor`, :class:`Predictions` or an export
function is first used (``from omnivec2_pipelines.inference import Predictor``)::

    from omnivec2_pipelines.inference import Predictor
    pred = Predictor.from_checkpoint("data/06_models/multitask").predict("image", "classification", "digits/")
    pred.to_frame()   # id, prediction, probability, p_<class>...
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it (imported on first access).
_LAZY = {
    "Predictor": "omnivec2_pipelines.inference.predictor",
    "Predictions": "omnivec2_pipelines.inference.predictor",
    "SingleStream": "omnivec2_pipelines.inference.export",
    "export_task": "omnivec2_pipelines.inference.export",
    "export_checkpoint": "omnivec2_pipelines.inference.export",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value

"""Task kinds: what a (modality, task) pair's head predicts, how it is trained and scored.

Each kind (classification, regression, dense_regression, segmentation) is one module that
registers a :class:`~omnivec2_pipelines.tasks.base.TaskKind` with :func:`register_task_kind`: its
head factory, loss, metrics with their units, main metric and direction, which batch
augmentations its targets allow, and its classical baseline. Heads, objectives, evaluation,
validation, the sweep, the report and the study look kinds up with :func:`get_task_kind`; adding a
kind is one module here (imported below). Importing this package does not import torch or
scikit-learn: they are loaded when a loss, head or baseline is first used.
"""

from omnivec2_pipelines.tasks.base import TaskKind, get_task_kind, register_task_kind, task_kinds
from omnivec2_pipelines.tasks import classification, dense_regression, regression, segmentation  # noqa: F401,E402

__all__ = ["TaskKind", "get_task_kind", "register_task_kind", "task_kinds"]

"""Modalities: each module registers one :class:`~.base.Modality` at import.

Importing this package registers ``image``, ``audio`` and ``time_series``; look them up with
:func:`get_modality`.
"""

from omnivec2_pipelines.modalities.base import (
    SPLITS,
    TABLE_COLUMNS,
    ArrayBundle,
    DataError,
    Modality,
    TaskSpec,
    assign_val_split,
    atomic_directory,
    check_source,
    get_modality,
    register,
    registered_modalities,
    table_class_names,
)
from omnivec2_pipelines.modalities import audio, image, time_series  # noqa: E402,F401  (register)

__all__ = [
    "SPLITS",
    "TABLE_COLUMNS",
    "ArrayBundle",
    "DataError",
    "Modality",
    "TaskSpec",
    "assign_val_split",
    "atomic_directory",
    "check_source",
    "get_modality",
    "register",
    "registered_modalities",
    "table_class_names",
    "audio",
    "image",
    "time_series",
]

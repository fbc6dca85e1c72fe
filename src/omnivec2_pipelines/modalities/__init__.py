"""Modalities: each module registers one :class:`~.base.Modality` at import.

Importing this package imports every module in it, so each registers its modality; a new
modality is one new module. Look them up with :func:`get_modality`. A modality module imports
only :mod:`.base`, the shared preprocessing of :mod:`._shared`, the on-disk formats
(:mod:`omnivec2_pipelines.formats`) and the parameter checkers (:mod:`omnivec2_pipelines.checks`),
never another modality; its sample data lives in :mod:`omnivec2_pipelines.sample_data`.
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
import importlib as _importlib
import pkgutil as _pkgutil

for _mod in _pkgutil.iter_modules(__path__):
    if _mod.name != "base" and not _mod.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_mod.name}")

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
]

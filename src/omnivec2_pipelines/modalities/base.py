"""The contract every modality implements: read a standard layout, make sample data, tokenize.

A modality is one module in this package that defines a subclass of :class:`Modality` and
registers it with :func:`register`. Pipelines, the model and the trainer only talk to this
interface, so adding a modality never means copying a pipeline.

Data flow per modality::

    standard on-disk layout ──read()──► canonical table (pandas, one row per sample, `split` column)
                            ──read_chunks()──► the same table as row chunks of bounded size (ingestion)
                            ──tokenize()──► ArrayBundle (model-ready numpy arrays per split + meta)
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.formats.base import REQUIRED_SPLITS, SPLITS, DataError, ErrorPolicy  # noqa: F401 (re-exported)

#: Columns every canonical table has (payload columns are modality specific).
TABLE_COLUMNS: tuple[str, ...] = ("sample_id", "source_file", "label", "label_name", "split")


@dataclass(frozen=True)
class TaskSpec:
    """One supervised task of a modality, as the model and evaluation see it.

    Attributes:
        name: Task name, unique within the modality (e.g. ``"classification"``).
        kind: A registered task kind (:mod:`omnivec2_pipelines.tasks`: ``classification``,
            ``regression``, ``dense_regression``, ``segmentation``): head, loss, metrics, baseline.
        input_key: Array key (without split prefix) of the model input, e.g. ``"x"``.
        target_key: Array key (without split prefix) of the target, e.g. ``"y.classification"``.
        out_dim: Number of classes, or number of regressed values per sample.
        out_shape: Shape of one regression target (``[out_dim]`` for classification).
        class_names: Class names in label order (classification only).
    """

    name: str
    kind: str
    input_key: str
    target_key: str
    out_dim: int
    out_shape: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TaskSpec":
        d = dict(d)
        d["out_shape"] = tuple(d.get("out_shape", ()))
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(**d)


def classification_task(class_names: tuple[str, ...] | list[str], input_key: str = "x",
                        name: str = "classification") -> TaskSpec:
    """The usual classification task: ``y.<name>`` int64 labels over ``class_names``."""
    names = tuple(class_names)
    return TaskSpec(name=name, kind="classification", input_key=input_key, target_key=f"y.{name}",
                    out_dim=len(names), out_shape=(len(names),), class_names=names)


@dataclass
class ArrayBundle:
    """Model-ready arrays of one modality, keyed ``"<split>.<key>"``, plus JSON-able metadata.

    ``meta`` always holds:

    * ``modality``: the modality name;
    * ``tokenizer``: keyword arguments for the model's tokenizer of this modality, at least
      ``kind`` (e.g. ``"patch2d"``, ``"time_patch"``), ``in_channels`` and the sample shape;
    * ``pretrain_input_key``: the array key fed to masked pretraining (usually ``"x"``);
    * ``tasks``: ``{task_name: TaskSpec.to_dict()}``;
    * ``splits``: ``{split: n_samples}``;
    * anything else useful for inference (normalisation statistics, sample rate, ...).
    """

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def get(self, split: str, key: str) -> np.ndarray:
        name = f"{split}.{key}"
        if name not in self.arrays:
            raise KeyError(f"array {name!r} not in bundle of {self.meta.get('modality')!r}; "
                           f"have {sorted(self.arrays)}")
        return self.arrays[name]

    def has(self, split: str, key: str) -> bool:
        return f"{split}.{key}" in self.arrays

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return {k: TaskSpec.from_dict(v) for k, v in self.meta.get("tasks", {}).items()}

    def save(self, path: str | Path) -> None:
        """Write one safetensors file (arrays) with the meta as JSON in its header, atomically."""
        from safetensors.numpy import save_file

        from omnivec2_pipelines.utils import atomic_path

        with atomic_path(path) as tmp:
            save_file(dict(self.arrays), str(tmp), metadata={"meta": json.dumps(self.meta)})

    @classmethod
    def load(cls, path: str | Path) -> "ArrayBundle":
        """Read a bundle written by :meth:`save`, or a sharded bundle directory (as the tokenization
        pipeline writes it; its arrays are then read lazily), without Kedro."""
        if Path(path).is_dir():
            from omnivec2_pipelines.shards import load_bundle

            arrays, meta = load_bundle(path)
            return cls(arrays, meta)
        from safetensors import safe_open
        from safetensors.numpy import load_file

        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
        return cls(load_file(str(path)), json.loads(header.get("meta", "{}")))


class Modality(abc.ABC):
    """Reader, sample-data maker and deterministic preprocessing of one modality."""

    #: Registry name, e.g. ``"image"``.
    name: str = ""
    #: Source formats :meth:`read` understands (``source.format`` values).
    formats: tuple[str, ...] = ()
    #: Keys of ``<name>.source`` beside :data:`COMMON_SOURCE_KEYS`, for every format (optional ones too).
    source_keys: tuple[str, ...] = ()
    #: Keys of ``<name>.sample_data`` beside :data:`COMMON_SAMPLE_DATA_KEYS`.
    sample_data_keys: tuple[str, ...] = ()
    #: Keys of ``<name>.tokenization``: names, or a schema mapping each key to ``None`` (any value),
    #: :data:`~omnivec2_pipelines.params_schema.SIZE` (a size, also written ``"32x32"``) or a nested schema.
    tokenization_keys: tuple[str, ...] | dict[str, Any] = ()
    #: Every task :meth:`tokenize` can produce (which of them a data set yields may depend on it).
    task_names: tuple[str, ...] = ("classification",)

    @abc.abstractmethod
    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write the embedded default data set under ``root`` in the standard layout.

        Deterministic for fixed ``params``. Returns a small JSON-able manifest
        (source of the data, number of files, classes). The built-in modalities keep their
        generators and exporters in :mod:`omnivec2_pipelines.sample_data` (``<name>.py``), imported
        only by this method, so a reader module is reading, validation and tokenization only.
        """

    @abc.abstractmethod
    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read ``source["path"]`` in layout ``source["format"]`` into the canonical table.

        Raises:
            DataError: naming the path/file and what was expected.
        """

    def read_chunks(self, source: dict[str, Any], batch_files: int) -> Iterator[pd.DataFrame]:
        """Read the canonical table as consecutive row chunks, decoding at most ``batch_files`` files each.

        Concatenated in order, the chunks equal :meth:`read` (same rows, columns, dtypes, index).
        Each chunk's ``attrs["ingestion_errors"]`` holds the errors found *so far* (cumulative),
        so the last chunk's is the complete report. A reader raises every data-set-wide error
        before it finishes, so a consumer that commits only after the last chunk never commits a
        bad table.

        The default reads the whole table as one chunk; readers whose memory grows with the data
        override it (the image reader).

        Args:
            source: The modality's ``source`` parameters (as for :meth:`read`).
            batch_files: Most files decoded per chunk (a positive int).

        Raises:
            DataError: as :meth:`read`, or a bad ``batch_files``.
        """
        check_batch_files(batch_files, self.name)
        yield self.read(source)

    @abc.abstractmethod
    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Turn the canonical table into model-ready arrays (deterministic)."""

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """Apply the fitted tokenization of a bundle (``meta``: everything :meth:`tokenize` fitted on train and
        stored there) to canonical-table rows, without refitting: ``{input key: array}`` for every model
        input key of the bundle's tasks (``"x"``, ``"x_context"``, ...), rows in the table's order.

        :meth:`tokenize` uses the same code for its splits, so ``preprocess(rows of a split, bundle.meta)``
        equals that split's arrays bit for bit. The rows need no ``label``/``split`` columns.

        Raises:
            DataError: a row that does not fit (wrong channels, unknown column, ...), naming it.
        """
        raise NotImplementedError(f"{self.name}: preprocess is not implemented for this modality")

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw, unlabelled inputs → canonical-table rows for :meth:`preprocess`: a file path, a folder, a list
        of paths, or in-memory objects (arrays, PIL images, strings, DataFrames, as the modality allows).
        An ``id`` column names each row (file name, or the position for in-memory objects).

        Raises:
            DataError: naming the input that cannot be read and what was expected.
        """
        raise NotImplementedError(f"{self.name}: read_inputs is not implemented for this modality")

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Features for the classical baseline of a task whose model input is ``x``: (N, F).

        The default flattens every sample; override where a flat array is meaningless
        (e.g. bag of token ids for text).
        """
        return x.reshape(len(x), -1).astype(np.float32)


#: ``<modality>.source`` keys of every modality (each module adds its own in ``Modality.source_keys``).
COMMON_SOURCE_KEYS: tuple[str, ...] = ("format", "path", "on_error", "batch_files", "val_fraction", "seed")
#: ``<modality>.sample_data`` keys of every modality: ``path`` is where the sample data set is written.
COMMON_SAMPLE_DATA_KEYS: tuple[str, ...] = ("path",)

#: Default ``<modality>.source.batch_files``: files decoded per table chunk during ingestion.
#: Bounds ingestion memory: the embedded image set (5,000 MNIST files) is read in three chunks. A run on an
#: in-memory catalog (no ``TableChunksDataset``) needs the whole table in one chunk: raise it there.
DEFAULT_BATCH_FILES: int = 2048


def check_batch_files(value: Any, modality: str) -> int:
    """Return ``value`` as the ``<modality>.source.batch_files`` int.

    Raises:
        DataError: when ``value`` is not a positive int (bools and floats are refused).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"{modality}.source.batch_files must be a positive int (files decoded per "
                        f"table chunk), got {value!r}")
    return int(value)


def source_batch_files(source: dict[str, Any], modality: str) -> int:
    """``source["batch_files"]`` validated, or :data:`DEFAULT_BATCH_FILES` when absent."""
    return check_batch_files(source.get("batch_files", DEFAULT_BATCH_FILES), modality)


def concat_chunks(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """The table of :meth:`Modality.read_chunks` chunks in order, with the last chunk's error report.

    Raises:
        DataError: when there are no chunks.
    """
    if not chunks:
        raise DataError("a reader produced no table chunks", reason="empty")
    table = chunks[0] if len(chunks) == 1 else pd.concat(chunks)
    errors = chunks[-1].attrs.get("ingestion_errors")
    table.attrs = {} if errors is None else {"ingestion_errors": errors}
    return table


_REGISTRY: dict[str, Modality] = {}


def register(modality: Modality) -> Modality:
    """Add a modality instance to the registry (called at import of its module)."""
    if not modality.name:
        raise ValueError(f"{type(modality).__name__} has no name")
    _REGISTRY[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    """Return the registered modality called ``name``."""
    from omnivec2_pipelines import modalities  # noqa: F401  (imports register everything)

    if name not in _REGISTRY:
        raise KeyError(f"unknown modality {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def registered_modalities() -> list[str]:
    from omnivec2_pipelines import modalities  # noqa: F401

    return sorted(_REGISTRY)


def check_source(source: dict[str, Any], modality: Modality) -> tuple[str, Path]:
    """Validate ``source.format``/``source.path`` before any heavy work."""
    if not isinstance(source, dict):
        raise DataError(f"{modality.name}.source must be a mapping with 'format' and 'path', "
                        f"got {type(source).__name__}")
    fmt = source.get("format")
    if fmt not in modality.formats:
        raise DataError(f"{modality.name}.source.format={fmt!r} is not supported; "
                        f"expected one of {list(modality.formats)}")
    path = source.get("path")
    if not isinstance(path, (str, Path)) or not str(path):
        raise DataError(f"{modality.name}.source.path must be a path string, got {path!r}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{modality.name}.source.path: {p} does not exist (expected a "
                        f"{fmt!r} layout; run `kedro run --pipelines sample_data` to write the "
                        f"embedded default data, or point {modality.name}.source.path at your data)")
    return fmt, p


def check_split_labels(table: pd.DataFrame, modality: str) -> None:
    """Every class of the val/test splits must occur in train (else nothing could learn it).

    Raises:
        DataError: naming the classes, the split and the modality (reason ``"labels"``).
    """
    if "label" not in table or "split" not in table:
        return
    labelled = table[table["label"] >= 0]
    if labelled.empty:
        return
    train = set(labelled.loc[labelled["split"] == "train", "label_name"])
    if not train:
        raise DataError(f"{modality}: the train split has no labelled samples", reason="labels")
    for split in ("val", "test"):
        missing = sorted(set(labelled.loc[labelled["split"] == split, "label_name"]) - train)
        if missing:
            raise DataError(f"{modality}: classes {missing} occur in the {split} split but not in train; "
                            f"add training samples of them or remove them from {split}", reason="labels")


def assign_val_split(table: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Move a stratified ``fraction`` of the train rows to ``val`` (deterministic).

    Does nothing when the table already has val rows or ``fraction`` is 0.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {fraction!r}")
    if fraction == 0 or (table["split"] == "val").any():
        return table
    table = table.copy()
    rng = np.random.default_rng(seed)
    for _, idx in table[table["split"] == "train"].groupby("label").groups.items():
        idx = np.array(sorted(idx))
        n_val = int(round(len(idx) * fraction))
        if n_val and len(idx) - n_val >= 1:
            table.loc[rng.choice(idx, size=n_val, replace=False), "split"] = "val"
    return table


def table_class_names(table: pd.DataFrame) -> tuple[str, ...]:
    """Class names of a canonical table in label order (labels must be exactly ``0..K-1``).

    Raises:
        DataError: when a label has several names (or a name several labels), or labels
            are not contiguous from 0.
    """
    pairs = table[["label", "label_name"]].drop_duplicates()
    for col, other in (("label", "label_name"), ("label_name", "label")):
        dup = pairs[pairs[col].duplicated(keep=False)]
        if len(dup):
            raise DataError(f"table column {col!r} value {dup[col].iloc[0]!r} maps to several "
                            f"{other!r} values {sorted(map(str, dup[other]))}; expected one each")
    labels = sorted(int(v) for v in pairs["label"])
    if labels != list(range(len(labels))):
        raise DataError(f"table labels must be 0..K-1 without gaps, got {labels}")
    names = dict(zip(pairs["label"].astype(int), pairs["label_name"].astype(str)))
    return tuple(names[i] for i in labels)


def table_channels(table: pd.DataFrame, column: str, modality: str) -> int:
    """The one channel count of a canonical table (``column``: ``"channels"``, ``"n_channels"``).

    Raises:
        DataError: (reason ``"channels"``) when the rows have several counts.
    """
    channels = sorted(set(int(c) for c in table[column]))
    if len(channels) != 1:
        raise DataError(f"{modality} table mixes channel counts {channels}; expected one", reason="channels")
    return channels[0]


def label_order(names: set[str]) -> list[str]:
    """Sort class names numerically when all are numbers (``2`` before ``10``), else as text."""
    def num(x: str) -> float | None:
        try:
            v = float(x)
        except ValueError:
            return None
        return v if math.isfinite(v) else None

    if names and all(num(x) is not None for x in names):
        return sorted(names, key=lambda x: (num(x), x))
    return sorted(names)


def stratified_test_split(labels: np.ndarray, fraction: Any, seed: Any, key: str) -> np.ndarray:
    """Deterministic stratified choice of test rows: bool mask, ``fraction`` of each label.

    A label with a single row keeps it in train. ``key`` names the parameter in errors.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0.0 < float(fraction) < 1.0:
        raise DataError(f"{key} must be a number in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(int(seed))
    test = np.zeros(len(labels), dtype=bool)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        n = int(round(len(idx) * float(fraction)))
        if n and len(idx) - n >= 1:
            test[rng.choice(idx, size=n, replace=False)] = True
    return test


@contextlib.contextmanager
def atomic_directory(root: Path) -> Iterator[Path]:
    """Build a directory tree in a temporary sibling of ``root`` that replaces ``root`` on success.

    Yields the temporary directory. When the ``with`` body succeeds, an existing ``root`` is
    removed and the temporary directory is renamed to ``root``; when it fails, the temporary
    directory is removed and ``root`` is left untouched.
    """
    from omnivec2_pipelines.utils import atomic_path

    with atomic_path(root) as tmp:
        tmp.mkdir()
        yield tmp

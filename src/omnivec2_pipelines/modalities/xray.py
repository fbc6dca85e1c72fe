"""X-ray modality: ImageFolder of PNG/JPEG *and* DICOM files → 1-channel ``(N, 1, H, W)`` arrays.

Layout (``source.format: imagefolder``)::

    root/<split>/<class>/<name>.(png|jpg|jpeg|bmp|dcm|dicom)     split in {train, val, test}

PNG/JPEG and DICOM files may be mixed in one tree. ``train`` and ``test`` are required, ``val``
is optional (carved from train otherwise). Hidden files are ignored; any other file is an error.

Every image becomes one 8-bit grayscale channel:

* PNG/JPEG/BMP: 8-bit grayscale as stored; an RGB(A) file whose colour channels are all equal
  (grayscale saved as RGB) is reduced to one channel, a truly coloured one is a ``channels``
  error; 16-bit / 32-bit grayscale PNG is scaled to 0..255 by its own min/max like DICOM.
* DICOM (``pydicom``): ``pixel_array`` → ``* RescaleSlope + RescaleIntercept`` → scaled to
  0..255 with the image's own min/max → inverted when ``PhotometricInterpretation`` is
  ``MONOCHROME1`` (so bone is always bright). A constant image maps to 0. Colour DICOM
  (``SamplesPerPixel != 1``) is a ``channels`` error; compressed transfer syntaxes need a pixel
  decoder plug-in (not installed) and are an ``encoding`` error. Multi-frame DICOM is a
  ``shape`` error unless ``source.dicom_frames: first`` (then the first frame is used).

Tokenization is the image modality's (bilinear resize to ``size``, ``patch_size`` patches,
normalisation with train statistics) through the ``patch2d`` tokenizer.

Ingestion decodes at most ``source.batch_files`` files at a time (:meth:`XrayModality.read_chunks`),
so its memory does not grow with the data set.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    assign_val_split,
    atomic_directory,
    check_batch_files,
    check_source,
    concat_chunks,
    register,
    source_batch_files,
)
from omnivec2_pipelines.modalities.image import (
    IMAGE_EXTENSIONS,
    ImageModality,
    _list_class_dirs,
    _list_images,
    image_row,
    load_image,
)
from omnivec2_pipelines.params_schema import SIZE

#: DICOM file extensions (lower case).
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")
#: Classes of the generated sample data (label order = sorted names).
SAMPLE_CLASSES: tuple[str, ...] = ("cardiomegaly", "effusion", "normal", "opacity")
#: SOP class of the written sample DICOMs: Digital X-Ray Image Storage - For Presentation.
_DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
#: UID root used by pydicom for generated UIDs.
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_REQUIRED_SPLITS = ("train", "test")

#: One file of an ImageFolder listing: (split folder, class folder, path).
XrayFile = tuple[str, str, Path]


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
def minmax_uint8(values: np.ndarray, where: str) -> np.ndarray:
    """Scale any real array to ``uint8`` 0..255 with its own min/max (constant → 0).

    Raises:
        DataError: (reason ``nan``) when ``values`` holds NaN/inf.
    """
    v = np.asarray(values, dtype=np.float64)
    if not np.isfinite(v).all():
        raise DataError(f"{where}: image has {int((~np.isfinite(v)).sum())} NaN/inf pixel(s)",
                        reason="nan")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.zeros(v.shape, dtype=np.uint8)
    return np.round((v - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def load_gray_image(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG/BMP/TIFF file to one ``uint8`` grayscale channel ``(H, W)``.

    8-bit grayscale is kept as stored; 16/32-bit and float grayscale are scaled to 0..255 by
    the image's own min/max; RGB(A)/palette images are accepted only when their colour channels
    are identical (grayscale saved as colour).

    Raises:
        DataError: corrupt file (``corrupt``), a coloured image (``channels``), NaN pixels
            (``nan``), or an unsupported mode (``invalid``).
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in _HIGH_DEPTH_MODES:
                img.load()
                return minmax_uint8(np.asarray(img), str(path))
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                        f"expected a valid {'/'.join(IMAGE_EXTENSIONS)} file", reason="corrupt") from e
    try:
        arr = load_image(path)  # (H, W, C), C in {1, 3}
    except DataError as e:
        reason = "corrupt" if "corrupt" in str(e) else e.reason
        raise DataError(str(e), reason=reason) from e
    if arr.shape[2] == 1:
        return arr[:, :, 0]
    if not ((arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 0] == arr[:, :, 2]).all()):
        raise DataError(f"{path}: colour image (3 different channels) in a 1-channel grayscale "
                        f"data set; expected grayscale (or RGB with identical channels)",
                        reason="channels")
    return arr[:, :, 0]


def load_dicom(path: Path, frames: str = "error") -> np.ndarray:
    """Decode one DICOM file to a ``uint8`` grayscale image ``(H, W)``.

    ``pixel_array * RescaleSlope + RescaleIntercept``, scaled to 0..255 by the image's own
    min/max, inverted for ``MONOCHROME1``.

    Args:
        path: The ``.dcm`` file.
        frames: ``"error"`` (multi-frame files raise) or ``"first"`` (use frame 0).

    Raises:
        DataError: not a DICOM file / truncated pixel data (``corrupt``), no pixel data
            (``missing``), colour data (``channels``), multi-frame (``shape``), compressed
            data without a decoder (``encoding``), NaN (``nan``), zero pixels (``empty``).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: unreadable or corrupt DICOM file ({type(e).__name__}: {e}); "
                        f"expected a DICOM Part 10 file with the 'DICM' header", reason="corrupt") from e
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError(f"{path}: DICOM file has no pixel data element (7FE0,0010); expected an "
                        f"image", reason="missing")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if spp != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(f"{path}: DICOM has SamplesPerPixel={spp}, PhotometricInterpretation="
                        f"{photometric!r}; expected 1-sample MONOCHROME1/MONOCHROME2 grayscale",
                        reason="channels")
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as e:
        raise DataError(f"{path}: cannot decode DICOM pixel data ({type(e).__name__}: {e}); "
                        f"expected uncompressed pixel data (decompress the file, e.g. with "
                        f"gdcmconv --raw)", reason="encoding") from e
    except (ValueError, AttributeError, KeyError, TypeError, EOFError, OSError) as e:
        raise DataError(f"{path}: corrupt or truncated DICOM pixel data ({type(e).__name__}: {e})",
                        reason="corrupt") from e
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames > 1 or arr.ndim == 3:
        if frames != "first":
            raise DataError(f"{path}: multi-frame DICOM ({n_frames} frames, pixel array "
                            f"{tuple(arr.shape)}); expected one frame per file (or set "
                            f"xray.source.dicom_frames: first)", reason="shape")
        arr = arr[0]
    if arr.ndim != 2:
        raise DataError(f"{path}: DICOM pixel array has shape {tuple(arr.shape)}; expected "
                        f"(rows, columns)", reason="shape")
    if arr.size == 0:
        raise DataError(f"{path}: DICOM image has zero pixels", reason="empty")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    values = arr.astype(np.float64) * slope + intercept
    out = minmax_uint8(values, str(path))
    if photometric == "MONOCHROME1":  # high values are dark: invert so bone is bright
        out = (255 - out).astype(np.uint8)
    return out


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                bits_stored: int = 12, rescale: tuple[float, float] | None = None,
                uid_seed: Sequence[str] = ("omnivec2",)) -> None:
    """Write a minimal, valid DICOM Part 10 file (Digital X-Ray, explicit VR little endian).

    Deterministic: UIDs come from ``uid_seed`` and no dates are written.

    Args:
        path: Output ``.dcm`` file.
        pixels: ``uint16`` array ``(rows, cols)``, or ``(frames, rows, cols)`` for multi-frame.
        photometric: ``"MONOCHROME2"`` (high = bright) or ``"MONOCHROME1"``.
        bits_stored: Bits used per pixel (values must fit).
        rescale: Optional ``(RescaleSlope, RescaleIntercept)`` to store.
        uid_seed: Strings hashed into the SOP instance UID.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    pixels = np.ascontiguousarray(pixels, dtype=np.uint16)
    uid = generate_uid(prefix=_UID_PREFIX, entropy_srcs=[str(s) for s in uid_seed])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _DX_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _DX_SOP_CLASS
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = generate_uid(prefix=_UID_PREFIX, entropy_srcs=["study", *map(str, uid_seed)])
    ds.SeriesInstanceUID = generate_uid(prefix=_UID_PREFIX, entropy_srcs=["series", *map(str, uid_seed)])
    ds.Modality = "DX"
    ds.PatientID = "SYNTHETIC"
    ds.BodyPartExamined = "CHEST"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    if pixels.ndim == 3:
        ds.NumberOfFrames = int(pixels.shape[0])
    ds.Rows, ds.Columns = int(pixels.shape[-2]), int(pixels.shape[-1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = int(bits_stored)
    ds.HighBit = int(bits_stored) - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope = f"{float(rescale[0]):g}"
        ds.RescaleIntercept = f"{float(rescale[1]):g}"
    ds.PixelData = pixels.astype("<u2").tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)


# --------------------------------------------------------------------------------------------
# ImageFolder listing shared with the infrared modality
# --------------------------------------------------------------------------------------------
def list_imagefolder(root: Path, extensions: Sequence[str], modality: str) -> list[tuple[str, str, Path]]:
    """``(split, class, path)`` of every file in an ImageFolder tree (sorted).

    Raises:
        DataError: ``root`` not a folder, missing train/test, empty split/class folder, stray
            files, or a file whose extension is not in ``extensions``.
    """
    if not root.is_dir():
        raise DataError(f"{modality}.source.path: {root} is not a directory; expected an "
                        f"ImageFolder tree root/<split>/<class>/<image>")
    missing = [s for s in _REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root}: missing split folder(s) {missing}; expected "
                        f"root/train/<class>/..., root/test/<class>/... (val optional)",
                        reason="missing")
    files: list[tuple[str, str, Path]] = []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        for class_dir in _list_class_dirs(root / split):
            files += [(split, class_dir.name, p) for p in _list_images(class_dir, extensions, "a file")]
    return files


def gray_imagefolder_table(root: Path, files: list[tuple[str, str, Path]], policy: ErrorPolicy,
                           loader: Any, modality: str) -> pd.DataFrame:
    """Canonical 1-channel image table (image modality columns + ``file_format``).

    Each file is decoded with ``loader(path) -> (H, W) uint8`` through ``policy``.

    Raises:
        DataError: all files skipped, or no train/test rows left after skipping.
    """
    classes = sorted({c for _, c, _ in files})
    label_of = {c: i for i, c in enumerate(classes)}
    rows: list[dict[str, Any]] = []
    for split, cls, path in files:
        arr = policy.call(path, loader, path)
        if arr is None:
            continue
        rows.append({**image_row(root, path, label_of[cls], cls, split, arr), "file_format": _file_format(path)})
    if not rows:
        raise DataError(f"{root}: all {len(files)} file(s) were skipped as unreadable "
                        f"({modality}.source.on_error: skip); nothing left to read")
    table = pd.DataFrame(rows)
    if table["sample_id"].duplicated().any():
        dup = table["sample_id"][table["sample_id"].duplicated()].iloc[0]
        raise DataError(f"{root}: two files map to sample id {dup!r} (same name with different "
                        f"extensions); expected unique file stems per class folder")
    for split in _REQUIRED_SPLITS:
        if not (table["split"] == split).any():
            raise DataError(f"{root}: no readable {split!r} images left after skipping bad files")
    # labels must stay 0..K-1 even when every file of a class was skipped
    present = sorted(set(table["label_name"]))
    table["label"] = table["label_name"].map({c: i for i, c in enumerate(present)})
    return table.astype({"label": "int64", "height": "int64", "width": "int64", "channels": "int64"})


def check_pair(params: dict[str, Any], key: str, prefix: str) -> tuple[int, int]:
    """Read a ``[a, b]`` pair of positive ints; errors name ``<prefix>.<key>``."""
    value = params.get(key)
    try:
        a, b = (int(v) for v in value)
        ok = a > 0 and b > 0 and all(float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{prefix}.{key} must be a pair of positive ints [H, W], got {value!r}")
    return a, b


def tokenize_gray_images(modality: ImageModality, table: pd.DataFrame, params: dict[str, Any],
                         prefix: str) -> ArrayBundle:
    """Validate ``size``/``patch_size`` (errors name ``prefix``), then the image tokenization."""
    size = check_pair(params, "size", prefix)
    patch = check_pair(params, "patch_size", prefix)
    if size[0] % patch[0] or size[1] % patch[1]:
        raise DataError(f"{prefix}.patch_size={list(patch)} must divide {prefix}.size={list(size)} "
                        f"in both axes")
    if not (table["split"] == "train").any():
        raise DataError(f"{modality.name} table has no 'train' rows; normalisation statistics "
                        f"are computed on the train split")
    return ImageModality.tokenize(modality, table, {"size": list(size), "patch_size": list(patch)})


# --------------------------------------------------------------------------------------------
# generated sample data
# --------------------------------------------------------------------------------------------
def _soft_ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float,
                  soft: float = 0.06) -> np.ndarray:
    """Smooth 0..1 indicator of an ellipse."""
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return 1.0 / (1.0 + np.exp(np.clip((d - 1.0) / soft, -50, 50)))


def synth_chest_xray(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One GENERATED chest-X-ray-like image (not a real radiograph), float ``(size, size)`` in [0, 1].

    Anatomy (all with random jitter): soft-tissue thorax, two dark lung fields with faint
    curved ribs, a bright spine/mediastinum band and a heart shadow. Findings per class:
    ``normal`` none; ``opacity`` a bright blob inside one lung; ``effusion`` a bright lower
    region of one or both lungs with a meniscus; ``cardiomegaly`` a heart shadow about 1.7x
    wider. Then random contrast/brightness and Gaussian noise.
    """
    if cls not in SAMPLE_CLASSES:
        raise ValueError(f"unknown sample class {cls!r}; expected one of {SAMPLE_CLASSES}")
    g = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(g, g, indexing="ij")  # y down, x right, both in [-1, 1]
    j = lambda s: rng.uniform(-s, s)  # noqa: E731
    img = np.full((size, size), 0.06)
    body = _soft_ellipse(xx, yy, j(0.03), 0.08 + j(0.03), 0.93 + j(0.04), 1.1 + j(0.05), 0.04)
    img += 0.42 * body
    lungs = []
    for side in (-1.0, 1.0):
        cx, cy = side * (0.40 + j(0.03)), -0.08 + j(0.04)
        rx, ry = 0.26 + j(0.03), 0.58 + j(0.05)
        lung = _soft_ellipse(xx, yy, cx, cy, rx, ry, 0.08)
        lungs.append((lung, cx, cy, rx, ry))
        ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (yy * (3.2 + j(0.3)) - 0.6 * (xx - cx) ** 2 * side)
                                  + rng.uniform(0, 2 * np.pi))
        img += lung * (-0.30 + 0.07 * ribs)
    spine = 1.0 / (1.0 + np.exp(np.clip((np.abs(xx - j(0.02)) - 0.09) / 0.03, -50, 50)))
    img += 0.14 * spine * body
    heart_rx = (0.36 + j(0.03)) if cls == "cardiomegaly" else (0.21 + j(0.03))
    heart = _soft_ellipse(xx, yy, 0.10 + j(0.04), 0.32 + j(0.04), heart_rx, 0.24 + j(0.03), 0.08)
    img = img * (1.0 - heart) + (0.58 + j(0.04)) * heart
    if cls == "opacity":
        lung, cx, cy, rx, ry = lungs[int(rng.integers(2))]
        bx, by = cx + rng.uniform(-0.5, 0.5) * rx, cy + rng.uniform(-0.55, 0.35) * ry
        sigma = rng.uniform(0.08, 0.14)
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma ** 2))
        img += rng.uniform(0.28, 0.38) * blob * np.clip(lung * 1.3, 0, 1) * (1.0 - heart)
    elif cls == "effusion":
        sides = [0, 1] if rng.random() < 0.35 else [int(rng.integers(2))]
        for s in sides:
            lung, cx, cy, rx, ry = lungs[s]
            level = rng.uniform(0.05, 0.28)
            meniscus = level - 0.12 * ((xx - cx) / rx) ** 2  # fluid line rises laterally
            fluid = 1.0 / (1.0 + np.exp(np.clip(-(yy - meniscus) / 0.04, -50, 50)))
            img += rng.uniform(0.28, 0.36) * fluid * lung * (1.0 - heart)
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05)
    img += rng.normal(0.0, 0.025, size=img.shape)
    return np.clip(img, 0.0, 1.0)


class XrayModality(ImageModality):
    """Radiographs (PNG/JPEG and DICOM mixed) in ImageFolder layout, one grayscale channel."""

    name = "xray"
    formats = ("imagefolder",)
    source_keys = ("dicom_frames",)
    sample_data_keys = ("per_class", "test_fraction", "size", "dicom_size", "seed")
    tokenization_keys = {"size": SIZE, "patch_size": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a GENERATED chest-X-ray-like data set (not real radiographs), PNG + DICOM.

        Four classes (:data:`SAMPLE_CLASSES`) drawn by :func:`synth_chest_xray`. Every third
        image (global index ``i % 3 == 0``) is written as a 16-bit MONOCHROME2 DICOM
        (12 bits stored, ``dicom_size`` pixels square, RescaleSlope/Intercept ``1/0``), the others
        as 8-bit grayscale PNG of ``size`` pixels, into ``root/{train,test}/<class>/``.

        Args:
            root: Output folder (replaced atomically).
            params: ``per_class`` (250), ``test_fraction`` (0.2), ``size`` (48),
                ``dicom_size`` (64), ``seed`` (0).

        Returns:
            Manifest ``{"source", "files", "dicom_files", "classes"}``.
        """
        per = int(params.get("per_class", 250))
        test_fraction = float(params.get("test_fraction", 0.2))
        size, dsize = int(params.get("size", 48)), int(params.get("dicom_size", 64))
        seed = int(params.get("seed", 0))
        if per < 2 or not 0.0 < test_fraction < 1.0 or size < 8 or dsize < 8:
            raise DataError(f"xray sample data params need per_class >= 2, 0 < test_fraction < 1, "
                            f"size and dicom_size >= 8; got {params}")
        rng = np.random.default_rng(seed)
        n_test = max(1, int(round(per * test_fraction)))
        n_files = n_dicom = 0
        with atomic_directory(Path(root)) as tmp:
            for cls in SAMPLE_CLASSES:
                for k in range(per):
                    split = "test" if k < n_test else "train"
                    is_dicom = n_files % 3 == 0
                    img = synth_chest_xray(cls, dsize if is_dicom else size, rng)
                    stem = tmp / split / cls / f"{cls}_{k:04d}"
                    stem.parent.mkdir(parents=True, exist_ok=True)
                    if is_dicom:
                        write_dicom(stem.with_suffix(".dcm"), np.round(img * 4095).astype(np.uint16),
                                    rescale=(1.0, 0.0), uid_seed=("omnivec2-xray", seed, cls, k))
                        n_dicom += 1
                    else:
                        buf = io.BytesIO()
                        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, format="PNG")
                        stem.with_suffix(".png").write_bytes(buf.getvalue())
                    n_files += 1
        return {"source": "synthetic chest-X-ray-like images generated by omnivec2_pipelines "
                          "(generated, not real radiographs; 1/3 DICOM, 2/3 PNG)",
                "files": n_files, "dicom_files": n_dicom, "classes": list(SAMPLE_CLASSES)}

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a mixed PNG/JPEG/DICOM ImageFolder tree into the canonical table.

        Source params: ``on_error`` (raise/skip), ``dicom_frames`` (``error``/``first``),
        ``val_fraction``, ``seed``, ``batch_files`` (see :meth:`read_chunks`; the whole table is
        returned either way). Payload columns: ``pixels`` (flattened ``uint8``), ``height``,
        ``width``, ``channels`` (always 1), ``file_format`` (``dicom``/``png``/...).

        Raises:
            DataError: missing train/test split, empty split or class folder, unsupported file,
                corrupt/truncated image or DICOM, colour image, multi-frame DICOM, NaN pixels.
        """
        return concat_chunks(list(self.read_chunks(source, source_batch_files(source, self.name))))

    def read_chunks(self, source: dict[str, Any], batch_files: int) -> Iterator[pd.DataFrame]:
        """Read the tree as table chunks of at most ``batch_files`` decoded files.

        Every image is one grayscale channel, so no decision needs the pixels of other files:
        with ``on_error: raise`` the listing alone settles the classes, labels and the val split,
        and every file is decoded once, in its chunk (a bad file raises before the last chunk
        is produced). With ``on_error: skip``, which files remain (hence the labels and the val
        split) only shows by decoding, so every file is first decoded once without keeping its
        pixels (a validation pass, about twice the decoding time). The chunks (row index global,
        ``0..N-1``) concatenate to exactly the table :meth:`read` describes, with the same errors;
        every chunk's ``attrs["ingestion_errors"]`` is the complete report.

        Raises:
            DataError: as :meth:`read`, or ``batch_files`` not a positive int.
        """
        _, root = check_source(source, self)
        frames = _dicom_frames(source)
        policy = ErrorPolicy(source, self.name)
        batch_files = check_batch_files(batch_files, self.name)

        def load(path: Path) -> np.ndarray:
            return load_xray(path, frames)

        try:
            files = list_imagefolder(root, IMAGE_EXTENSIONS + DICOM_EXTENSIONS, self.name)
            kept, labels, splits = _plan_xray(root, files, policy, load, source)
            for start in range(0, len(kept), batch_files):
                stop = min(start + batch_files, len(kept))
                table = _decode_chunk(root, kept[start:stop], labels[start:stop], splits[start:stop],
                                      start, policy, load)
                table.attrs["ingestion_errors"] = policy.report()
                yield table
        finally:
            policy.close()

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Bilinear resize to ``size``, per-channel normalisation with train statistics.

        Args:
            table: Canonical x-ray table (see :meth:`read`).
            params: ``size`` ``[H, W]`` and ``patch_size`` ``[ph, pw]`` (must divide ``size``).

        Returns:
            ``"<split>.x"`` float32 ``(N, 1, H, W)``, ``"<split>.y.classification"`` int64,
            meta with a ``patch2d`` tokenizer (see
            :meth:`~omnivec2_pipelines.modalities.image.ImageModality.tokenize`).
        """
        return tokenize_gray_images(self, table, params, "tokenization.xray")


def _file_format(path: Path) -> str:
    """``"dicom"`` or the image extension without its dot (``"png"``, ``"jpg"``, ...)."""
    return "dicom" if path.suffix.lower() in DICOM_EXTENSIONS else path.suffix.lower()[1:]


def _dicom_frames(source: dict[str, Any]) -> str:
    """``source["dicom_frames"]`` validated (``"error"`` when absent)."""
    frames = source.get("dicom_frames", "error")
    if frames not in ("error", "first"):
        raise DataError(f"xray.source.dicom_frames={frames!r}; expected 'error' or 'first'")
    return frames


def load_xray(path: Path, frames: str = "error") -> np.ndarray:
    """Decode one x-ray file (DICOM by extension, else PNG/JPEG/BMP) to ``uint8`` ``(H, W)``."""
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return load_dicom(path, frames)
    return load_gray_image(path)


def _plan_xray(root: Path, files: list[XrayFile], policy: ErrorPolicy,
               load: Callable[[Path], np.ndarray],
               source: dict[str, Any]) -> tuple[list[XrayFile], list[int], list[str]]:
    """The files that will be read, with their label and split, before any chunk is decoded.

    With ``on_error: skip`` every file is decoded once (pixels dropped) to learn which remain;
    with ``raise`` all listed files remain. A data-set-wide error found from the listing under
    ``raise`` is raised only after a validation pass, so a bad file (which :meth:`XrayModality.read`
    always met first) still raises its own error.

    Raises:
        DataError: a bad file (``raise``), every file skipped, duplicate sample ids, no train
            or test file left, or a bad ``val_fraction``.
    """
    if policy.mode == "skip":
        kept = [f for f in files if policy.call(f[2], load, f[2]) is not None]
    else:
        kept = files
    try:
        return kept, *_labels_and_splits(root, kept, len(files), source)
    except (ValueError, TypeError):  # DataError, or a val_fraction that is not a number
        if policy.mode == "raise":
            for _, _, path in files:
                policy.call(path, load, path)  # (H, W) dropped; raises at the first bad file
        raise


def _labels_and_splits(root: Path, kept: list[XrayFile], n_files: int,
                       source: dict[str, Any]) -> tuple[list[int], list[str]]:
    """Label (index in the sorted class names of ``kept``) and split (val carved from train) per file.

    Raises:
        DataError: ``kept`` empty, two files with one sample id, no train or test file, or a
            bad ``val_fraction``.
    """
    if not kept:
        raise DataError(f"{root}: all {n_files} file(s) were skipped as unreadable "
                        f"(xray.source.on_error: skip); nothing left to read")
    seen: set[str] = set()
    for _, _, path in kept:
        sid = path.relative_to(root).with_suffix("").as_posix()
        if sid in seen:
            raise DataError(f"{root}: two files map to sample id {sid!r} (same name with different "
                            f"extensions); expected unique file stems per class folder")
        seen.add(sid)
    for split in _REQUIRED_SPLITS:
        if not any(k[0] == split for k in kept):
            raise DataError(f"{root}: no readable {split!r} images left after skipping bad files")
    classes = sorted({k[1] for k in kept})  # 0..K-1 even when every file of a class was skipped
    label_of = {c: i for i, c in enumerate(classes)}
    listing = pd.DataFrame({"label": [label_of[k[1]] for k in kept], "split": [k[0] for k in kept]})
    listing = listing.astype({"label": "int64"})
    listing = assign_val_split(listing, source.get("val_fraction", 0.1), source.get("seed", 0))
    return listing["label"].tolist(), listing["split"].tolist()


def _decode_chunk(root: Path, kept: list[XrayFile], labels: list[int], splits: list[str], start: int,
                  policy: ErrorPolicy, load: Callable[[Path], np.ndarray]) -> pd.DataFrame:
    """Decode one batch of files into canonical table rows ``start .. start + len(kept) - 1``.

    Raises:
        DataError: a file that fails to decode (with ``on_error: raise``), or one that no longer
            decodes after the validation pass (with ``skip``).
    """
    rows: list[dict[str, Any]] = []
    for (_, cls, path), label, split in zip(kept, labels, splits):
        arr = policy.call(path, load, path)  # (H, W)
        if arr is None:
            raise DataError(f"{path}: file changed while the data set was read (it decoded "
                            f"before); read again", reason="invalid")
        rows.append({**image_row(root, path, label, cls, split, arr), "file_format": _file_format(path)})
    table = pd.DataFrame(rows, index=pd.RangeIndex(start, start + len(rows)))
    return table.astype({"label": "int64", "height": "int64", "width": "int64", "channels": "int64"})


register(XrayModality())

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

Tokenization is the image modality's (:func:`~omnivec2_pipelines.modalities._shared.images.tokenize_images`:
bilinear resize to ``size``, ``patch_size`` patches, normalisation with train statistics) through the
``patch2d`` tokenizer.

Embedded default data: GENERATED chest-X-ray-like images, 1/3 DICOM (:mod:`omnivec2_pipelines.sample_data.xray`).

Ingestion decodes at most ``source.batch_files`` files at a time (:meth:`XrayModality.read_chunks`),
so its memory does not grow with the data set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import one_of, size_and_patch
from omnivec2_pipelines.formats.class_folders import ClassFile, list_tree
from omnivec2_pipelines.formats.images import (
    GRAY_OBJECTS,
    IMAGE_EXTENSIONS,
    gray_from_object,
    image_row,
    load_gray_image,
    minmax_uint8,
)
from omnivec2_pipelines.modalities._shared.images import preprocess_images, read_image_inputs, tokenize_images
from omnivec2_pipelines.modalities.base import (
    REQUIRED_SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    check_batch_files,
    check_source,
    concat_chunks,
    register,
    source_batch_files,
)
from omnivec2_pipelines.params_schema import SIZE

#: DICOM file extensions (lower case).
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------
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


class XrayModality(Modality):
    """Radiographs (PNG/JPEG and DICOM mixed) in ImageFolder layout, one grayscale channel."""

    name = "xray"
    formats = ("imagefolder",)
    source_keys = ("dicom_frames",)
    sample_data_keys = ("per_class", "test_fraction", "size", "dicom_size", "seed")
    tokenization_keys = {"size": SIZE, "patch_size": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a GENERATED chest-X-ray-like data set (not real radiographs), PNG + DICOM (see
        :func:`omnivec2_pipelines.sample_data.xray.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.xray import make_sample_data

        return make_sample_data(root, params)

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
            files = list_tree(root, self.name, IMAGE_EXTENSIONS + DICOM_EXTENSIONS, "a file")
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
            :func:`~omnivec2_pipelines.modalities._shared.images.tokenize_images`).
        """
        size, patch = size_and_patch(params, "xray.tokenization")
        return tokenize_images(table, size, patch, self.name)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's resize and train normalisation applied to x-ray rows: ``{"x": (N, 1, H, W) float32}``.

        Raises:
            DataError: a row that is not 1 channel, a bad payload, or a meta that is not an x-ray bundle's.
        """
        return preprocess_images(table, meta, self.name)

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """PNG/JPEG/BMP and DICOM files, folders of them, arrays ``(H, W)`` or PIL images → 1-channel
        x-ray rows (``id``, ``pixels``, ``height``, ``width``, ``channels``), decoded as :meth:`read`
        decodes files (:func:`load_xray`; multi-frame DICOM is an error, as with ``dicom_frames: error``).

        Raises:
            DataError: naming an input that is missing, not an image, colour, or not decodable.
        """
        return read_image_inputs(inputs, IMAGE_EXTENSIONS + DICOM_EXTENSIONS, load_xray, gray_from_object,
                                 GRAY_OBJECTS, self.name)


def _file_format(path: Path) -> str:
    """``"dicom"`` or the image extension without its dot (``"png"``, ``"jpg"``, ...)."""
    return "dicom" if path.suffix.lower() in DICOM_EXTENSIONS else path.suffix.lower()[1:]


def _dicom_frames(source: dict[str, Any]) -> str:
    """``source["dicom_frames"]`` validated (``"error"`` when absent)."""
    return one_of(source, "dicom_frames", "xray.source", ("error", "first"), "error")


def load_xray(path: Path, frames: str = "error") -> np.ndarray:
    """Decode one x-ray file (DICOM by extension, else PNG/JPEG/BMP) to ``uint8`` ``(H, W)``."""
    if path.suffix.lower() in DICOM_EXTENSIONS:
        return load_dicom(path, frames)
    return load_gray_image(path)


def _plan_xray(root: Path, files: list[ClassFile], policy: ErrorPolicy,
               load: Callable[[Path], np.ndarray],
               source: dict[str, Any]) -> tuple[list[ClassFile], list[int], list[str]]:
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


def _labels_and_splits(root: Path, kept: list[ClassFile], n_files: int,
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
    for split in REQUIRED_SPLITS:
        if not any(k[0] == split for k in kept):
            raise DataError(f"{root}: no readable {split!r} images left after skipping bad files")
    classes = sorted({k[1] for k in kept})  # 0..K-1 even when every file of a class was skipped
    label_of = {c: i for i, c in enumerate(classes)}
    listing = pd.DataFrame({"label": [label_of[k[1]] for k in kept], "split": [k[0] for k in kept]})
    listing = listing.astype({"label": "int64"})
    listing = assign_val_split(listing, source.get("val_fraction", 0.1), source.get("seed", 0))
    return listing["label"].tolist(), listing["split"].tolist()


def _decode_chunk(root: Path, kept: list[ClassFile], labels: list[int], splits: list[str], start: int,
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

"""Image files: decoding to ``uint8`` pixels and the rows of a canonical image table.

:func:`load_image` decodes 8-bit grayscale (1 channel) and colour (3 channels) images;
:func:`load_gray_image` decodes to one grayscale channel, scaling 16-bit/float images by their own
min/max (radiographs, thermal frames). :func:`image_row` is one row of the canonical image table
(``pixels`` flattened HWC, ``height``, ``width``, ``channels``); :func:`resize_image` turns such a
row back into a float ``(C, H, W)`` array for tokenization.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from omnivec2_pipelines.formats.base import DataError

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
#: PIL modes read as 1-channel grayscale (alpha dropped).
GRAY_MODES = {"1", "L", "LA"}
#: PIL modes converted to 3-channel RGB (alpha / palette resolved).
RGB_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
#: PIL modes of 16/32-bit and float grayscale images (scaled by :func:`load_gray_image`).
HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def pil_pixels(img: Image.Image, where: str) -> np.ndarray:
    """The pixels of a loaded PIL image as :func:`load_image` gives them: ``uint8`` ``(H, W, C)``, C in {1, 3}.

    Raises:
        DataError: an unsupported mode (``"invalid"``) or zero pixels (``"empty"``), naming ``where``.
    """
    if img.mode in GRAY_MODES:
        img = img.convert("L")
    elif img.mode in RGB_MODES:
        img = img.convert("RGB")
    else:
        raise DataError(f"{where}: unsupported image mode {img.mode!r}; expected 8-bit "
                        f"grayscale (L) or colour (RGB/RGBA/P)", reason="invalid")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W) -> (H, W, 1)
    if arr.size == 0:
        raise DataError(f"{where}: image has zero pixels", reason="empty")
    return arr


def load_image(path: Path) -> np.ndarray:
    """Decode one image file to a ``uint8`` array of shape ``(H, W, C)`` with C in {1, 3}.

    Grayscale modes give 1 channel; RGB, RGBA, palette and other colour modes give 3.

    Raises:
        DataError: when the file cannot be decoded (reason ``"corrupt"``, or ``"truncated"``
            when the decoder reports a cut-off file), has an unsupported mode such as 16-bit or
            float images (``"invalid"``) or has zero pixels (``"empty"``).
    """
    try:
        with Image.open(path) as img:
            img.load()
            return pil_pixels(img, str(path))
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise DataError(f"{path}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                        f"expected a valid {'/'.join(IMAGE_EXTENSIONS)} file", reason=reason) from e


def is_image_object(obj: Any) -> bool:
    """True for the in-memory images :func:`image_from_object` decodes: numpy arrays and PIL images."""
    return isinstance(obj, (np.ndarray, Image.Image))


#: What :func:`image_from_object` accepts, for messages.
IMAGE_OBJECTS = "a uint8 array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), or a PIL image"


def _array_image(arr: np.ndarray, where: str) -> Image.Image:
    """A ``uint8`` array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) as the PIL image a file of it would decode to."""
    if arr.dtype != np.uint8:
        raise DataError(f"{where}: array has dtype {arr.dtype}; expected uint8 pixels 0..255",
                        reason="invalid")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]  # (H, W, 1) -> (H, W)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise DataError(f"{where}: array has shape {arr.shape}; expected {IMAGE_OBJECTS}", reason="shape")
    return Image.fromarray(np.ascontiguousarray(arr))  # (H, W) -> L, (H, W, 3) -> RGB, (H, W, 4) -> RGBA


def image_from_object(obj: Any, where: str) -> np.ndarray:
    """An in-memory image decoded like :func:`load_image` decodes a file: ``uint8`` ``(H, W, C)``, C in {1, 3}.

    Raises:
        DataError: not an array/PIL image, a non-``uint8`` array or a bad shape, or as :func:`pil_pixels`.
    """
    if isinstance(obj, Image.Image):
        return pil_pixels(obj, where)
    if isinstance(obj, np.ndarray):
        return pil_pixels(_array_image(obj, where), where)
    raise DataError(f"{where}: got {type(obj).__name__}; expected {IMAGE_OBJECTS}", reason="invalid")


def header_channels(path: Path) -> int | None:
    """Channels :func:`load_image` gives for ``path``, from the image header only (no pixels).

    Returns None when the header cannot be read or its mode or size would be refused: only
    decoding can tell the exact error then.
    """
    try:
        with Image.open(path) as img:
            mode, size = img.mode, img.size
    except Exception:  # noqa: BLE001 - any failure means "decode to find out"
        return None
    if 0 in size:
        return None
    return 1 if mode in GRAY_MODES else 3 if mode in RGB_MODES else None


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


def gray_pixels(arr: np.ndarray, where: str) -> np.ndarray:
    """``(H, W, C)`` pixels of :func:`load_image` (C in {1, 3}) as one grayscale channel ``(H, W)``.

    Raises:
        DataError: (``channels``) a colour image: 3 channels that are not identical.
    """
    if arr.shape[2] == 1:
        return arr[:, :, 0]
    if not ((arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 0] == arr[:, :, 2]).all()):
        raise DataError(f"{where}: colour image (3 different channels) in a 1-channel grayscale "
                        f"data set; expected grayscale (or RGB with identical channels)",
                        reason="channels")
    return arr[:, :, 0]


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
            if mode in HIGH_DEPTH_MODES:
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
    return gray_pixels(arr, str(path))


#: What :func:`gray_from_object` accepts, for messages.
GRAY_OBJECTS = ("a 2D array (H, W) or (H, W, 1) (uint8 kept, other real dtypes scaled by their min/max), "
                "a uint8 (H, W, 3) array with identical channels, or a PIL image")


def gray_from_object(obj: Any, where: str) -> np.ndarray:
    """An in-memory image decoded like :func:`load_gray_image` decodes a file: ``uint8`` ``(H, W)``.

    A non-``uint8`` real array (H, W) or (H, W, 1), like a 16-bit/float image file, is scaled to 0..255 by
    its own min/max; anything else goes through :func:`image_from_object` and :func:`gray_pixels`.

    Raises:
        DataError: not an array/PIL image, a bad dtype/shape, NaN pixels, or a colour image.
    """
    if isinstance(obj, Image.Image) and obj.mode in HIGH_DEPTH_MODES:
        return minmax_uint8(np.asarray(obj), where)
    if isinstance(obj, np.ndarray) and obj.dtype != np.uint8:
        if obj.dtype.kind not in "iuf" or obj.ndim not in (2, 3) or (obj.ndim == 3 and obj.shape[2] != 1):
            raise DataError(f"{where}: array of dtype {obj.dtype} and shape {obj.shape}; expected "
                            f"{GRAY_OBJECTS}", reason="invalid")
        if obj.size == 0:
            raise DataError(f"{where}: image has zero pixels", reason="empty")
        return minmax_uint8(obj.reshape(obj.shape[:2]), where)
    return gray_pixels(image_from_object(obj, where), where)


def pixel_columns(arr: np.ndarray) -> dict[str, Any]:
    """The payload columns of a canonical image-table row: ``pixels`` (flattened HWC), ``height``,
    ``width``, ``channels``, from decoded pixels (H, W, C) or (H, W) (one channel)."""
    return {
        "pixels": arr.reshape(-1),  # (H, W, C) -> (H*W*C,) row-major HWC
        "height": arr.shape[0],
        "width": arr.shape[1],
        "channels": arr.shape[2] if arr.ndim == 3 else 1,
    }


def image_row(root: Path, path: Path, label: int, cls: str, split: str, arr: np.ndarray) -> dict[str, Any]:
    """One canonical-table row of an ImageFolder file: ids from its path under ``root``, flattened pixels.

    Args:
        arr: (H, W, C) or (H, W) (one channel) decoded pixels.
    """
    rel = path.relative_to(root)
    return {"sample_id": rel.with_suffix("").as_posix(), "source_file": rel.as_posix(), "label": label,
            "label_name": cls, "split": split, **pixel_columns(arr)}


def resize_image(row: Any, size: tuple[int, int]) -> np.ndarray:
    """One table row to a float32 ``(C, H, W)`` array in ``[0, 1]`` resized to ``size``."""
    h, w, c = int(row.height), int(row.width), int(row.channels)
    if c not in (1, 3):
        raise DataError(f"{row.source_file}: channels={c}, expected 1 (grayscale) or 3 (RGB)",
                        reason="channels")
    pixels = np.asarray(row.pixels, dtype=np.uint8)
    if pixels.size != h * w * c:
        raise DataError(f"{row.source_file}: pixels has {pixels.size} values, expected "
                        f"height*width*channels = {h}*{w}*{c}", reason="shape")
    arr = pixels.reshape(h, w, c)  # (H*W*C,) -> (H, W, C)
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr)  # uint8 (H, W) -> L, (H, W, 3) -> RGB
    if (w, h) != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32).reshape(size[0], size[1], c) / 255.0  # (H, W, C)
    return out.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)

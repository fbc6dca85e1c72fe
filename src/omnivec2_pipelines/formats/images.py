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
            mode = img.mode
            if mode in GRAY_MODES:
                img = img.convert("L")
            elif mode in RGB_MODES:
                img = img.convert("RGB")
            else:
                raise DataError(f"{path}: unsupported image mode {mode!r}; expected 8-bit "
                                f"grayscale (L) or colour (RGB/RGBA/P)", reason="invalid")
            arr = np.asarray(img, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "corrupt"
        raise DataError(f"{path}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                        f"expected a valid {'/'.join(IMAGE_EXTENSIONS)} file", reason=reason) from e
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W) -> (H, W, 1)
    if arr.size == 0:
        raise DataError(f"{path}: image has zero pixels", reason="empty")
    return arr


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
    if arr.shape[2] == 1:
        return arr[:, :, 0]
    if not ((arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 0] == arr[:, :, 2]).all()):
        raise DataError(f"{path}: colour image (3 different channels) in a 1-channel grayscale "
                        f"data set; expected grayscale (or RGB with identical channels)",
                        reason="channels")
    return arr[:, :, 0]


def image_row(root: Path, path: Path, label: int, cls: str, split: str, arr: np.ndarray) -> dict[str, Any]:
    """One canonical-table row of an ImageFolder file: ids from its path under ``root``, flattened pixels.

    Args:
        arr: (H, W, C) or (H, W) (one channel) decoded pixels.
    """
    h, w = arr.shape[:2]
    rel = path.relative_to(root)
    return {
        "sample_id": rel.with_suffix("").as_posix(),
        "source_file": rel.as_posix(),
        "label": label,
        "label_name": cls,
        "split": split,
        "pixels": arr.reshape(-1),  # (H, W, C) -> (H*W*C,) row-major HWC
        "height": h,
        "width": w,
        "channels": arr.shape[2] if arr.ndim == 3 else 1,
    }


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

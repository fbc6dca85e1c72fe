"""Sample data of the x-ray modality: GENERATED chest-X-ray-like images (not real radiographs), PNG + DICOM.

Also :func:`write_dicom`, a minimal deterministic DICOM writer (the reader is
:func:`omnivec2_pipelines.modalities.xray.load_dicom`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from omnivec2_pipelines.modalities.base import DataError, atomic_directory

#: Classes of the generated sample data (label order = sorted names).
SAMPLE_CLASSES: tuple[str, ...] = ("cardiomegaly", "effusion", "normal", "opacity")
#: SOP class of the written sample DICOMs: Digital X-Ray Image Storage - For Presentation.
_DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
#: UID root used by pydicom for generated UIDs.
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."


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


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
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

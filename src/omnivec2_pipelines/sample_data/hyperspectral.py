"""Sample data of the hyperspectral modality: a GENERATED scene (not a real image) as ``.mat`` files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from omnivec2_pipelines.modalities.base import DataError, atomic_directory

#: Class names of the generated sample scene (ground-truth values 1..6).
SAMPLE_CLASSES: tuple[str, ...] = ("corn", "grass", "hay", "soybean", "wheat", "woods")
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by omnivec2_pipelines (generated sample data)"


def save_mat(path: Path, name: str, array: np.ndarray) -> None:
    """``scipy.io.savemat`` with a fixed header text, so equal arrays give equal bytes."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {name: array}, do_compression=True)
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")  # replaces the "Created on: <time>" text
    Path(path).write_bytes(bytes(data))


def synth_scene(size: int, bands: int, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A GENERATED hyperspectral scene (not a real image): cube float ``(H, W, bands)`` in
    reflectance units and ground truth ``(H, W)`` int (0 = unlabelled, 1..n_classes).

    Two warped Voronoi regions per class plus two unlabelled background regions; each class
    has a smooth signature (baseline + slope + three Gaussian bumps + an absorption dip; the
    classes share a common part and differ by 20 % of their own shape), each region a slightly
    perturbed copy. Spectra are mixed softly across region borders (border pixels within
    ~1.5 px of another region are unlabelled), mixed per pixel with up to 40 % bare soil,
    scaled by a smooth illumination field and a per-pixel brightness factor, and get noise.
    """
    n_regions = 2 * n_classes + 2
    seeds = rng.uniform(0, size, (n_regions, 2))
    region_class = rng.permutation(np.r_[np.zeros(2, int), np.repeat(np.arange(1, n_classes + 1), 2)])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    wy, wx = np.zeros_like(yy), np.zeros_like(xx)
    for _ in range(3):  # smooth warp → irregular borders
        f, ph = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / size, rng.uniform(0, 2 * np.pi, 2)
        wy += rng.uniform(1, 3) * np.sin(f[0] * xx + ph[0])
        wx += rng.uniform(1, 3) * np.sin(f[1] * yy + ph[1])
    d = np.sqrt((yy[..., None] + wy[..., None] - seeds[:, 0]) ** 2
                + (xx[..., None] + wx[..., None] - seeds[:, 1]) ** 2)  # (H, W, R)
    order = np.sort(d, axis=2)
    nearest = d.argmin(axis=2)
    gt = region_class[nearest]
    gt[(order[..., 1] - order[..., 0]) < 1.5] = 0  # mixed border pixels are unlabelled
    w = np.exp(-(d - order[..., :1]) / 0.8)
    w /= w.sum(axis=2, keepdims=True)  # soft membership (H, W, R)
    t = np.linspace(0.0, 1.0, bands)

    def signature() -> np.ndarray:
        s = rng.uniform(0.15, 0.3) + rng.uniform(-0.15, 0.15) * t
        for _ in range(3):
            s += rng.uniform(0.05, 0.25) * np.exp(-(t - rng.uniform(0, 1)) ** 2 / (2 * rng.uniform(0.04, 0.15) ** 2))
        s -= rng.uniform(0.02, 0.1) * np.exp(-(t - rng.uniform(0.3, 0.9)) ** 2 / (2 * 0.02 ** 2))
        return s

    common = signature()
    soil = signature()
    class_sig = np.stack([common + 0.2 * (signature() - common) for _ in range(n_classes + 1)])  # (K+1, bands)
    region_sig = class_sig[region_class] * (1 + rng.normal(0, 0.04, (n_regions, 1))) \
        + rng.normal(0, 0.01, (n_regions, bands))
    cube = w @ region_sig  # (H, W, R) @ (R, bands) -> (H, W, bands)
    soil_frac = rng.uniform(0.0, 0.4, (size, size, 1))  # sub-pixel mixing with bare soil
    cube = (1 - soil_frac) * cube + soil_frac * soil
    light = 1 + 0.1 * np.sin(2 * np.pi * (yy / size * rng.uniform(0.5, 1.5) + rng.uniform(0, 1))) \
        * np.cos(2 * np.pi * xx / size * rng.uniform(0.5, 1.5))
    light = light[..., None] * rng.normal(1.0, 0.05, (size, size, 1))
    cube = cube * light + rng.normal(0, 0.03, cube.shape)
    return np.clip(cube, 0.0, None), gt


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write a GENERATED scene (:func:`synth_scene`) as ``cube.mat`` / ``gt.mat``.

    The cube is stored as ``uint16`` reflectance x 10000 (key ``cube``), the ground
    truth as ``uint8`` (key ``gt``), plus ``class_names.txt``.

    Args:
        root: Output folder (replaced atomically).
        params: ``size`` (64), ``bands`` (48), ``classes`` (6, at most 6), ``seed`` (0).

    Returns:
        Manifest ``{"source", "files", "classes", "shape", "labelled_pixels"}``.
    """
    size, bands = int(params.get("size", 64)), int(params.get("bands", 48))
    k = int(params.get("classes", len(SAMPLE_CLASSES)))
    if size < 8 or bands < 2 or not 2 <= k <= len(SAMPLE_CLASSES):
        raise DataError(f"hyperspectral sample data params need size >= 8, bands >= 2, "
                        f"2 <= classes <= {len(SAMPLE_CLASSES)}; got {params}")
    cube, gt = synth_scene(size, bands, k, np.random.default_rng(int(params.get("seed", 0))))
    with atomic_directory(Path(root)) as tmp:
        save_mat(tmp / "cube.mat", "cube", np.round(cube * 10000).clip(0, 65535).astype(np.uint16))
        save_mat(tmp / "gt.mat", "gt", gt.astype(np.uint8))
        (tmp / "class_names.txt").write_text("\n".join(SAMPLE_CLASSES[:k]) + "\n")
    return {"source": "synthetic hyperspectral scene generated by omnivec2_pipelines "
                      "(generated, not a real image)",
            "files": 3, "classes": list(SAMPLE_CLASSES[:k]), "shape": [size, size, bands],
            "labelled_pixels": int((gt > 0).sum())}

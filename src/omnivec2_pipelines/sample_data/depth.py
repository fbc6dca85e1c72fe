"""Sample data of the depth modality: tiles of a REAL stereo pair (``skimage.data.stereo_motorcycle``)
with its ground-truth disparity as the dense target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from omnivec2_pipelines.modalities.base import SPLITS, DataError, atomic_directory


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Cut the REAL stereo pair ``skimage.data.stereo_motorcycle()`` into RGB + disparity tiles.

    The left view (500x741 RGB, bundled with scikit-image, no download) is the input and
    its ground-truth disparity map (pixels, larger = closer) the dense target, a stand-in
    for depth. The ~7 % invalid (inf) disparity pixels are filled with the nearest valid
    value (like NYUv2's filled depth maps). The image is divided into ``cell`` x ``cell``
    blocks, each assigned at random to train / val / test (``val_fraction`` /
    ``test_fraction`` of the blocks); tiles of ``tile`` x ``tile`` with step ``stride`` are cut
    inside each block only, so no pixel is shared between splits. Tiles are written as
    ``<split>/rgb/<id>.png`` and ``<split>/depth/<id>.npy`` (float32) with ``id`` =
    ``y<row>_x<col>`` of the tile's top-left pixel.

    Args:
        root: Output folder (replaced atomically).
        params: ``tile`` (32), ``cell`` (64), ``stride`` (16), ``val_fraction`` (0.1),
            ``test_fraction`` (0.2), ``seed`` (0).

    Returns:
        Manifest ``{"source", "files", "classes": [], "tiles": {split: n}, "filled_pixels"}``.
    """
    from scipy import ndimage
    from skimage.data import stereo_motorcycle

    tile = int(params.get("tile", 32))
    cell = int(params.get("cell", 64))
    stride = int(params.get("stride", 16))
    val_fraction = float(params.get("val_fraction", 0.1))
    test_fraction = float(params.get("test_fraction", 0.2))
    if not (0 < tile <= cell and 0 < stride and 0 <= val_fraction and 0 < test_fraction
            and val_fraction + test_fraction < 1):
        raise DataError(f"depth sample data params need 0 < tile <= cell, stride > 0, "
                        f"val_fraction >= 0, test_fraction > 0, val+test < 1; got {params}")
    left, _, disp = stereo_motorcycle()  # (H, W, 3) uint8, _, (H, W) float32 with inf
    invalid = ~np.isfinite(disp)
    if invalid.any():  # nearest valid pixel
        idx = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
        disp = disp[tuple(idx)]
    disp = disp.astype(np.float32)
    gh, gw = left.shape[0] // cell, left.shape[1] // cell
    if gh * gw < 3:
        raise DataError(f"depth sample data: cell={cell} leaves fewer than 3 blocks of the "
                        f"{left.shape[0]}x{left.shape[1]} image")
    rng = np.random.default_rng(int(params.get("seed", 0)))
    order = rng.permutation(gh * gw)
    n_test = max(1, int(round(gh * gw * test_fraction)))
    n_val = int(round(gh * gw * val_fraction))
    split_of = np.array(["train"] * (gh * gw), dtype=object)
    split_of[order[:n_test]] = "test"
    split_of[order[n_test:n_test + n_val]] = "val"
    offsets = range(0, cell - tile + 1, stride)
    counts = {s: 0 for s in SPLITS}
    with atomic_directory(Path(root)) as tmp:
        for s in SPLITS:
            if s in set(split_of):
                (tmp / s / "rgb").mkdir(parents=True)
                (tmp / s / "depth").mkdir(parents=True)
        for k in range(gh * gw):
            s = split_of[k]
            by, bx = (k // gw) * cell, (k % gw) * cell
            for dy in offsets:
                for dx in offsets:
                    y, x = by + dy, bx + dx
                    tid = f"y{y:03d}_x{x:03d}"
                    Image.fromarray(left[y:y + tile, x:x + tile]).save(
                        tmp / s / "rgb" / f"{tid}.png", format="PNG")
                    np.save(tmp / s / "depth" / f"{tid}.npy",
                            np.ascontiguousarray(disp[y:y + tile, x:x + tile]))
                    counts[s] += 1
    return {"source": "skimage.data.stereo_motorcycle left view + ground-truth disparity "
                      "(real; Middlebury 2014 'Motorcycle'), tiled",
            "files": 2 * sum(counts.values()), "classes": [],
            "tiles": {s: n for s, n in counts.items() if n},
            "target": "disparity in pixels (larger = closer)",
            "filled_pixels": int(invalid.sum())}

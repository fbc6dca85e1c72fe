"""Sample data of the video modality: deterministic GENERATED motion clips (not real footage), MPEG-4.

Also :func:`write_video`, a deterministic MPEG-4 writer (the reader is
:func:`omnivec2_pipelines.modalities.video.load_video`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from omnivec2_pipelines.modalities.base import DataError, atomic_directory

#: Motion classes of the generated sample data (sorted = label order).
SAMPLE_CLASSES: tuple[str, ...] = (
    "disc_grow", "disc_shrink", "move_down", "move_left", "move_right", "move_up")


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 to ``path`` (.mp4 or .avi) with FFmpeg's MPEG-4 Part 2.

    MPEG-4 Part 2 (``mpeg4``) is used because it ships with every FFmpeg build and its output
    is byte-for-byte deterministic (``libx264`` is not with this PyAV build). H and W must be
    even (yuv420p).
    """
    import av

    t, h, w, c = frames.shape
    if c != 3 or h % 2 or w % 2 or t == 0:
        raise ValueError(f"write_video needs (T>0, even H, even W, 3) uint8 frames, got {frames.shape}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=int(fps), options={"qmin": "2", "qmax": "3"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def synth_clip(category: str, n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one clip of a moving square or a growing/shrinking disc.

    Random per clip: background level and noise, object colour, square side (size/6..size/3.5),
    travelled distance (50-100 % of the free range) and start position, disc radii and centre.

    Returns:
        uint8 ``(n_frames, size, size, 3)``.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    bg = rng.uniform(0, 60, size=3)
    colour = rng.uniform(130, 255, size=3)
    colour[rng.integers(3)] = rng.uniform(220, 255)
    noise = rng.uniform(3.0, 12.0)
    frac = np.linspace(0.0, 1.0, n_frames)
    masks = np.zeros((n_frames, size, size))
    if category.startswith("move_"):
        side = int(rng.integers(max(2, size // 6), max(3, int(size / 3.5)) + 1))
        free = size - side
        dist = rng.uniform(0.5, 1.0) * free
        start = rng.uniform(0, free - dist)
        other = rng.uniform(0, free)
        for i, f in enumerate(frac):
            along = start + f * dist
            if category in ("move_left", "move_up"):
                along = free - along
            x0, y0 = (along, other) if category in ("move_left", "move_right") else (other, along)
            # anti-aliased square: coverage of each pixel by [x0, x0+side) x [y0, y0+side)
            cx = np.clip(np.minimum(xx + 1, x0 + side) - np.maximum(xx, x0), 0, 1)
            cy = np.clip(np.minimum(yy + 1, y0 + side) - np.maximum(yy, y0), 0, 1)
            masks[i] = cx * cy
    elif category in ("disc_grow", "disc_shrink"):
        r_small = rng.uniform(1.5, size / 8)
        r_big = rng.uniform(size / 3.5, size / 2.5)
        centre = rng.uniform(size * 0.3, size * 0.7, size=2)
        dist = np.hypot(xx + 0.5 - centre[0], yy + 0.5 - centre[1])
        for i, f in enumerate(frac):
            r = r_small + (f if category == "disc_grow" else 1.0 - f) * (r_big - r_small)
            masks[i] = np.clip(r - dist + 0.5, 0, 1)
    else:
        raise ValueError(f"unknown sample class {category!r}")
    clip = bg + masks[..., None] * (colour - bg)  # (T, H, W, 3)
    clip += rng.normal(0.0, noise, size=clip.shape)
    return np.clip(np.round(clip), 0, 255).astype(np.uint8)


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write a deterministic GENERATED motion data set (not real footage) as MPEG-4 clips.

    Six classes (:data:`SAMPLE_CLASSES`): a bright anti-aliased square moving left, right,
    up or down, and a disc growing or shrinking, over a dark noisy background; position,
    size, speed, colours, noise and clip length (``min_frames``..``max_frames``) are random
    per clip. Layout ``root/{train,test}/<class>/<index>.mp4``; the test clips of each class
    are a random ``test_fraction`` of its clips. Written atomically.

    Args:
        root: Output folder (replaced atomically).
        params: ``size`` (32, even), ``min_frames`` (8), ``max_frames`` (16), ``fps`` (8),
            ``clips_per_class`` (60), ``test_fraction`` (0.2), ``seed`` (0).

    Returns:
        Manifest ``{"source", "files", "classes", "codec"}``.
    """
    size = int(params.get("size", 32))
    lo, hi = int(params.get("min_frames", 8)), int(params.get("max_frames", 16))
    fps = int(params.get("fps", 8))
    per = int(params.get("clips_per_class", 60))
    test_fraction = float(params.get("test_fraction", 0.2))
    if size < 8 or size % 2 or not 2 <= lo <= hi or fps <= 0 or per < 2 \
            or not 0 < test_fraction < 1:
        raise DataError(f"video sample data params need even size >= 8, 2 <= min_frames <= "
                        f"max_frames, fps > 0, clips_per_class >= 2, 0 < test_fraction < 1; "
                        f"got {params}")
    rng = np.random.default_rng(int(params.get("seed", 0)))
    n_test = min(per - 1, max(1, int(round(per * test_fraction))))
    files = 0
    with atomic_directory(Path(root)) as tmp:
        for cls in SAMPLE_CLASSES:
            test_ids = set(rng.permutation(per)[:n_test].tolist())
            for k in range(per):
                clip = synth_clip(cls, int(rng.integers(lo, hi + 1)), size, rng)
                out = tmp / ("test" if k in test_ids else "train") / cls / f"{k:03d}.mp4"
                out.parent.mkdir(parents=True, exist_ok=True)
                write_video(out, clip, fps)
                files += 1
    return {"source": "synthetic motion clips generated by omnivec2_pipelines (generated, "
                      "not real footage)",
            "files": files, "classes": list(SAMPLE_CLASSES), "codec": "mpeg4 (MPEG-4 Part 2) in mp4"}

"""Video modality: class-folder clips → canonical table → normalised ``(N, C, T, H, W)`` arrays.

Layout (``source.format: classfolders``, UCF-101 / Kinetics style)::

    root/<split>/<class>/<name>.(mp4|avi)      split in {train, val, test}

``train`` and ``test`` are required, ``val`` is optional (carved from train otherwise). Clips
are decoded with PyAV (FFmpeg) to RGB frames. Hidden files (names starting with ``.``) are
ignored; any other file that is not a video of a supported extension is an error, so nothing is
silently dropped. Frame count, size and frame rate come from the data; temporal sampling and
resizing are tokenization parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from omnivec2_pipelines.modalities.base import (
    classification_task,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    atomic_directory,
    check_source,
    register,
    table_class_names,
)
from omnivec2_pipelines.params_schema import SIZE

#: File extensions read as videos (lower case).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi")
#: Motion classes of the generated sample data (sorted = label order).
SAMPLE_CLASSES: tuple[str, ...] = (
    "disc_grow", "disc_shrink", "move_down", "move_left", "move_right", "move_up")
_REQUIRED_SPLITS = ("train", "test")


def load_video(path: Path) -> tuple[np.ndarray, float]:
    """Decode the first video stream of ``path`` with PyAV to RGB frames.

    Returns:
        ``(frames (T, H, W, 3) uint8, fps)``; ``fps`` is the stream's average frame rate
        (0.0 when the container does not state one).

    Raises:
        DataError: the file cannot be opened or decoded (reason ``"corrupt"``), has no video
            stream (``"invalid"``), decodes to zero frames (``"empty"``), decodes to fewer
            frames than its header announces (``"truncated"``), or changes frame size
            mid-stream (``"shape"``).
    """
    import av  # heavy: imported only when reading videos

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: file has no video stream; expected a video clip "
                                f"({'/'.join(VIDEO_EXTENSIONS)})", reason="invalid")
            stream = container.streams.video[0]
            announced = int(stream.frames or 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            for frame in container.decode(stream):
                arr = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                if frames and arr.shape != frames[0].shape:
                    raise DataError(f"{path}: frame {len(frames)} has size {arr.shape[:2]} but "
                                    f"frame 0 has {frames[0].shape[:2]}; expected a constant "
                                    f"frame size", reason="shape")
                frames.append(arr)
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError, RuntimeError) as e:
        reason = "truncated" if frames or isinstance(e, EOFError) else "corrupt"
        raise DataError(f"{path}: unreadable, corrupt or truncated video after {len(frames)} "
                        f"frame(s) ({type(e).__name__}: {e}); expected a valid "
                        f"{'/'.join(VIDEO_EXTENSIONS)} file PyAV can decode", reason=reason) from e
    if not frames:
        raise DataError(f"{path}: video has zero decodable frames (header announces "
                        f"{announced}); expected a non-empty clip",
                        reason="truncated" if announced else "empty")
    if announced and len(frames) < announced:
        raise DataError(f"{path}: truncated video: decoded {len(frames)} of the {announced} "
                        f"frames its header announces", reason="truncated")
    video = np.stack(frames)  # T x (H, W, 3) -> (T, H, W, 3)
    if video.shape[1] == 0 or video.shape[2] == 0:
        raise DataError(f"{path}: video frames have zero pixels", reason="empty")
    return video, fps


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


def _list_class_dirs(split_dir: Path) -> list[Path]:
    """Class folders of one split folder; stray non-hidden files are an error."""
    entries = sorted(p for p in split_dir.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DataError(f"{stray[0]}: unexpected file directly in split folder {split_dir}; "
                        f"expected only class folders <split>/<class>/<clip>", reason="invalid")
    if not entries:
        raise DataError(f"{split_dir}: split folder is empty; expected class folders "
                        f"<class>/<clip> inside it", reason="empty")
    return entries


def _check_video_file(path: Path) -> None:
    if not (path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS):
        raise DataError(f"{path}: not a video file with extension in {list(VIDEO_EXTENSIONS)} "
                        f"(class folders must contain only clips)", reason="invalid")


class VideoModality(Modality):
    """Short clips in class-folder layout, tokenized into spatio-temporal tubelets."""

    name = "video"
    formats = ("classfolders",)
    source_keys = ()
    sample_data_keys = ("size", "min_frames", "max_frames", "fps", "clips_per_class", "test_fraction", "seed")
    tokenization_keys = {"n_frames": None, "size": SIZE, "grayscale": None, "tubelet": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
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

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a class-folder video tree into the canonical table.

        Payload columns: ``frames`` (flattened ``uint8`` THWC, RGB), ``n_frames``, ``height``,
        ``width``, ``channels`` (always 3: clips are decoded to RGB), ``fps``. Labels index the
        sorted union of class folder names of all splits.

        Raises:
            DataError: missing train/test split, empty split or class folder, and (per file,
                skippable with ``on_error: skip``) non-video, corrupt, truncated or empty clips.
        """
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        if not root.is_dir():
            raise DataError(f"video.source.path: {root} is not a directory; expected a class "
                            f"folder tree root/<split>/<class>/<clip>.mp4")
        missing = [s for s in _REQUIRED_SPLITS if not (root / s).is_dir()]
        if missing:
            raise DataError(f"{root}: missing split folder(s) {missing}; expected "
                            f"root/train/<class>/..., root/test/<class>/... (val optional)")
        files: list[tuple[str, str, Path]] = []  # (split, class, path)
        for split in SPLITS:
            if not (root / split).is_dir():
                continue
            for class_dir in _list_class_dirs(root / split):
                entries = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
                if not entries:
                    raise DataError(f"{class_dir}: class folder is empty; expected at least one "
                                    f"clip", reason="empty")
                files += [(split, class_dir.name, p) for p in entries]
        classes = sorted({c for _, c, _ in files})
        label_of = {c: i for i, c in enumerate(classes)}
        rows: list[dict[str, Any]] = []
        for split, cls, path in files:
            row = policy.call(path, self._read_one, root, path)
            if row is None:
                continue
            row.update(label=label_of[cls], label_name=cls, split=split)
            rows.append(row)
        if not rows:
            raise DataError(f"{root}: no readable clips ({len(policy.skipped)} skipped, see "
                            f"table.attrs['ingestion_errors'])", reason="empty")
        table = pd.DataFrame(rows)
        table = table[["sample_id", "source_file", "label", "label_name", "split", "frames",
                       "n_frames", "height", "width", "channels", "fps"]]
        table = table.astype({"label": "int64", "n_frames": "int64", "height": "int64",
                              "width": "int64", "channels": "int64", "fps": "float64"})
        for required in _REQUIRED_SPLITS:
            if not (table["split"] == required).any():
                raise DataError(f"{root}: no readable clips left in split {required!r} "
                                f"({len(policy.skipped)} file(s) skipped)", reason="empty")
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

    @staticmethod
    def _read_one(root: Path, path: Path) -> dict[str, Any]:
        _check_video_file(path)
        video, fps = load_video(path)  # (T, H, W, 3)
        t, h, w, c = video.shape
        rel = path.relative_to(root)
        return {"sample_id": rel.with_suffix("").as_posix(), "source_file": rel.as_posix(),
                "frames": video.reshape(-1),  # (T, H, W, C) -> (T*H*W*C,) row-major THWC
                "n_frames": t, "height": h, "width": w, "channels": c, "fps": fps}

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Sample frames, resize, optionally convert to gray, normalise per channel with train stats.

        Args:
            table: Canonical video table (see :meth:`read`).
            params: ``n_frames`` (frames kept: ``round(linspace(0, T-1, n_frames))`` indices of
                longer clips, shorter clips repeat their last frame), ``size`` ``[H, W]``
                (bilinear resize), ``grayscale`` (bool, default false: ITU-R 601 luma, 1
                channel), ``tubelet`` ``[t, ph, pw]`` (must divide ``n_frames``, H, W).

        Returns:
            Arrays ``"<split>.x"`` float32 ``(N, C, T, H, W)`` and ``"<split>.y.classification"``
            int64 ``(N,)`` for each split in the table, and the bundle meta (tokenizer kind
            ``"tubelet"``).

        Raises:
            DataError: bad params, no train rows, or a row whose payload does not match its
                shape columns.
        """
        n_frames = _pos_int(params, "n_frames")
        size = _ints(params, "size", 2)
        tubelet = _ints(params, "tubelet", 3)
        grayscale = params.get("grayscale", False)
        if not isinstance(grayscale, bool):
            raise DataError(f"tokenization.video.grayscale must be true or false, got {grayscale!r}")
        if n_frames % tubelet[0] or size[0] % tubelet[1] or size[1] % tubelet[2]:
            raise DataError(f"tokenization.video.tubelet={list(tubelet)} must divide "
                            f"[n_frames, H, W]={[n_frames, *size]} (tokenization.video.n_frames, "
                            f"tokenization.video.size)")
        if not (table["split"] == "train").any():
            raise DataError("video table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        class_names = table_class_names(table)
        c = 1 if grayscale else 3
        xs: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if len(part):
                xs[split] = np.stack([_clip(r, n_frames, size, grayscale)
                                      for r in part.itertuples(index=False)])  # (N, C, T, H, W)
                ys[split] = part["label"].to_numpy(dtype=np.int64)
        train = xs["train"]
        mean = train.mean(axis=(0, 2, 3, 4), dtype=np.float64)
        std = np.maximum(train.std(axis=(0, 2, 3, 4), dtype=np.float64), 1e-6)
        arrays: dict[str, np.ndarray] = {}
        for split, x in xs.items():
            x = (x - mean[None, :, None, None, None]) / std[None, :, None, None, None]
            arrays[f"{split}.x"] = x.astype(np.float32)
            arrays[f"{split}.y.classification"] = ys[split]
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "tubelet", "in_channels": c, "n_frames": n_frames,
                          "input_size": list(size), "tubelet": list(tubelet)},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": {s: int(len(x)) for s, x in xs.items()},
            "frames": {"n_frames": n_frames, "grayscale": grayscale,
                       "sampling": "indices round(linspace(0, T-1, n_frames)); clips shorter "
                                   "than n_frames repeat their last frame"},
            "normalization": {"scale": 1.0 / 255.0, "mean": mean.tolist(), "std": std.tolist(),
                              "formula": "(pixel * scale - mean[c]) / std[c]"},
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Clips average-pooled to at most an 8x8 spatial grid per frame, flattened: (N, C*T*gh*gw).

        Keeps where things are in every frame (enough to see motion) at 1/16 of the raw size
        for 32x32 frames, so the linear baseline stays fast.
        """
        n, c, t, h, w = x.shape  # (N, C, T, H, W)
        fh, fw = max(1, h // 8), max(1, w // 8)
        gh, gw = h // fh, w // fw
        x = x[:, :, :, :gh * fh, :gw * fw].reshape(n, c, t, gh, fh, gw, fw).mean(axis=(4, 6))
        return x.reshape(n, -1).astype(np.float32)


def _pos_int(params: dict[str, Any], key: str) -> int:
    """Read a positive int from the video tokenization params."""
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DataError(f"tokenization.video.{key} must be a positive int, got {value!r}")
    return int(value)


def _ints(params: dict[str, Any], key: str, n: int) -> tuple[int, ...]:
    """Read a list of ``n`` positive ints from the video tokenization params."""
    value = params.get(key)
    try:
        out = tuple(int(v) for v in value)
        ok = len(out) == n and all(v > 0 for v in out) and \
            all(not isinstance(v, bool) and float(v) == int(v) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"tokenization.video.{key} must be a list of {n} positive ints, "
                        f"got {value!r}")
    return out


def _clip(row: Any, n_frames: int, size: tuple[int, ...], grayscale: bool) -> np.ndarray:
    """One table row to float32 ``(C, n_frames, H, W)`` in ``[0, 1]``."""
    t, h, w, c = int(row.n_frames), int(row.height), int(row.width), int(row.channels)
    if c != 3:
        raise DataError(f"{row.source_file}: channels={c}, expected 3 (clips are decoded to RGB)",
                        reason="channels")
    frames = np.asarray(row.frames, dtype=np.uint8)
    if t <= 0 or frames.size != t * h * w * c:
        raise DataError(f"{row.source_file}: frames has {frames.size} values, expected "
                        f"n_frames*height*width*channels = {t}*{h}*{w}*{c}", reason="shape")
    video = frames.reshape(t, h, w, c)  # (T*H*W*C,) -> (T, H, W, C)
    if t >= n_frames:
        idx = np.round(np.linspace(0, t - 1, n_frames)).astype(int)
    else:
        idx = np.concatenate([np.arange(t), np.full(n_frames - t, t - 1)])
    out_c = 1 if grayscale else 3
    out = np.empty((n_frames, size[0], size[1], out_c), dtype=np.float32)
    cache: dict[int, np.ndarray] = {}
    for j, i in enumerate(idx.tolist()):
        if i not in cache:
            img = Image.fromarray(video[i])  # (H, W, 3) uint8 -> RGB
            if grayscale:
                img = img.convert("L")
            if (w, h) != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            cache[i] = np.asarray(img, dtype=np.float32).reshape(size[0], size[1], out_c) / 255.0
        out[j] = cache[i]
    return out.transpose(3, 0, 1, 2)  # (T, H, W, C) -> (C, T, H, W)


register(VideoModality())

"""Video modality: class-folder clips → canonical table → normalised ``(N, C, T, H, W)`` arrays.

Layout (``source.format: classfolders``, UCF-101 / Kinetics style)::

    root/<split>/<class>/<name>.(mp4|avi)      split in {train, val, test}

``train`` and ``test`` are required, ``val`` is optional (carved from train otherwise). Clips
are decoded with PyAV (FFmpeg) to RGB frames. Hidden files (names starting with ``.``) are
ignored; any other file that is not a video of a supported extension is an error, so nothing is
silently dropped. Frame count, size and frame rate come from the data; temporal sampling and
resizing are tokenization parameters.

Embedded default data: GENERATED motion clips (:mod:`omnivec2_pipelines.sample_data.video`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from omnivec2_pipelines.checks import flag, pos_int, pos_ints
from omnivec2_pipelines.formats.class_folders import check_class_file, list_tree
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
    assign_val_split,
    check_source,
    classification_task,
    register,
    table_class_names,
)
from omnivec2_pipelines.params_schema import SIZE

#: File extensions read as videos (lower case).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi")
_PREFIX = "video.tokenization"


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


class VideoModality(Modality):
    """Short clips in class-folder layout, tokenized into spatio-temporal tubelets."""

    name = "video"
    formats = ("classfolders",)
    source_keys = ()
    sample_data_keys = ("size", "min_frames", "max_frames", "fps", "clips_per_class", "test_fraction", "seed")
    tokenization_keys = {"n_frames": None, "size": SIZE, "grayscale": None, "tubelet": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a deterministic GENERATED motion data set (not real footage) as MPEG-4 clips (see
        :func:`omnivec2_pipelines.sample_data.video.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.video import make_sample_data

        return make_sample_data(root, params)

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
        files = list_tree(root, self.name, item="clip",
                          tree="a class folder tree root/<split>/<class>/<clip>.mp4")
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
        for required in REQUIRED_SPLITS:
            if not (table["split"] == required).any():
                raise DataError(f"{root}: no readable clips left in split {required!r} "
                                f"({len(policy.skipped)} file(s) skipped)", reason="empty")
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

    @staticmethod
    def _read_one(root: Path, path: Path) -> dict[str, Any]:
        check_class_file(path, VIDEO_EXTENSIONS, "a video file", "clip")
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
        n_frames = pos_int(params, "n_frames", _PREFIX)
        size = pos_ints(params, "size", _PREFIX, 2)
        tubelet = pos_ints(params, "tubelet", _PREFIX, 3)
        grayscale = flag(params, "grayscale", _PREFIX, False)
        if n_frames % tubelet[0] or size[0] % tubelet[1] or size[1] % tubelet[2]:
            raise DataError(f"video.tokenization.tubelet={list(tubelet)} must divide "
                            f"[n_frames, H, W]={[n_frames, *size]} (video.tokenization.n_frames, "
                            f"video.tokenization.size)")
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
                xs[split] = _clips(part, n_frames, size, grayscale)  # (N, C, T, H, W) in [0, 1]
                ys[split] = part["label"].to_numpy(dtype=np.int64)
        normalization = fit_normalization(xs["train"])
        arrays: dict[str, np.ndarray] = {}
        for split, x in xs.items():
            arrays[f"{split}.x"] = normalize_images(x, normalization)
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
            "normalization": normalization,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's frame sampling, resize, grayscale choice and train normalisation applied to clip
        rows (``frames``, ``n_frames``, ``height``, ``width``, ``channels``): ``{"x": (N, C, T, H, W) float32}``.

        Raises:
            DataError: a row that is not RGB or whose payload does not match its shape columns, or a
                meta that is not a video bundle's.
        """
        tok = check_meta_kind(meta, "tubelet", self.name)
        frames = meta["frames"]
        x = _clips(table, int(frames["n_frames"]), tuple(tok["input_size"]), bool(frames["grayscale"]))
        return {"x": normalize_images(x, meta["normalization"])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Clips (``.mp4/.avi`` files, folders of them, or ``uint8`` arrays ``(T, H, W, 3)``) → clip rows
        (``id``, ``frames``, ``n_frames``, ``height``, ``width``, ``channels``, ``fps``; ``fps`` 0.0 for
        arrays), files decoded as :meth:`read` decodes them (:func:`load_video`).

        Raises:
            DataError: naming an input that is missing, not a clip, or not decodable.
        """
        items = input_items(inputs, VIDEO_EXTENSIONS, self.name, lambda o: isinstance(o, np.ndarray),
                            CLIP_OBJECTS)

        def decode(where: str, item: Any) -> dict[str, Any]:
            video, fps = load_video(item) if isinstance(item, Path) else (_clip_array(item, where), 0.0)
            t, h, w, c = video.shape
            return {"frames": video.reshape(-1),  # (T, H, W, C) -> (T*H*W*C,)
                    "n_frames": t, "height": h, "width": w, "channels": c, "fps": fps}

        return input_rows(items, decode).astype({"n_frames": "int64", "height": "int64", "width": "int64",
                                                 "channels": "int64", "fps": "float64"})

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


#: What an in-memory clip may be, for messages.
CLIP_OBJECTS = "a uint8 array (T, H, W, 3) of RGB frames"


def _clip_array(obj: np.ndarray, where: str) -> np.ndarray:
    """An in-memory clip checked like a decoded file: ``uint8`` ``(T, H, W, 3)`` with T, H, W > 0.

    Raises:
        DataError: another dtype (``invalid``), shape (``shape``/``channels``) or zero frames/pixels (``empty``).
    """
    if obj.dtype != np.uint8:
        raise DataError(f"{where}: clip has dtype {obj.dtype}; expected {CLIP_OBJECTS}", reason="invalid")
    if obj.ndim != 4 or obj.shape[3] != 3:
        raise DataError(f"{where}: clip has shape {obj.shape}; expected {CLIP_OBJECTS}",
                        reason="channels" if obj.ndim == 4 else "shape")
    if obj.size == 0:
        raise DataError(f"{where}: clip has zero frames or pixels {obj.shape}", reason="empty")
    return obj


def _clips(table: pd.DataFrame, n_frames: int, size: tuple[int, ...], grayscale: bool) -> np.ndarray:
    """Every clip row sampled and resized: float32 ``(N, C, n_frames, H, W)`` in ``[0, 1]``."""
    return np.stack([_clip(r, n_frames, size, grayscale) for r in table.itertuples(index=False)])


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

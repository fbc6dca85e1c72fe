"""Audio modality: ESC-50 layout → canonical table → normalised log-mel ``(N, 1, F, T)`` arrays.

Layout (``source.format: esc50``)::

    root/audio/<filename>.wav
    root/meta/esc50.csv      columns filename, fold, target, category (+ esc10, src_file, take)

Every file listed in the CSV must exist and decode. WAV files in ``root/audio`` that the CSV
does not list are ignored (like a subset CSV of the original ESC-50 release): the CSV is the
list of samples.

Per-file problems (listed file missing, corrupt or truncated file, zero frames, NaN/inf
samples) raise naming the file or, with ``source.on_error: skip``, leave the clip out and
count it in ``table.attrs["ingestion_errors"]``. Problems of the data set (missing path, audio
folder or CSV, a CSV that cannot be parsed or lacks columns/values, no train/test rows for the
chosen folds, nothing left after skipping) always raise.

Embedded default data: SYNTHETIC sound events in this layout (:mod:`omnivec2_pipelines.sample_data.audio`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from omnivec2_pipelines.checks import pair, pos_int
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import input_items, input_rows, require_rows
from omnivec2_pipelines.modalities.base import (
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

#: Columns the ESC-50 metadata CSV must have.
REQUIRED_CSV_COLUMNS: tuple[str, ...] = ("filename", "fold", "target", "category")
_PREFIX = "audio.tokenization"
#: File extensions :meth:`AudioModality.read_inputs` decodes (soundfile formats).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")
#: Sample rate assumed for a bare waveform array: the ESC-50 layout's 44.1 kHz clips.
ARRAY_SAMPLE_RATE: int = 44100
#: What an in-memory audio input may be, for messages.
AUDIO_OBJECTS = (f"a finite real waveform array (num_frames,) at {ARRAY_SAMPLE_RATE} Hz, or a tuple "
                 f"(waveform, sample_rate)")


def _wav_missing_bytes(path: Path) -> int:
    """Bytes of a RIFF/WAVE ``data`` chunk that its header declares but the file lacks.

    libsndfile silently reads a WAV file that was cut off inside its sample data; this finds
    that case. 0 for complete files, non-WAV files, and streaming headers (size 0 or
    0xFFFFFFFF).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            size = Path(path).stat().st_size
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return 0
                n = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"data":
                    if n in (0, 0xFFFFFFFF):
                        return 0
                    return max(0, f.tell() + n - size)
                f.seek(n + (n & 1), 1)  # chunks are padded to an even size
    except OSError:
        return 0


def load_wav(path: Path) -> tuple[np.ndarray, int]:
    """Decode one audio file with ``soundfile`` to a mono float32 waveform.

    Multi-channel audio is averaged to mono.

    Returns:
        ``(waveform (num_frames,), sample_rate)``.

    Raises:
        DataError: unreadable/corrupt file (reason ``"corrupt"``), a WAV file cut off inside
            its sample data (``"truncated"``), zero-length audio (``"empty"``), or NaN/inf
            samples (``"nan"``).
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    except (RuntimeError, OSError, ValueError, TypeError) as e:
        raise DataError(f"{path}: unreadable or corrupt audio file ({type(e).__name__}: {e}); "
                        f"expected a WAV file soundfile can decode", reason="corrupt") from e
    missing = _wav_missing_bytes(path)
    if missing > 0:
        raise DataError(f"{path}: truncated WAV file: the data chunk header declares {missing} "
                        f"more bytes than the file holds ({data.shape[0]} frames readable); "
                        f"expected a complete file", reason="truncated")
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio has zero frames; expected a non-empty clip", reason="empty")
    wav = data.mean(axis=1, dtype=np.float32)  # (frames, channels) -> (frames,)
    if not np.isfinite(wav).all():
        raise DataError(f"{path}: audio contains NaN or inf samples", reason="nan")
    return wav, int(sr)


def _load_listed(path: Path, csv_path: Path) -> tuple[np.ndarray, int]:
    """:func:`load_wav` of a file listed in the CSV; a missing file has reason ``"missing"``."""
    if not path.is_file():
        raise DataError(f"{path}: listed in {csv_path} but missing", reason="missing")
    return load_wav(path)


def _read_csv(csv_path: Path) -> pd.DataFrame:
    """Read and validate the ESC-50 metadata CSV."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: metadata CSV not found; expected ESC-50 layout "
                        f"root/meta/esc50.csv + root/audio/*.wav", reason="missing")
    try:
        meta = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        reason = "encoding" if isinstance(e, UnicodeDecodeError) else "corrupt"
        raise DataError(f"{csv_path}: cannot parse CSV ({type(e).__name__}: {e})", reason=reason) from e
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in meta.columns]
    if missing:
        raise DataError(f"{csv_path}: missing required column(s) {missing}; expected at least "
                        f"{list(REQUIRED_CSV_COLUMNS)}, found {list(meta.columns)}", reason="missing")
    if meta.empty:
        raise DataError(f"{csv_path}: lists no audio files", reason="empty")
    if meta[list(REQUIRED_CSV_COLUMNS)].isna().any().any():
        bad = meta[meta[list(REQUIRED_CSV_COLUMNS)].isna().any(axis=1)].index[0]
        raise DataError(f"{csv_path}: row {bad + 2} has an empty value in "
                        f"{list(REQUIRED_CSV_COLUMNS)}", reason="missing")
    for col in ("fold", "target"):
        num = pd.to_numeric(meta[col], errors="coerce")
        if num.isna().any() or (num != num.round()).any():
            row = int(np.flatnonzero((num.isna() | (num != num.round())).to_numpy())[0])
            raise DataError(f"{csv_path}: column {col!r} must hold integers, row {row + 2} "
                            f"has {meta[col].iloc[row]!r}")
        meta[col] = num.astype("int64")
    meta["filename"] = meta["filename"].astype(str)
    meta["category"] = meta["category"].astype(str)
    dup = meta["filename"][meta["filename"].duplicated()]
    if len(dup):
        raise DataError(f"{csv_path}: file {dup.iloc[0]!r} is listed more than once")
    per_target = meta.groupby("target")["category"].nunique()
    if (per_target > 1).any():
        t = int(per_target[per_target > 1].index[0])
        cats = sorted(meta.loc[meta["target"] == t, "category"].unique())
        raise DataError(f"{csv_path}: target {t} has several categories {cats}; expected one")
    per_cat = meta.groupby("category")["target"].nunique()
    if (per_cat > 1).any():
        cat = per_cat[per_cat > 1].index[0]
        raise DataError(f"{csv_path}: category {cat!r} has several targets; expected one")
    return meta


def _folds(source: dict[str, Any], key: str, default: list[int] | None) -> set[int]:
    """Read a list of fold ids from the source params."""
    value = source.get(key, default)
    if value is None:
        return set()
    if isinstance(value, (int, np.integer)):
        value = [value]
    try:
        return {int(v) for v in value}
    except (TypeError, ValueError) as e:
        raise DataError(f"audio.source.{key} must be a list of fold ints, got {value!r}") from e


class AudioModality(Modality):
    """Environmental sound clips in ESC-50 layout, tokenized as log-mel spectrogram patches."""

    name = "audio"
    formats = ("esc50",)
    source_keys = ("test_folds", "val_folds")
    sample_data_keys = ("sample_rate", "clip_seconds", "clips_per_class_per_fold", "seed")
    tokenization_keys = {"sample_rate": None, "clip_seconds": None, "n_fft": None, "hop_length": None,
                         "n_mels": None, "patch_size": SIZE}
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a deterministic SYNTHETIC sound-event data set in ESC-50 layout (see
        :func:`omnivec2_pipelines.sample_data.audio.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.audio import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read an ESC-50 tree into the canonical table.

        Source params: ``test_folds`` (default ``[5]``) and optional ``val_folds``; other
        folds are train. ``on_error`` (``raise``/``skip`` per bad clip), ``val_fraction``,
        ``seed``. Labels are the CSV ``target`` ids remapped to ``0..K-1`` in sorted
        target order, ``label_name`` is ``category``. Payload columns: ``waveform``
        (float32 mono), ``sample_rate``, ``num_frames`` (plus ``fold`` and ``target``).

        Raises:
            DataError: missing CSV/column, no train/test rows for the chosen folds, all clips
                skipped, no train/test clip left after skipping; and (unless skipped) a listed
                file missing, corrupt or truncated, empty audio, NaN/inf samples.
        """
        _, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        audio_dir = root / "audio"
        csv_path = root / "meta" / "esc50.csv"
        if not audio_dir.is_dir():
            raise DataError(f"{audio_dir}: audio folder not found; expected ESC-50 layout "
                            f"root/audio/*.wav + root/meta/esc50.csv", reason="missing")
        meta = _read_csv(csv_path)
        test_folds = _folds(source, "test_folds", [5])
        val_folds = _folds(source, "val_folds", None)
        if test_folds & val_folds:
            raise DataError(f"audio.source.test_folds {sorted(test_folds)} and val_folds "
                            f"{sorted(val_folds)} overlap")
        split = np.where(meta["fold"].isin(test_folds), "test",
                         np.where(meta["fold"].isin(val_folds), "val", "train"))
        for required in ("train", "test"):
            if not (split == required).any():
                raise DataError(f"{csv_path}: no rows for split {required!r} (folds present "
                                f"{sorted(meta['fold'].unique().tolist())}, test_folds "
                                f"{sorted(test_folds)}, val_folds {sorted(val_folds)})",
                                reason="missing")
        rows: list[dict[str, Any]] = []
        for rec, sp in zip(meta.itertuples(index=False), split):
            path = audio_dir / rec.filename
            got = policy.call(path, _load_listed, path, csv_path)
            if got is None:
                continue
            wav, sr = got
            rows.append({
                "sample_id": Path(rec.filename).with_suffix("").as_posix(),
                "source_file": f"audio/{rec.filename}",
                "label": -1,  # set below from the targets left after skipping
                "label_name": rec.category,
                "split": str(sp),
                "waveform": wav,
                "sample_rate": sr,
                "num_frames": int(wav.shape[0]),
                "fold": int(rec.fold),
                "target": int(rec.target),
            })
        if not rows:
            raise DataError(f"{csv_path}: all {len(meta)} listed clip(s) were skipped as unreadable "
                            f"(audio.source.on_error: skip); nothing left to read", reason="empty")
        table = pd.DataFrame(rows)
        for required in ("train", "test"):
            if not (table["split"] == required).any():
                raise DataError(f"{csv_path}: no readable {required!r} clips left after skipping "
                                f"bad files (audio.source.on_error: skip)", reason="empty")
        targets = sorted(table["target"].unique().tolist())  # 0..K-1 even if a class was skipped
        table["label"] = table["target"].map({t: i for i, t in enumerate(targets)})
        table = table.astype({"label": "int64", "sample_rate": "int64", "num_frames": "int64",
                              "fold": "int64", "target": "int64"})
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Resample, crop/pad, log-mel, crop frames to a patch multiple, normalise with train.

        Args:
            table: Canonical audio table (see :meth:`read`).
            params: ``sample_rate``, ``clip_seconds``, ``n_fft``, ``hop_length``, ``n_mels``,
                ``patch_size`` ``[pf, pt]`` (``pf`` must divide ``n_mels``).

        Returns:
            Arrays ``"<split>.x"`` float32 ``(N, 1, n_mels, T)`` and
            ``"<split>.y.classification"`` int64 per split, ``T`` a multiple of ``pt``.

        Raises:
            DataError: bad params, a clip too short for one patch, or no train rows.
        """
        import torch  # heavy: imported only when tokenizing

        sr = pos_int(params, "sample_rate", _PREFIX)
        n_fft = pos_int(params, "n_fft", _PREFIX)
        hop = pos_int(params, "hop_length", _PREFIX)
        n_mels = pos_int(params, "n_mels", _PREFIX)
        clip_seconds = params.get("clip_seconds")
        if not isinstance(clip_seconds, (int, float)) or clip_seconds <= 0:
            raise DataError(f"audio.tokenization.clip_seconds must be a positive number, "
                            f"got {clip_seconds!r}")
        n_samples = int(round(sr * float(clip_seconds)))
        pf, pt = pair(params, "patch_size", _PREFIX, names="[pf, pt]")
        if n_mels % pf:
            raise DataError(f"audio.tokenization.patch_size={[pf, pt]}: pf={pf} must divide "
                            f"audio.tokenization.n_mels={n_mels}")
        if n_fft // 2 >= n_samples:
            raise DataError(f"audio.tokenization.n_fft={n_fft} is too large for clips of "
                            f"{n_samples} samples (clip_seconds * sample_rate)")
        if not (table["split"] == "train").any():
            raise DataError("audio table has no 'train' rows; normalisation statistics are "
                            "computed on the train split")
        class_names = table_class_names(table)
        features = {"clip_seconds": float(clip_seconds), "n_fft": n_fft, "hop_length": hop, "n_mels": n_mels,
                    "log_offset": 1e-6}
        mel = _mel_transform(sr, features)
        with torch.no_grad():
            n_frames = int(mel(torch.zeros(1, n_samples)).shape[-1])
        t_keep = n_frames - n_frames % pt
        if t_keep == 0:
            raise DataError(f"audio.tokenization.patch_size={[pf, pt]}: clips give {n_frames} "
                            f"frames, fewer than pt={pt}")
        feats: dict[str, np.ndarray] = {}
        ys: dict[str, np.ndarray] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            feats[split] = _log_mel(part, mel, sr, n_samples, t_keep, features["log_offset"])
            ys[split] = part["label"].to_numpy(dtype=np.int64)
        mean = float(feats["train"].mean(dtype=np.float64))
        std = max(float(feats["train"].std(dtype=np.float64)), 1e-6)
        arrays: dict[str, np.ndarray] = {}
        for split, x in feats.items():
            arrays[f"{split}.x"] = _normalize(x, {"mean": mean, "std": std})
            arrays[f"{split}.y.classification"] = ys[split]
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            # aligned: false — a spectrogram's time axis: the same sound can come at any time
            "tokenizer": {"kind": "patch2d", "in_channels": 1, "input_size": [n_mels, t_keep],
                          "patch_size": [pf, pt], "aligned": False},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": {s: int(len(x)) for s, x in feats.items()},
            "sample_rate": sr,
            "features": features,
            "normalization": {"mean": mean, "std": std,
                              "formula": "(log(mel + log_offset) - mean) / std"},
        }
        return ArrayBundle(arrays=arrays, meta=meta)


    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """A bundle's features (``meta["sample_rate"]``, ``meta["features"]``: resampling, crop/pad, log-mel,
        ``tokenizer.input_size`` frames) and train normalisation (``meta["normalization"]``) applied to
        waveform rows: ``{"x": (N, 1, n_mels, T) float32}``, as :meth:`tokenize` makes them (rows run
        through the mel transform in the same chunks of 256).

        Raises:
            DataError: a meta of another modality, or an empty waveform (named).
        """
        tok = check_meta_kind(meta, "patch2d", self.name)
        require_rows(table, self.name)
        sr, feats = int(meta["sample_rate"]), meta["features"]
        n_samples = int(round(sr * float(feats["clip_seconds"])))
        x = _log_mel(table, _mel_transform(sr, feats), sr, n_samples, int(tok["input_size"][1]),
                     float(feats["log_offset"]))
        return {"x": _normalize(x, meta["normalization"])}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw clips → waveform rows (``id``, ``sample_id``, ``source_file``, ``waveform``, ``sample_rate``,
        ``num_frames``) for :meth:`preprocess`.

        Files (``.wav``/``.flac``/``.ogg``, or folders of them) decode as :meth:`read` decodes them
        (:func:`load_wav`: mono float32). A bare array is a mono waveform at :data:`ARRAY_SAMPLE_RATE`
        (44.1 kHz, the ESC-50 clips' rate); pass ``(waveform, sample_rate)`` for another rate.

        Raises:
            DataError: naming an input that is missing, not an audio file, not decodable, or a bad array.
        """
        items = input_items(inputs, AUDIO_EXTENSIONS, self.name, _is_audio_object, AUDIO_OBJECTS)

        def decode(where: str, item: Any) -> dict[str, Any]:
            wav, sr = load_wav(item) if isinstance(item, Path) else _waveform_object(item, where)
            return {"waveform": wav, "sample_rate": sr, "num_frames": int(wav.shape[0])}

        return input_rows(items, decode).astype({"sample_rate": "int64", "num_frames": "int64"})


def _is_audio_object(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or (isinstance(obj, tuple) and len(obj) == 2
                                           and isinstance(obj[0], np.ndarray))


def _waveform_object(obj: Any, where: str) -> tuple[np.ndarray, int]:
    """An in-memory clip as ``(mono float32 waveform, sample_rate)``, checked as :func:`load_wav` checks files."""
    wav, sr = obj if isinstance(obj, tuple) else (obj, ARRAY_SAMPLE_RATE)
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise DataError(f"audio {where}: sample rate {sr!r} is not a positive int; expected {AUDIO_OBJECTS}",
                        reason="invalid")
    if wav.ndim != 1 or not np.issubdtype(wav.dtype, np.number) or np.iscomplexobj(wav):
        raise DataError(f"audio {where}: got an array of shape {wav.shape} and dtype {wav.dtype}; expected "
                        f"{AUDIO_OBJECTS}", reason="shape")
    if wav.size == 0:
        raise DataError(f"audio {where}: audio has zero frames; expected a non-empty clip", reason="empty")
    wav = wav.astype(np.float32)
    if not np.isfinite(wav).all():
        raise DataError(f"audio {where}: audio contains NaN or inf samples", reason="nan")
    return wav, int(sr)


def _mel_transform(sr: int, features: dict[str, Any]) -> Any:
    """The torchaudio mel spectrogram of the ``features`` settings (``n_fft``, ``hop_length``, ``n_mels``)."""
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=int(features["n_fft"]),
                                                hop_length=int(features["hop_length"]),
                                                n_mels=int(features["n_mels"]))


def _log_mel(rows: pd.DataFrame, mel: Any, sr: int, n_samples: int, t_keep: int,
             log_offset: float) -> np.ndarray:
    """Waveform rows → log-mel ``(N, 1, n_mels, t_keep)`` float32, in chunks of 256 rows."""
    import torch

    chunks = []
    for start in range(0, len(rows), 256):
        part = rows.iloc[start:start + 256]
        wav = torch.from_numpy(np.stack(
            [_fit_waveform(r, sr, n_samples) for r in part.itertuples(index=False)]))
        with torch.no_grad():
            spec = torch.log(mel(wav) + log_offset)  # (B, n_samples) -> (B, n_mels, frames)
        chunks.append(spec[:, None, :, :t_keep].numpy())  # -> (B, 1, n_mels, T)
    return np.concatenate(chunks)


def _normalize(x: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """Log-mel features standardised with the train ``mean``/``std`` of ``norm``: float32."""
    return ((x - norm["mean"]) / norm["std"]).astype(np.float32)


def _fit_waveform(row: Any, sr: int, n_samples: int) -> np.ndarray:
    """One table row to a float32 waveform at ``sr`` cropped/zero-padded to ``n_samples``."""
    wav = np.asarray(row.waveform, dtype=np.float32)  # (num_frames,)
    if wav.size == 0:
        raise DataError(f"{row.source_file}: empty waveform", reason="empty")
    if int(row.sample_rate) != sr:
        import torch
        import torchaudio

        wav = torchaudio.functional.resample(
            torch.from_numpy(wav.copy()), int(row.sample_rate), sr).numpy()
    out = np.zeros(n_samples, dtype=np.float32)
    k = min(n_samples, wav.shape[0])
    out[:k] = wav[:k]
    return out


register(AudioModality())

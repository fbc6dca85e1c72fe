"""Predictions of a trained checkpoint on raw inputs: read → preprocess (the bundle's fitted tokenization) → model.

:class:`Predictor` wraps a checkpoint's model and its data meta (``meta["data"][modality]``, the tokenized
bundle's meta). ``predict(modality, task, inputs)`` reads the inputs with the modality's
:meth:`~omnivec2_pipelines.modalities.base.Modality.read_inputs`, applies its
:meth:`~omnivec2_pipelines.modalities.base.Modality.preprocess` (the arrays the pipeline would have made, bit
for bit), runs single-stream inference in batches on the best device and formats the head outputs the
way the task's kind says (:meth:`~omnivec2_pipelines.tasks.base.TaskKind.format_predictions`): class
names with probabilities, values in the target's own units, dense maps or per-point labels.

Pure torch: never imports Kedro.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from omnivec2_pipelines.formats.base import DataError
from omnivec2_pipelines.modalities.base import TaskSpec, get_modality
from omnivec2_pipelines.models import OmniVec2, head_key
from omnivec2_pipelines.tasks import get_task_kind
from omnivec2_pipelines.training.trainer import resolve_device

#: ``predict(..., on_error=...)`` values: stop at the first bad input, or leave it out and report it.
ON_ERROR = ("raise", "skip")


@dataclass
class Predictions:
    """What :meth:`Predictor.predict` returns for one (modality, task).

    Attributes:
        modality: The modality.
        task: The task name.
        spec: The task (kind, class names, output shape).
        ids: One id per predicted input (file name relative to the folder, or the position).
        outputs: Named arrays of ``len(ids)`` rows from the kind's ``format_predictions``: ``prediction``
            and ``probabilities`` (classification: class names and (N, K); segmentation: class index per
            point and (N, P, K)) or ``values`` (regression kinds, in the target's own units).
        raw: The head outputs (logits, or standardised values), as evaluation scores them.
        skipped: ``(input, reason)`` of every input left out with ``on_error="skip"``.
    """

    modality: str
    task: str
    spec: TaskSpec
    ids: list[str]
    outputs: dict[str, np.ndarray]
    raw: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def prediction(self) -> np.ndarray:
        """Class names (classification), per-point class indices (segmentation), else the values."""
        return self.outputs["prediction"] if "prediction" in self.outputs else self.outputs["values"]

    @property
    def probabilities(self) -> np.ndarray | None:
        """Class probabilities (columns in ``spec.class_names`` order), or None for a regression kind."""
        return self.outputs.get("probabilities")

    @property
    def values(self) -> np.ndarray | None:
        """Regressed values in the target's units, or None for a classification kind."""
        return self.outputs.get("values")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def dense(self) -> bool:
        """True when a prediction is a map / per-point array (kept out of :meth:`to_frame`'s columns)."""
        return get_task_kind(self.spec.kind).dense_output

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``id``, then the kind's columns (``prediction``, ``probability``, ``p_<class>``;
        ``value`` / ``value_<i>``). A dense prediction adds ``row`` (its index in :attr:`outputs`' arrays)."""
        cols = get_task_kind(self.spec.kind).prediction_columns(self.spec, self.outputs)
        frame = pd.DataFrame({"id": list(self.ids), **cols})
        if self.dense:
            frame["row"] = np.arange(len(self.ids), dtype=np.int64)
        return frame

    def __len__(self) -> int:
        return len(self.ids)


class Predictor:
    """A trained network ready for single-stream inference on raw inputs.

    Args:
        model: The network (put in eval mode on ``device``).
        meta: The checkpoint's meta; ``meta["data"][modality]`` is the tokenized bundle's meta.
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ...
        batch_size: Inputs per forward pass.
    """

    def __init__(self, model: OmniVec2, meta: Mapping[str, Any], device: str = "auto", batch_size: int = 256) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"Predictor: batch_size must be a positive int, got {batch_size!r}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.meta = dict(meta)
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", batch_size: int = 256) -> "Predictor":
        """Load a checkpoint directory (or a folder of versions: its newest) written by a training stage.

        Raises:
            FileNotFoundError / ValueError: naming the path, when it is not a readable checkpoint.
        """
        from omnivec2_pipelines.training.checkpoint import load_init

        ckpt = load_init(path, f"checkpoint {path}")
        return cls(ckpt.model, ckpt.meta, device, batch_size)

    def tasks(self) -> list[tuple[str, str]]:
        """Every (modality, task) the network has a head for and the checkpoint has data meta of."""
        data = self.meta.get("data") or {}
        return sorted((h.modality, h.task) for h in self.model.cfg.heads.values()
                      if h.task in ((data.get(h.modality) or {}).get("tasks") or {}))

    def bundle_meta(self, modality: str) -> dict[str, Any]:
        """The tokenized bundle's meta of ``modality`` (tokenizer, normalisation, tasks, tasks_scale).

        Raises:
            KeyError: naming the modality and the ones the checkpoint knows.
        """
        data = self.meta.get("data") or {}
        if modality not in data:
            raise KeyError(f"Predictor: the checkpoint has no data meta of modality {modality!r}; it knows "
                           f"{sorted(data)} (tasks {self.tasks()})")
        return data[modality]

    def spec(self, modality: str, task: str) -> TaskSpec:
        """The task of ``modality`` called ``task``.

        Raises:
            KeyError: naming the (modality, task) and the pairs the checkpoint can predict.
        """
        tasks = self.bundle_meta(modality).get("tasks") or {}
        if task not in tasks or head_key(modality, task) not in self.model.heads:
            raise KeyError(f"Predictor: the checkpoint has no head for {modality}.{task}; it predicts "
                           f"{[f'{m}.{t}' for m, t in self.tasks()]}")
        return TaskSpec.from_dict(tasks[task])

    def preprocess(self, modality: str, task: str, rows: pd.DataFrame) -> np.ndarray:
        """The model input of ``task`` for canonical rows (the modality's ``preprocess`` with the bundle's meta)."""
        spec = self.spec(modality, task)
        arrays = get_modality(modality).preprocess(rows, self.bundle_meta(modality))
        if spec.input_key not in arrays:
            raise DataError(f"{modality}.preprocess gave {sorted(arrays)}, not the input {spec.input_key!r} "
                            f"of task {task!r}", reason="invalid")
        return arrays[spec.input_key]

    def forward(self, modality: str, task: str, x: np.ndarray) -> np.ndarray:
        """Head outputs for model inputs ``x`` (N, ...), in batches of :attr:`batch_size`, as float32 numpy."""
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(np.require(x[i:i + self.batch_size], requirements=["C", "W"])).to(self.device)
                outs.append(self.model(modality, xb, task).float().cpu().numpy())
        if not outs:
            raise ValueError(f"Predictor: no inputs to predict for {modality}.{task}")
        return np.concatenate(outs)

    def format(self, modality: str, task: str, ids: list[str], raw: np.ndarray,
               skipped: list[tuple[str, str]] | None = None) -> Predictions:
        """Head outputs as :class:`Predictions` (the kind's formatting, de-standardised with ``tasks_scale``)."""
        spec = self.spec(modality, task)
        scale = (self.bundle_meta(modality).get("tasks_scale") or {}).get(task)
        outputs = get_task_kind(spec.kind).format_predictions(spec, raw, scale)
        return Predictions(modality, task, spec, list(ids), outputs, raw, list(skipped or []))

    def predict(self, modality: str, task: str, inputs: Any, on_error: str = "raise") -> Predictions:
        """Predict ``task`` of ``modality`` for raw inputs.

        Files are read :data:`READ_CHUNK` at a time, each chunk decoded and preprocessed in a background
        thread while the model runs on the previous one (PIL decoding and torch both release the GIL); on CPU
        the model then uses one intra-op thread fewer than ``torch.get_num_threads()`` (restored after).

        Args:
            modality: A modality the checkpoint was trained on.
            task: One of its tasks with a head.
            inputs: What the modality's ``read_inputs`` takes: a file path, a folder (its files, recursively),
                a list of paths, or in-memory objects (arrays, PIL images, strings, DataFrames).
            on_error: ``"raise"``: the first input that cannot be read or preprocessed raises; ``"skip"``:
                such inputs are left out and listed in :attr:`Predictions.skipped` with the reason.

        Raises:
            KeyError: an unknown (modality, task).
            DataError: a bad input (with ``on_error="raise"``), or none left after skipping.
        """
        if on_error not in ON_ERROR:
            raise ValueError(f"Predictor.predict: on_error must be one of {list(ON_ERROR)}, got {on_error!r}")
        self.spec(modality, task)
        parts = input_parts(inputs)
        chunks = [parts[i:i + READ_CHUNK] for i in range(0, len(parts), READ_CHUNK)] or [[]]
        ids: list[str] = []
        raws: list[np.ndarray] = []
        skipped: list[tuple[str, str]] = []
        with ThreadPoolExecutor(max_workers=1) as pool, self._reader_threads(len(chunks) > 1):
            pending = pool.submit(self.read_parts, modality, task, chunks[0], on_error)
            for i in range(len(chunks)):
                chunk_ids, x, chunk_skipped = pending.result()
                if i + 1 < len(chunks):  # decode the next chunk while the model runs on this one
                    pending = pool.submit(self.read_parts, modality, task, chunks[i + 1], on_error)
                ids += chunk_ids
                skipped += chunk_skipped
                if len(chunk_ids):
                    raws.append(self.forward(modality, task, x))
        if not raws:
            raise DataError(f"{modality} inputs: all {len(skipped)} input(s) were skipped as unreadable "
                            f"(on_error: skip); first: {skipped[0][0]}: {skipped[0][1]}" if skipped else
                            f"{modality} inputs: nothing to read", reason="empty")
        return self.format(modality, task, ids, np.concatenate(raws), skipped)

    @contextlib.contextmanager
    def _reader_threads(self, overlap: bool) -> Iterator[None]:
        """While a background thread reads the next chunk, the model on CPU uses one intra-op thread fewer
        (at least one): with both at full width they contend for the cores (measured: 2 threads + a reader
        on 2 cores ran 5x slower than 1 + 1, ``benchmarks/predict.py``). The count is restored afterwards."""
        threads = torch.get_num_threads()
        if not overlap or self.device.type != "cpu" or threads < 2:
            yield
            return
        torch.set_num_threads(threads - 1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def read(self, modality: str, task: str, inputs: Any,
             on_error: str = "raise") -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
        """``(ids, model inputs, skipped)`` of raw inputs, all at once (see :meth:`read_parts`).

        Raises:
            DataError: as :meth:`predict`.
        """
        ids, x, skipped = self.read_parts(modality, task, input_parts(inputs), on_error)
        if not ids:
            raise DataError(f"{modality} inputs: all {len(skipped)} input(s) were skipped as unreadable "
                            f"(on_error: skip)", reason="empty")
        return ids, x, skipped

    def read_parts(self, modality: str, task: str, parts: list[tuple[str, Any]],
                   on_error: str = "raise") -> tuple[list[str], np.ndarray | None, list[tuple[str, str]]]:
        """``(ids, model inputs, skipped)`` of named parts (:func:`input_parts`): read and preprocessed together;
        with ``on_error="skip"``, when that fails, one part at a time (a list of objects: one object at a time).

        Raises:
            DataError: the first bad part, with ``on_error="raise"``.
        """
        mod = get_modality(modality)
        try:
            rows = mod.read_inputs(parts[0][1] if len(parts) == 1 else [item for _, item in parts])
            return renamed_ids(rows["id"].astype(str).tolist(), parts), self.preprocess(modality, task, rows), []
        except DataError:
            if on_error == "raise":
                raise
        ids: list[str] = []
        xs: list[np.ndarray] = []
        skipped: list[tuple[str, str]] = []
        for name, item in _singles(parts):
            try:
                rows = mod.read_inputs(item)
                x = self.preprocess(modality, task, rows)
            except DataError as e:
                skipped.append((name or "input", str(e)))
                continue
            ids += renamed_ids(rows["id"].astype(str).tolist(), [(name, item)])
            xs.append(x)
        return ids, (np.concatenate(xs) if xs else None), skipped


#: Input files read (decoded + preprocessed) per chunk by :meth:`Predictor.predict`.
READ_CHUNK = 1024


def _is_path(value: Any) -> bool:
    """A path input: a path object, or a string naming an existing file or folder (other strings are texts)."""
    return isinstance(value, os.PathLike) or (isinstance(value, str) and os.path.exists(value))


def input_parts(inputs: Any) -> list[tuple[str, Any]]:
    """``inputs`` as named parts, read in chunks by :meth:`Predictor.predict` and one at a time when some are bad.

    A folder gives each visible file under it (recursively, sorted; named by its path relative to the folder,
    as ``read_inputs`` names them), a file its file name; a list of paths the parts of each. Anything else
    (an object, a list holding objects) is one part named ``""``: its rows keep the ids ``read_inputs`` gives.
    """
    if _is_path(inputs) and Path(inputs).is_dir():
        root = Path(inputs)
        files = sorted((p for p in root.rglob("*") if p.is_file()
                        and not any(s.startswith(".") for s in p.relative_to(root).parts)),
                       key=lambda p: p.relative_to(root).parts)
        return [(p.relative_to(root).as_posix(), p) for p in files]
    if _is_path(inputs):
        return [(Path(inputs).name, inputs)]
    if isinstance(inputs, (list, tuple)) and inputs and all(_is_path(v) for v in inputs):
        return [part for v in inputs for part in input_parts(v)]
    return [("", inputs)]


def _singles(parts: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Parts one input each: a list of objects (a part named ``""``) cut into its elements, named by position."""
    out: list[tuple[str, Any]] = []
    for name, item in parts:
        if name == "" and isinstance(item, (list, tuple)):
            out += [(str(i), v) for i, v in enumerate(item)]
        else:
            out.append((name, item))
    return out


def renamed_ids(ids: list[str], parts: list[tuple[str, Any]]) -> list[str]:
    """Ids of rows read from ``parts`` named as in :func:`input_parts`.

    ``read_inputs`` names a file by its file name (rows of a file holding several samples
    ``<file name>/<sample>``) and an object by its position; each part's own name replaces that. A part named
    ``""`` keeps the modality's ids; so does a part whose rows the modality named otherwise.
    """
    if len(ids) == len(parts):
        own = [_own_id(item, i, len(parts)) for i, (_, item) in enumerate(parts)]
        return [name + i[len(o):] if name and i.startswith(o) else i for i, (name, _), o in zip(ids, parts, own)]
    out, j = [], 0
    for i in ids:  # several rows per part, in part order
        while j < len(parts) - 1 and not _belongs(i, _own_id(parts[j][1], j, len(parts))):
            j += 1
        name, o = parts[j][0], _own_id(parts[j][1], j, len(parts))
        out.append(name + i[len(o):] if name and _belongs(i, o) else i)
    return out


def _own_id(item: Any, position: int, n: int) -> str:
    """The id ``read_inputs`` gives a part: a file's name, else its position (``"0"`` when read alone)."""
    return Path(item).name if _is_path(item) else str(position if n > 1 else 0)


def _belongs(row_id: str, own: str) -> bool:
    return row_id == own or row_id.startswith(own + "/")

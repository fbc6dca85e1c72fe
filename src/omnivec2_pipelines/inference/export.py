"""Self-contained single-stream models for serving: one per (modality, task), as ``torch.export`` and ONNX.

``torch.jit.script`` cannot compile :class:`~omnivec2_pipelines.models.OmniVec2` (string-keyed module
dicts, dataclass streams), and ``torch.export`` traces a module whose ``forward`` takes tensors only, so
:class:`SingleStream` fixes the (modality, task): it holds a pruned copy of the network with that
modality's tokenizer and that task's head only, and ``forward(x)`` is ``model(modality, x, task)``.

:func:`export_task` writes ``<name>.pt2`` (``torch.export.save``), ``<name>.onnx`` (``torch.onnx.export``)
and ``<name>.json`` (the input contract and the bundle's preprocessing meta), and checks both against
the eager model on real inputs (ONNX with ONNX Runtime on CPU, where installed). Every format that fails
is reported with the reason; nothing is skipped silently. Pure torch: never imports Kedro.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from omnivec2_pipelines.models import ModelConfig, OmniVec2, head_key

log = logging.getLogger(__name__)

#: Export formats, in the order they are written.
FORMATS = ("torch_export", "onnx")
#: Largest batch the exported programs accept (the batch axis is dynamic, 1 .. this).
MAX_BATCH = 4096
#: Parity bound (max abs difference to the eager model) under which an export counts as correct.
PARITY_ATOL = 1e-3


def single_task_model(model: OmniVec2, modality: str, task: str) -> OmniVec2:
    """A copy of ``model`` with only ``modality``'s tokenizer and embedding and the ``(modality, task)`` head.

    Raises:
        KeyError: naming the pair when the model has no such head.
    """
    key = head_key(modality, task)
    if key not in model.heads or modality not in model.tokenizers:
        raise KeyError(f"export: the model has no head for {modality}.{task}; it has {sorted(model.heads)}")
    d = copy.deepcopy(model.cfg.to_dict())
    cfg = ModelConfig.from_dict({**d, "tokenizers": {modality: d["tokenizers"][modality]},
                                 "heads": {key: d["heads"][key]}})
    small = OmniVec2(cfg)
    full = model.state_dict()
    missing = [k for k in small.state_dict() if k not in full]
    if missing:
        raise ValueError(f"export {modality}.{task}: the pruned network has weights the model lacks: {missing[:5]}")
    small.load_state_dict({k: full[k] for k in small.state_dict()})
    return small.eval()


class SingleStream(nn.Module):
    """``forward(x) = model(modality, x, task)``: a tensor-only module for ``torch.export`` and ONNX.

    Args:
        model: The trained network (a pruned copy is kept, see :func:`single_task_model`).
        modality: The input's modality.
        task: The head's task.
    """

    def __init__(self, model: OmniVec2, modality: str, task: str) -> None:
        super().__init__()
        self.modality, self.task = modality, task
        self.model = single_task_model(model, modality, task)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.modality, x, self.task)


def input_contract(meta: Mapping[str, Any], spec: Any, x: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    """The serving contract of one export: input/output shape and dtype, and what produces the input."""
    return {"input": {"name": "x", "shape": ["batch", *x.shape[1:]], "dtype": str(x.dtype),
                      "key": spec.input_key,
                      "preprocess": f"Modality.preprocess(rows, meta) of {meta.get('modality')!r} "
                                    f"(omnivec2_pipelines.modalities), see 'meta' below"},
            "output": {"name": "out", "shape": ["batch", *out.shape[1:]], "dtype": str(out.dtype),
                       "kind": spec.kind, "class_names": list(spec.class_names),
                       "scale": (meta.get("tasks_scale") or {}).get(spec.name)}}


def _export_program(module: nn.Module, x: torch.Tensor, path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """``torch.export`` with a dynamic batch axis, saved to ``path``; returns a runner of the reloaded program."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    ep = torch.export.export(module, (x,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path)).module()

    def run(a: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return loaded(torch.from_numpy(a)).float().numpy()

    return run


def _export_onnx(module: nn.Module, x: torch.Tensor, path: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    """``torch.onnx.export`` (opset 17) with a dynamic batch axis; returns an ONNX Runtime (CPU) runner, or None
    when onnxruntime is not installed.

    The TorchScript-tracing exporter is tried first (what this project tests); when it fails and ``onnxscript`` is
    installed, the dynamo exporter is tried.
    """
    names = {"input_names": ["x"], "output_names": ["out"]}
    try:
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                          dynamic_axes={"x": {0: "batch"}, "out": {0: "batch"}}, **names)
    except Exception:
        if importlib.util.find_spec("onnxscript") is None:
            raise
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        torch.onnx.export(module, (x,), str(path), dynamo=True, dynamic_shapes={"x": {0: batch}}, **names)
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda a: np.asarray(session.run(["out"], {"x": a})[0], dtype=np.float32)


_EXPORTERS = {"torch_export": (".pt2", _export_program), "onnx": (".onnx", _export_onnx)}


def export_task(model: OmniVec2, meta: Mapping[str, Any], modality: str, task: str, x: np.ndarray,
                out_dir: str | Path, formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Write one (modality, task) for serving and check each format against the eager model on ``x``.

    Args:
        model: The trained network.
        meta: The modality's bundle meta (``checkpoint.meta["data"][modality]``), stored beside the exports.
        modality: The modality.
        task: A task of it with a head.
        x: Real preprocessed model inputs (a few rows): the example traced and the parity inputs.
        out_dir: Folder receiving ``<modality>.<task>.pt2`` / ``.onnx`` / ``.json``.
        formats: Any of :data:`FORMATS`.

    Returns:
        ``{"modality", "task", "contract", "formats": {fmt: {"ok", "file", "max_abs_diff", "error"}}}``;
        a format that fails to export or to match has ``ok: False`` and the reason in ``error``.

    Raises:
        KeyError: an unknown (modality, task) or format.
    """
    unknown = [f for f in formats if f not in _EXPORTERS]
    if unknown:
        raise KeyError(f"export: unknown format(s) {unknown}; expected some of {list(FORMATS)}")
    from omnivec2_pipelines.modalities.base import TaskSpec

    spec = TaskSpec.from_dict(meta["tasks"][task])
    module = SingleStream(model.cpu(), modality, task).eval()
    x = np.ascontiguousarray(x)
    with torch.inference_mode():
        eager = module(torch.from_numpy(x)).float().numpy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{modality}.{task}"
    report: dict[str, Any] = {"modality": modality, "task": task, "contract": input_contract(meta, spec, x, eager),
                              "formats": {}}
    for fmt in formats:
        suffix, exporter = _EXPORTERS[fmt]
        report["formats"][fmt] = _try_format(exporter, module, x, eager, out_dir / f"{name}{suffix}", name, fmt)
    (out_dir / f"{name}.json").write_text(json.dumps({**report, "meta": dict(meta)}, indent=2, sort_keys=True,
                                                     default=str))
    return report


def _try_format(exporter: Callable[..., Any], module: nn.Module, x: np.ndarray, eager: np.ndarray, path: Path,
                name: str, fmt: str) -> dict[str, Any]:
    """One format of :func:`export_task`: export, reload, run on ``x`` and compare; failures become the reason."""
    entry: dict[str, Any] = {"ok": False, "file": path.name, "max_abs_diff": None, "error": None}
    try:
        with warnings.catch_warnings():  # the tracer's notes on shape checks turned into constants
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*aten::index.*")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message="The feature will be removed.*")
            run = exporter(module, torch.from_numpy(x[:2].copy()), path)
    except Exception as e:  # reported per format, with the exporter's own message
        entry["error"] = f"export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:500]
        log.warning("export %s (%s): %s\n%s", name, fmt, entry["error"], traceback.format_exc(limit=3))
        path.unlink(missing_ok=True)
        return entry
    if run is None:
        entry.update(ok=True, error="written; parity not checked: onnxruntime is not installed")
        return entry
    try:
        diff = float(np.max(np.abs(run(x) - eager))) if len(x) else 0.0
    except Exception as e:  # an export that does not run is a failure too
        entry["error"] = f"exported, but running it failed: {type(e).__name__}: {e}"[:500]
        return entry
    entry["max_abs_diff"] = diff
    entry["ok"] = bool(np.isfinite(diff) and diff <= PARITY_ATOL)
    if not entry["ok"]:
        entry["error"] = f"parity: max abs difference {diff:.3g} to the eager model > {PARITY_ATOL}"
    return entry


def export_checkpoint(model: OmniVec2, meta: Mapping[str, Any], inputs: Mapping[tuple[str, str], np.ndarray],
                      out_dir: str | Path, formats: tuple[str, ...] = FORMATS) -> list[dict[str, Any]]:
    """:func:`export_task` for every ``(modality, task)`` of ``inputs`` (their example model inputs)."""
    return [export_task(model, meta["data"][m], m, t, x, out_dir, formats) for (m, t), x in sorted(inputs.items())]

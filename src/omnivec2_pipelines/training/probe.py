"""Frozen-feature linear probes: what the shared network of a checkpoint has learned, task by task.

For every (modality, task) of the data, the g features of a checkpoint's network (single stream,
nothing masked, eval mode, no gradient, in batches) are computed for the train split and for the
evaluated split; the task kind's own classical fitter (:meth:`~omnivec2_pipelines.tasks.base.TaskKind.probe`:
logistic regression for classification and segmentation, ridge for regression and dense
regression, on standardised features) is fitted on the train rows only and scored on the
evaluated rows with the kind's metrics. The network stays frozen and its heads are never used, so
a stage-1 checkpoint (no heads) is probed exactly like the final one; the task specs come from
the data. The kind's ``probe_on`` says what one row of features is:

* ``pooled`` (classification, regression): the mean of the g tokens over the real ones (the
  pooling of the classification head), one row of width ``reduced_width`` per sample;
* ``tokens`` (dense regression, e.g. depth): one row per g token, whose target is the patch of the
  map that token covers (the layout of the tokenizer's ``unpatchify``, as the dense head's); the
  per-token predictions are put back into maps before scoring;
* ``points`` (segmentation): one row per input point, the g tokens propagated to the point by the
  tokenizer's ``propagate`` (the segmentation head's inverse-distance interpolation of the nearest
  group centres, without the coordinates the head appends, so only g's features are probed).

Keys: ``"<modality>.<task>.probe.<stage>.<metric>"``, where ``<stage>`` names the checkpoint.
Pure torch and numpy (scikit-learn through the task kinds); the features of a split are held in
memory, as the classical baselines' inputs are.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from omnivec2_pipelines.modalities.base import ArrayBundle, TaskSpec
from omnivec2_pipelines.models import OmniVec2
from omnivec2_pipelines.models.layers import masked_mean
from omnivec2_pipelines.models.tokenizers.base import Tokenizer
from omnivec2_pipelines.tasks import TaskKind, get_task_kind
from omnivec2_pipelines.training.trainer import resolve_device

log = logging.getLogger(__name__)

#: What each kind of probe features needs of the modality's tokenizer.
_NEEDS: dict[str, tuple[str, ...]] = {"pooled": (), "tokens": ("unpatchify",), "points": ("centers", "propagate")}


def _batches(x: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Rows of ``x`` (an array, or a lazily read one) in writable C-contiguous batches."""
    for i in range(0, len(x), batch_size):
        yield np.require(x[i:i + batch_size], requirements=["C", "W"])


def _batch_features(model: OmniVec2, modality: str, x: Tensor, probe_on: Sequence[str]) -> dict[str, Tensor]:
    """One batch's g features of every kind asked for, from one forward pass: (B, D) pooled,
    (B, K, D) per token, (B, P, D) per point."""
    (stream,) = model.forward_features(model.encode(modality, x))
    out = {}
    for kind in probe_on:
        if kind == "pooled":
            out[kind] = masked_mean(stream.tokens, stream.valid)
        elif kind == "tokens":
            out[kind] = stream.tokens
        else:
            tok = model.tokenizers[modality]
            out[kind] = tok.propagate(stream.tokens, tok.centers(x, stream.aux), x[..., :3].float())
    return out


@torch.no_grad()
def probe_features(model: OmniVec2, modality: str, x: Any, probe_on: Sequence[str] = ("pooled",),
                   batch_size: int = 256, device: str = "auto") -> dict[str, np.ndarray]:
    """Frozen g features of the rows ``x`` of ``modality`` (single stream, nothing masked, eval mode),
    one forward pass per batch for all the kinds of features asked for.

    Args:
        model: The network; moved to ``device`` and put in eval mode.
        modality: A modality the model has a tokenizer for.
        x: Input rows (numpy, or a lazily read sharded array).
        probe_on: Any of ``"pooled"``, ``"tokens"``, ``"points"`` (see the module docstring).
        batch_size: Rows per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ...

    Returns:
        ``{kind: float32 features}``: (N, D), (N, K, D) or (N, P, D).
    """
    tok = model.tokenizers[modality]
    for kind in probe_on:
        missing = [name for name in _NEEDS[kind] if not hasattr(tok, name)]
        if missing:
            raise ValueError(f"probe of {modality}: {kind!r} features need a tokenizer with {missing}; "
                             f"{tok.kind!r} has none")
    dev = resolve_device(device)
    model.to(dev).eval()
    parts: dict[str, list[np.ndarray]] = {kind: [] for kind in probe_on}
    for xb in _batches(x, batch_size):
        for kind, f in _batch_features(model, modality, torch.from_numpy(xb).to(dev), probe_on).items():
            parts[kind].append(f.float().cpu().numpy())
    return {kind: np.concatenate(f) for kind, f in parts.items()}


def token_layout(tokenizer: Tokenizer, n_tokens: int, target_shape: tuple[int, ...]) -> np.ndarray:
    """Where each element of a ``(C, H, W)`` target map lies in the flat ``(n_tokens, per_token)``
    layout that ``tokenizer.unpatchify`` reads: ``map.flat[i] = per_token.flat[layout[i]]``.

    Found by unpatchifying the element indices, so it holds for any tokenizer with ``unpatchify``.
    """
    size = int(np.prod(target_shape))
    if size % n_tokens:
        raise ValueError(f"a target of shape {tuple(target_shape)} cannot be cut into {n_tokens} token patches")
    ids = torch.arange(size, dtype=torch.float64).reshape(1, n_tokens, size // n_tokens)
    layout = tokenizer.unpatchify(ids, int(target_shape[0]))
    if tuple(layout.shape[1:]) != tuple(target_shape):
        raise ValueError(f"the tokenizer's patches make maps of shape {tuple(layout.shape[1:])}, "
                         f"the target is {tuple(target_shape)}")
    return layout.reshape(-1).long().numpy()


def _to_rows(kind: TaskKind, f: np.ndarray, y: np.ndarray | None,
             layout: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and targets, with the token ``layout`` of :func:`token_layout`) as the rows the kind's
    fitter reads."""
    if kind.probe_on == "pooled":
        return f, y
    rows = f.reshape(-1, f.shape[-1])  # (N*K, D) or (N*P, D)
    if y is None:
        return rows, None
    if kind.probe_on == "tokens":
        patches = np.empty((len(y), layout.size), dtype=y.dtype)
        patches[:, layout] = y.reshape(len(y), -1)  # (N, K * per_token), token-major
        return rows, patches.reshape(f.shape[0] * f.shape[1], -1)
    return rows, y.reshape(-1)


def fit_probe(kind: TaskKind, spec: TaskSpec, tokenizer: Tokenizer | None, f_train: np.ndarray,
              y_train: np.ndarray, f_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Predictions for the evaluated rows' features ``f_test`` of the kind's probe fitted on the
    train rows ``(f_train, y_train)``, shaped like the targets of the evaluated rows.

    Args:
        kind: The task's kind (its ``probe_on`` says how the features are shaped).
        spec: The task.
        tokenizer: The modality's tokenizer, whose patch layout per-token features follow (only
            ``"tokens"`` features read it).
        f_train: :func:`probe_features` of the train rows.
        y_train: Their targets.
        f_test: :func:`probe_features` of the evaluated rows.
        seed: Seed of the fitter.
    """
    layout = token_layout(tokenizer, f_train.shape[1], y_train.shape[1:]) if kind.probe_on == "tokens" else None
    rows_tr, targets = _to_rows(kind, f_train, y_train, layout)
    rows_te, _ = _to_rows(kind, f_test, None, layout)
    pred = np.asarray(kind.probe(spec, rows_tr, targets, rows_te, seed))
    if kind.probe_on == "tokens":
        return pred.reshape(len(f_test), -1)[:, layout].reshape(len(f_test), *y_train.shape[1:])
    if kind.probe_on == "points":
        return pred.reshape(f_test.shape[:2])
    return pred


def probe_modality(model: OmniVec2, modality: str, bundle: ArrayBundle, split: str = "test",
                   batch_size: int = 256, device: str = "auto", seed: int = 0,
                   tasks: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{task: metrics}`` of the linear probes of a modality's tasks on ``split``, fitted on ``train``
    (tasks that read the same input share its forward passes).

    Args:
        model: The network (heads unused).
        modality: The modality; the model must have its tokenizer.
        bundle: Its tokenized data, with the task specs.
        split: The split the probes are scored on.
        batch_size: Rows per forward pass.
        device: Where the features are computed.
        seed: Seed of the fitters.
        tasks: The tasks to probe (default: every task of the bundle).

    Raises:
        ValueError: When the train split or ``split`` has no rows.
    """
    specs = {t: bundle.tasks[t] for t in (sorted(bundle.tasks) if tasks is None else tasks)}
    by_input: dict[str, list[str]] = {}
    for t, spec in specs.items():
        by_input.setdefault(spec.input_key, []).append(t)
    out = {}
    for key, names in by_input.items():
        kinds = {t: get_task_kind(specs[t].kind) for t in names}
        feats = {}
        for s in dict.fromkeys(("train", split)):
            x = bundle.get(s, key)
            if len(x) == 0:
                raise ValueError(f"probe: {modality} has no samples in split {s!r}")
            feats[s] = probe_features(model, modality, x, tuple(dict.fromkeys(k.probe_on for k in kinds.values())),
                                      batch_size, device)
        for t in names:
            spec, kind = specs[t], kinds[t]
            y_tr = np.asarray(bundle.get("train", spec.target_key))
            y_te = np.asarray(bundle.get(split, spec.target_key))
            pred = fit_probe(kind, spec, model.tokenizers[modality], feats["train"][kind.probe_on], y_tr,
                             feats[split][kind.probe_on], seed)
            out[t] = kind.compute_metrics(spec, y_te, pred, bundle.meta.get("tasks_scale", {}).get(t))
    return out


def probe_task(model: OmniVec2, modality: str, bundle: ArrayBundle, task: str, split: str = "test",
               batch_size: int = 256, device: str = "auto", seed: int = 0) -> dict[str, float]:
    """The metrics of the linear probe of one (modality, task) (see :func:`probe_modality`)."""
    return probe_modality(model, modality, bundle, split, batch_size, device, seed, [task])[task]


def linear_probe(models: Mapping[str, OmniVec2], bundles: Mapping[str, ArrayBundle], split: str = "test",
                 batch_size: int = 256, device: str = "auto", seed: int = 0) -> dict[str, float]:
    """Linear probes of every task in ``bundles`` on the frozen features of every model.

    Args:
        models: ``{stage: network}``, e.g. the checkpoints of the three training stages.
        bundles: Tokenized data by modality (every task of each is probed).
        split: The split the probes are scored on (fitted on ``train``).
        batch_size: Rows per forward pass.
        device: Where the features are computed.
        seed: Seed of the fitters (and of their subsampling, see the kinds).

    Returns:
        ``{"<modality>.<task>.probe.<stage>.<metric>": value}``. A modality a model has no tokenizer
        for is skipped with a warning naming it and the stage.
    """
    out: dict[str, float] = {}
    for stage, model in models.items():
        start = time.perf_counter()
        for m, b in sorted(bundles.items()):
            if m not in model.tokenizers:
                log.warning("probe: the %s checkpoint has no tokenizer for modality %s; its tasks are not probed",
                            stage, m)
                continue
            for t, metrics in probe_modality(model, m, b, split, batch_size, device, seed).items():
                out.update({f"{m}.{t}.probe.{stage}.{k}": v for k, v in metrics.items()})
        log.info("probe: %s checkpoint probed in %.1f s", stage, time.perf_counter() - start)
    return out

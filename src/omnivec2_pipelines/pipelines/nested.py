"""Run the project's own pipelines inside a node, on an in-memory catalog (used by the sweep and the study)."""

from __future__ import annotations

from typing import Any, Mapping

from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner


class _Kept(MemoryDataset):
    """Outputs stay loadable after the run (the runner would release intermediate ones)."""

    def _release(self) -> None:
        pass


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    out[prefix] = value
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)


def untracked(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with experiment tracking off (``trainer.track: none``, and in every block that sets it):
    the trials of a sweep or a study are no experiments of their own, and would overwrite the run's logs."""
    out = {k: ({**v, "track": "none"} if isinstance(v, Mapping) and "track" in v else v) for k, v in params.items()}
    out["trainer"] = {**(params.get("trainer") or {}), "track": "none"}
    return out


def run_nested(pipe: Pipeline, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``pipe`` with ``params`` as its ``params:...`` entries and ``inputs`` by dataset name.

    Nothing is copied (``copy_mode="assign"``): a stage trains the checkpoint it is given in place,
    so pass a fresh one per run. Experiment tracking is off (:func:`untracked`).

    Args:
        pipe: Any of the project's pipelines (or a sum of them).
        params: The whole parameter tree (``{"trainer": {...}, "multitask": {...}, ...}``).
        inputs: Non-parameter inputs, e.g. ``{"image.tokenized": bundle, "pretrain_paired_checkpoint": ckpt}``.

    Returns:
        Every output of ``pipe`` by dataset name.
    """
    params = untracked(params)
    flat: dict[str, Any] = {"parameters": dict(params)}
    for k, v in params.items():
        _flatten(f"params:{k}", v, flat)
    catalog = DataCatalog({k: MemoryDataset(v, copy_mode="assign") for k, v in flat.items()})
    for name, value in inputs.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign")
    outputs = sorted(pipe.all_outputs())
    for name in outputs:
        catalog[name] = _Kept(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    return {name: catalog.load(name) for name in outputs}

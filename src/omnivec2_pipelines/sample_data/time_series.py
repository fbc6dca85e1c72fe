"""Sample data of the time-series modality: a REAL UCR/UEA data set bundled with sktime, copied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnivec2_pipelines.formats.sktime_data import bundled_ts_dir
from omnivec2_pipelines.formats.ucr_ts import parse_ts
from omnivec2_pipelines.modalities.base import atomic_directory, label_order


def make_sample_data(root: Path, params: dict[str, Any], default: str = "GunPoint") -> dict[str, Any]:
    """Copy a REAL UCR/UEA data set bundled with sktime into ``root`` (atomically).

    Args:
        root: Output folder, receives ``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts``.
        params: ``name`` of the bundled data set (default ``default``).
        default: The data set when ``params`` names none.

    Returns:
        Manifest ``{"source", "name", "files", "series", "classes"}``.
    """
    name = str(params.get("name", default))
    src = bundled_ts_dir(name)
    with atomic_directory(Path(root)) as tmp:
        for split in ("TRAIN", "TEST"):
            fname = f"{name}_{split}.ts"
            (tmp / fname).write_bytes((src / fname).read_bytes())
        parsed = [parse_ts(tmp / f"{name}_{s}.ts") for s in ("TRAIN", "TEST")]
    labels = label_order({lab for ts in parsed for lab in ts.labels})
    return {"source": f"UCR/UEA {name} bundled with sktime (real)", "name": name,
            "files": 2, "series": sum(len(ts.series) for ts in parsed), "classes": labels}

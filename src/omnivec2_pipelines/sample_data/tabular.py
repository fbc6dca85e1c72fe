"""Sample data of the tabular modality: scikit-learn's REAL diabetes data as one CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.modalities.base import atomic_directory, stratified_test_split

_DIABETES_COLUMNS = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write scikit-learn's REAL diabetes data (``load_diabetes(scaled=False)``) as one CSV.

    ``root/diabetes.csv`` has the ten baseline variables (age, sex, bmi, bp, s1..s6), the
    target ``progression`` (disease progression one year after baseline) and a ``split``
    column (a deterministic random ``test_fraction`` of the 442 rows is ``test``). ``sex``
    (coded 1/2 in the source, the coding is not documented) is written as the categorical
    strings ``sex_1``/``sex_2``.

    Args:
        root: Output folder (replaced atomically).
        params: ``test_fraction`` (0.2), ``seed`` (0).

    Returns:
        Manifest ``{"source", "files", "rows", "classes", "target"}``.
    """
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    frame = pd.DataFrame(data.data, columns=list(_DIABETES_COLUMNS))
    frame["sex"] = frame["sex"].map(lambda v: f"sex_{int(round(v))}")
    for col in ("age", "s1", "s2"):
        if np.allclose(frame[col], frame[col].round()):
            frame[col] = frame[col].round().astype("int64")
    frame["progression"] = data.target.astype("int64")
    test = stratified_test_split(np.zeros(len(frame), dtype=np.int64),
                                 params.get("test_fraction", 0.2), params.get("seed", 0),
                                 "tabular.sample_data.test_fraction")
    frame["split"] = np.where(test, "test", "train")
    with atomic_directory(Path(root)) as tmp:
        frame.to_csv(tmp / "diabetes.csv", index=False, encoding="utf-8", lineterminator="\n")
    return {"source": "sklearn.datasets.load_diabetes(scaled=False) (real)", "files": 1,
            "rows": {"train": int((~test).sum()), "test": int(test.sum())}, "classes": [],
            "target": "progression (regression)"}

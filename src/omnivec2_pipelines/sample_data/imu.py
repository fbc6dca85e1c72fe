"""Sample data of the IMU modality: the REAL BasicMotions data set bundled with sktime, copied.

BasicMotions: smart-watch 3D accelerometer + 3D gyroscope, 10 s at 10 Hz, activities
Standing/Running/Walking/Badminton.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omnivec2_pipelines.sample_data import time_series


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Copy BasicMotions (or the bundled multivariate data set ``params["name"]``) into ``root``.

    Returns:
        Manifest ``{"source", "name", "files", "series", "classes"}``.
    """
    return time_series.make_sample_data(root, params, default="BasicMotions")

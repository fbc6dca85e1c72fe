"""The study node: variants of the recipe x seeds through the real stage and evaluation pipelines.

The study's code, and torch with it, is imported when the node runs.
"""

from __future__ import annotations

from typing import Any

from omnivec2_pipelines.modalities.base import ArrayBundle
from omnivec2_pipelines.pipelines import evaluation, training


def study_node(study: dict[str, Any], parameters: dict[str, Any],
               **bundles: ArrayBundle) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The study: every declared variant of the recipe x every seed, through the real stage and
    evaluation pipelines, compared per task beside the classical baseline.

    Returns ``study.json``'s document, the Markdown table ``study.md`` and one figure per task.
    """
    from omnivec2_pipelines.study import run_study

    modalities = sorted(bundles)
    pipelines = {**training.create_pipelines(modalities), **evaluation.create_pipelines(modalities)}
    return run_study(study, parameters, bundles, pipelines)

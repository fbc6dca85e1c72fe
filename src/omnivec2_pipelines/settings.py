"""Project settings (Kedro)."""

from typing import Any

from kedro.config import OmegaConfigLoader

from omnivec2_pipelines.hooks import PipelineConfigHook, ValidateParametersHook
from omnivec2_pipelines.params_schema import normalize_sizes


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader``, with sizes written ``"32x32"`` in the parameters read as ``[32, 32]``.

    ``kedro run --params`` splits its value on commas, so a list cannot be written there; the sizes
    that :mod:`omnivec2_pipelines.params_schema` declares (``SIZE``) may be written ``HxW`` instead.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        conf = super().__getitem__(key)
        return normalize_sizes(conf) if key == "parameters" else conf


# The pipelines follow the run's --env / --conf-source; every parameter is checked before the first node runs.
HOOKS = (PipelineConfigHook(), ValidateParametersHook())

CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local (or --env) may override single nested keys, e.g. only pretrain_unimodal.steps
    "merge_strategy": {"parameters": "soft"},
}

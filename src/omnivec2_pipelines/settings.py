"""Project settings (Kedro)."""

from kedro.config import OmegaConfigLoader  # noqa: F401

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}

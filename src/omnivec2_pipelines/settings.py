"""Project settings (Kedro)."""

from omnivec2_pipelines.hooks import ValidateParametersHook

# Every parameter a run uses is checked before its first node runs.
HOOKS = (ValidateParametersHook(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local (or --env) may override single nested keys, e.g. only pretrain_unimodal.steps
    "merge_strategy": {"parameters": "soft"},
}

"""Project settings (Kedro)."""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local (or --env) may override single nested keys, e.g. only pretrain_unimodal.steps
    "merge_strategy": {"parameters": "soft"},
}

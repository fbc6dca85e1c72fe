"""The project's real parameters, shrunk, and tiny raw data for every modality (shared by tests)."""

from __future__ import annotations

from pathlib import Path

from kedro.config import OmegaConfigLoader

PROJECT = Path(__file__).resolve().parents[1]
#: Every modality of the default configuration (all thirteen).
MODALITIES = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")["parameters"][
    "modalities"]

#: Smaller embedded data sets, so the whole chain runs in seconds.
TINY_SAMPLE = {"image": {"per_class": 20}, "audio": {"clips_per_class_per_fold": 2},
               "video": {"clips_per_class": 6}, "text": {"n_train": 90, "n_test": 45}, "xray": {"per_class": 12},
               "point_cloud": {"shapes_per_class": 10, "meshes_per_class": 3}}
TINY_SOURCE = {"hyperspectral": {"max_per_class": 25}}

TINY = {
    "model": {"width": 32, "depth_f": 1, "heads_f": 2, "reduced_width": 32, "depth_g": 1, "heads_g": 2},
    "trainer": {"device": "cpu", "progress": False, "warmup_steps": 1, "log_every": 2, "resume_dir": "",
                "track": "none"},
    "pretrain_unimodal": {"steps": 3, "batch_size": 8},
    "pretrain_paired": {"steps": 2, "batch_size": 8},
    "multitask": {"steps": 4, "batch_size": 8},
}


def project_params() -> dict:
    """Parameters exactly as the project's conf/base defines them."""
    return OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")["parameters"]


def tiny_params(raw_root: Path) -> dict:
    """The project's parameters with tiny training sizes and all data under ``raw_root``."""
    params = project_params()
    for key, over in TINY.items():
        params[key].update(over)
    for m in MODALITIES:
        params[m]["sample_data"]["path"] = str(raw_root / m)
        params[m]["source"]["path"] = str(raw_root / m)
    for m, over in TINY_SAMPLE.items():
        params[m]["sample_data"].update(over)
    for m, over in TINY_SOURCE.items():
        params[m]["source"].update(over)
    return params


def make_raw(root: Path) -> Path:
    """Embedded sample data of every modality, with the tiny sizes, under ``root``."""
    from omnivec2_pipelines.modalities import get_modality

    params = tiny_params(root)
    for m in MODALITIES:
        get_modality(m).make_sample_data(root / m, params[m]["sample_data"])
    return root


def make_bundles(root: Path) -> dict:
    """Read and tokenize every modality's tiny data with the project's parameters."""
    from omnivec2_pipelines.modalities import get_modality

    params = tiny_params(root)
    return {m: get_modality(m).tokenize(get_modality(m).read(params[m]["source"]), params[m]["tokenization"])
            for m in MODALITIES}


def tiny_tables_and_bundles(root: Path, modalities: tuple[str, ...] | list[str],
                            params: dict | None = None) -> tuple[dict, dict]:
    """The tiny embedded data of ``modalities`` written under ``root``, read and tokenized with the project's
    parameters: ``({modality: canonical table}, {modality: ArrayBundle})``."""
    from omnivec2_pipelines.modalities.base import get_modality

    params = tiny_params(root) if params is None else params
    tables, bundles = {}, {}
    for m in modalities:
        mod = get_modality(m)
        mod.make_sample_data(root / m, params[m]["sample_data"])
        tables[m] = mod.read(params[m]["source"])
        bundles[m] = mod.tokenize(tables[m], params[m]["tokenization"])
    return tables, bundles


"""The ``paper`` configuration environment: valid for every pipeline, BERT-base width, GPU-sized sequences."""

from __future__ import annotations

from kedro.config import OmegaConfigLoader

from omnivec2_pipelines.hooks import validate_run_parameters
from omnivec2_pipelines.models import ModelConfig, OmniVec2
from omnivec2_pipelines.pipeline_registry import build_pipelines
from tests.tiny import PROJECT


def paper_params() -> dict:
    loader = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="paper",
                               merge_strategy={"parameters": "soft"})
    return loader["parameters"]


def test_the_paper_env_passes_the_up_front_checks_of_every_pipeline(raw_root) -> None:
    params = paper_params()
    for m in params["modalities"]:  # the sources must exist: the embedded data stands in for real data sets
        params[m]["source"]["path"] = str(raw_root / m)
    for pipeline in build_pipelines(params["modalities"], params).values():
        validate_run_parameters(params, pipeline)
    base = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")["parameters"]
    assert params["image"]["augment"] == base["image"]["augment"]  # only the named keys change (soft merge)
    assert params["trainer"]["compile"] is True and params["multitask"]["batch_size"] >= 256


def test_the_paper_model_is_bert_base_wide_with_gpu_sized_sequences() -> None:
    params = paper_params()
    image = params["image"]["tokenization"]
    tokenizer = {"kind": "patch2d", "in_channels": 3, "input_size": image["size"], "patch_size": image["patch_size"]}
    model = OmniVec2(ModelConfig(**params["model"], tokenizers={"image": tokenizer}, heads={}))
    f_params = sum(p.numel() for p in model.f.parameters())
    assert model.cfg.width == 768 and len(model.f.blocks) == 12
    assert 84e6 < f_params < 86e6  # BERT-base's encoder stack (85M parameters without embeddings)
    assert model.tokenizers["image"].max_tokens == 196  # ViT-B/16 at 224 px
    assert params["model"]["width"] % params["model"]["heads_f"] == 0
    assert params["model"]["reduced_width"] // params["model"]["heads_g"] == 64  # flash-friendly head size in g

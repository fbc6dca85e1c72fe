"""Export for serving: torch.export and ONNX programs of one (modality, task) match the eager model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from omnivec2_pipelines.models import head_key
from omnivec2_pipelines.inference.export import SingleStream, export_task, single_task_model
from tests.inference.tiny_checkpoint import tiny_data, train_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from omnivec2_pipelines.training.checkpoint import Checkpoint

    root = tmp_path_factory.mktemp("export")
    _, bundles = tiny_data(root / "raw")
    return bundles, Checkpoint.load(train_checkpoint(bundles, root / "ckpt", steps=2))


@pytest.mark.parametrize(("modality", "task"), [("image", "classification"), ("infrared", "regression")])
def test_torch_export_and_onnx_match_the_eager_model(trained, tmp_path, modality, task) -> None:
    import onnxruntime as ort

    bundles, ckpt = trained
    spec = bundles[modality].tasks[task]
    x = bundles[modality].get("test", spec.input_key)
    report = export_task(ckpt.model, ckpt.meta["data"][modality], modality, task, x[:6], tmp_path)
    for fmt in ("torch_export", "onnx"):
        entry = report["formats"][fmt]
        assert entry["ok"], entry
        assert entry["error"] is None and 0.0 <= entry["max_abs_diff"] <= 1e-4
    with torch.inference_mode():
        eager = ckpt.model.eval()(modality, torch.from_numpy(np.ascontiguousarray(x[6:11])), task).numpy()
    # other rows and another batch size than the traced one (the batch axis is dynamic)
    program = torch.export.load(str(tmp_path / f"{modality}.{task}.pt2")).module()
    with torch.inference_mode():
        served = program(torch.from_numpy(np.ascontiguousarray(x[6:11]))).numpy()
    np.testing.assert_allclose(served, eager, atol=1e-5)
    session = ort.InferenceSession(str(tmp_path / f"{modality}.{task}.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["out"], {"x": np.ascontiguousarray(x[6:11])})[0], eager, atol=1e-4)
    doc = json.loads((tmp_path / f"{modality}.{task}.json").read_text())
    assert doc["meta"]["tokenizer"] == bundles[modality].meta["tokenizer"]
    assert doc["contract"]["input"]["shape"] == ["batch", *x.shape[1:]]
    assert doc["contract"]["input"]["dtype"] == "float32"
    assert doc["contract"]["output"]["kind"] == spec.kind


def test_the_single_stream_module_holds_one_tokenizer_and_head(trained) -> None:
    _, ckpt = trained
    small = single_task_model(ckpt.model, "image", "classification")
    assert list(small.tokenizers) == ["image"] and list(small.heads) == [head_key("image", "classification")]
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in ckpt.model.parameters())
    with pytest.raises(KeyError, match="no head for image.regression"):
        SingleStream(ckpt.model, "image", "regression")


def test_a_failing_format_is_reported_with_its_reason(trained, tmp_path, monkeypatch) -> None:
    from omnivec2_pipelines.inference import export

    def broken(module, x, path):
        raise RuntimeError("cannot trace the farthest point sampling loop")

    monkeypatch.setitem(export._EXPORTERS, "onnx", (".onnx", broken))
    bundles, ckpt = trained
    report = export_task(ckpt.model, ckpt.meta["data"]["image"], "image", "classification",
                         bundles["image"].get("test", "x")[:4], tmp_path)
    assert report["formats"]["torch_export"]["ok"]
    onnx = report["formats"]["onnx"]
    assert not onnx["ok"] and "farthest point sampling" in onnx["error"]
    assert not (tmp_path / "image.classification.onnx").exists()


@pytest.mark.parametrize(("modality", "task"), [("text", "classification"), ("tabular", "regression")])
def test_tokenizers_with_value_checks_export_too(tmp_path, modality, task) -> None:
    """The token-id / category-code range checks are data-dependent; torch.export does not trace them."""
    from omnivec2_pipelines.modalities import get_modality
    from omnivec2_pipelines.training.stages import build_model
    from tests.tiny import TINY, tiny_params

    params = tiny_params(tmp_path)[modality]
    mod = get_modality(modality)
    mod.make_sample_data(tmp_path / modality, params["sample_data"])
    bundle = mod.tokenize(mod.read(params["source"]), params["tokenization"])
    spec = bundle.tasks[task]
    torch.manual_seed(0)
    model = build_model(TINY["model"], {modality: bundle})
    from omnivec2_pipelines.models import HeadConfig

    model.add_head(HeadConfig(modality, task, spec.kind, spec.out_dim))
    report = export_task(model, bundle.meta, modality, task, bundle.get("test", spec.input_key)[:6], tmp_path / "out")
    assert all(entry["ok"] for entry in report["formats"].values()), report["formats"]
    with pytest.raises(ValueError, match="must be in|codes outside|integer codes"):  # eager still checks
        bad = np.asarray(bundle.get("test", spec.input_key)[:2]).copy()
        bad[:, -1] = 10 ** 6
        model(modality, torch.from_numpy(bad), task)


def test_task_towers_go_into_the_exported_program() -> None:
    """With ``model.head_depth`` the pruned single-task network keeps that task's tower (and no other), and the
    exported program computes what the eager model does."""
    from tests.models.test_model import make_model, x_of

    model = make_model(head_depth=1).eval()
    x = x_of("img")
    module = SingleStream(model, "img", "cls")
    assert sorted(module.model.towers) == ["img__cls"]
    program = torch.export.export(module, (x,))
    assert torch.allclose(program.module()(x), model("img", x, "cls"), rtol=0, atol=1e-6)
    plain = make_model().eval()  # the same weights without the towers: the tower changes the outputs
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("towers.")})
    assert not torch.allclose(program.module()(x), plain("img", x, "cls"), rtol=0, atol=1e-6)


def test_flat_head_goes_into_the_exported_program() -> None:
    """With ``model.flat_head`` the exported program (torch.export) keeps the place-wise readout and computes
    what the eager model does."""
    from tests.models.test_model import make_model, x_of

    model = make_model(flat_head=True).eval()
    torch.nn.init.normal_(model.heads["img__cls"].flat.weight, std=0.1)  # a trained, non-zero readout
    x = x_of("img")
    program = torch.export.export(SingleStream(model, "img", "cls"), (x,))
    assert torch.allclose(program.module()(x), model("img", x, "cls"), rtol=0, atol=1e-5)
    plain = make_model().eval()  # the same weights without the flat term: the term changes the outputs
    keep = plain.state_dict().keys()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in keep})
    assert not torch.allclose(program.module()(x), plain("img", x, "cls"), rtol=0, atol=1e-3)


def test_wide_head_goes_into_the_exported_program() -> None:
    """With ``model.wide_head`` the exported program keeps the linear map of the input (a series' values; a
    table's numbers and one-hot categories) and computes what the eager model does, for any batch size."""
    from omnivec2_pipelines.models import ModelConfig, OmniVec2

    torch.manual_seed(0)
    cfg = ModelConfig(width=32, depth_f=1, heads_f=4, reduced_width=16, depth_g=1, heads_g=2, mlp_ratio=2.0,
                      wide_head=["regression"],
                      tokenizers={"ts": {"kind": "time_patch", "in_channels": 2, "length": 30, "patch_size": [8]},
                                  "tab": {"kind": "tabular_columns", "n_numeric": 2, "cardinalities": [3, 4]}},
                      heads={"ts__fc": {"modality": "ts", "task": "fc", "kind": "regression", "out_dim": 6},
                             "tab__reg": {"modality": "tab", "task": "reg", "kind": "regression", "out_dim": 1}})
    model = OmniVec2(cfg).eval()
    codes = torch.stack([torch.arange(5) % 3, torch.arange(5) % 4], 1).float()
    for modality, task, x in (("ts", "fc", torch.randn(5, 2, 22)),
                              ("tab", "reg", torch.cat([torch.randn(5, 2), codes], 1))):
        wide = model.heads[f"{modality}__{task}"].wide
        torch.nn.init.normal_(wide.weight)  # a trained, non-zero wide term
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.export.export(SingleStream(model, modality, task), (x[:4],),
                                      dynamic_shapes=({0: batch},))
        eager = model(modality, x, task)
        assert torch.allclose(program.module()(x), eager, rtol=0, atol=1e-5)
        with torch.no_grad():
            wide.weight.zero_()
        assert not torch.allclose(program.module()(x), model(modality, x, task), rtol=0, atol=1e-3)

"""The study pipeline: variants x seeds through the real stages, caching, resuming, scores and checks."""

from __future__ import annotations

import json

import pytest

from omnivec2_pipelines import study as st
from omnivec2_pipelines.pipeline_registry import build_pipelines
from omnivec2_pipelines.training import trainer as trainer_module
from tests.conftest import TINY_MODEL
from tests.tiny import project_params

TASKS = ["grid.classification", "series.classification", "series.forecasting"]


def _params(tmp_path, seeds=(0, 1)) -> dict:
    params = project_params()
    params["modalities"] = ["grid", "series"]
    for m in params["modalities"]:  # the test's modalities' blocks: what the stages read of them
        params[m] = {"mask_ratio": 0.75, "augment": None}
    params["model"].update(TINY_MODEL)
    params["trainer"].update({"device": "cpu", "progress": False, "warmup_steps": 1, "log_every": 100})
    for stage, steps in (("pretrain_unimodal", 4), ("pretrain_paired", 3), ("multitask", 12)):
        params[stage].update({"steps": steps, "batch_size": 8})
    params["study"].update({"seeds": list(seeds), "budget": 1.0, "cache_dir": str(tmp_path / "cache")})
    return params


def _run(params, bundles):
    return st.run_study(params["study"], params, bundles, build_pipelines(sorted(bundles)))


def test_normalised_score_and_direction_on_hand_made_numbers() -> None:
    assert st.normalised_score(0.9, 0.8, "max") == pytest.approx(0.125)
    assert st.normalised_score(0.7, 0.8, "max") == pytest.approx(-0.125)
    assert st.normalised_score(3.0, 4.0, "min") == pytest.approx(0.25)  # lower MSE than the baseline: positive
    assert st.normalised_score(5.0, 4.0, "min") == pytest.approx(-0.25)
    assert st.normalised_score(0.5, 0.0, "max") == pytest.approx(0.5)  # zero baseline: plain difference
    assert st.normalised_score(40.0, 4.0, "min") == -1.0 and st.normalised_score(9.0, 1.0, "max") == 1.0  # clipped
    assert st.better(0.9, 0.8, "max") and not st.better(0.9, 0.8, "min") and not st.better(1.0, 1.0, "max")
    with pytest.raises(ValueError, match="direction"):
        st.normalised_score(1.0, 1.0, "up")
    assert st.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5)) and st.mean_std([4.0]) == (4.0, 0.0)


def test_summary_counts_wins_direction_aware() -> None:
    spec = st.StudySpec.from_params({"variants": {"a": {"stages": ["multitask"]}, "b": {"stages": ["multitask"]}},
                                     "pairs": [["a", "b"]]})
    runs = [{"variant": "a", "seed": 0, "metrics": {"x.c": {"accuracy": 0.9}, "y.r": {"mse": 2.0}},
             "stages": [], "seconds": 1, "cached": False},
            {"variant": "a", "seed": 1, "metrics": {"x.c": {"accuracy": 0.7}, "y.r": {"mse": 4.0}},
             "stages": [], "seconds": 1, "cached": False},
            {"variant": "b", "seed": 0, "metrics": {"x.c": {"accuracy": 0.6}, "y.r": {"mse": 1.0}},
             "stages": [], "seconds": 1, "cached": False}]
    doc = st.summarise(spec, runs, {"x.c": {"accuracy": 0.5}, "y.r": {"mse": 2.0}},
                       {"x.c": "classification", "y.r": "regression"})
    assert doc["variants"]["a"]["x.c"]["accuracy"]["mean"] == pytest.approx(0.8)
    assert doc["variants"]["a"]["x.c"]["accuracy"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert doc["normalised_score"]["a"] == {"x.c": pytest.approx(0.6), "y.r": pytest.approx(-0.5)}
    assert doc["normalised_score"]["b"] == {"x.c": pytest.approx(0.2), "y.r": pytest.approx(0.5)}
    (pair,) = doc["pairs"]
    assert (pair["a_better"], pair["tasks"], pair["a_better_on"]) == (1, 2, ["x.c"])  # b's lower mse wins y.r
    assert doc["beats_baseline"] == {"a": 1, "b": 2}
    md = st.markdown(doc, 60.0)
    assert "| x.c | accuracy ↑ | 0.5 | **0.8 ± 0.1414** | 0.6 |" in md
    assert "| y.r | mse ↓ | 2 | 3 ± 1.414 | **1** |" in md and "| `a` vs `b` | 1 of 2 |" in md


def test_null_variant_drops_a_lower_layers_variant() -> None:
    spec = st.StudySpec.from_params({"variants": {"full": {"stages": ["multitask"]}, "scratch": {"stages": ["multitask"]},
                                                  "single_task": None}})
    assert list(spec.variants) == ["full", "scratch"]
    assert spec.pairs == (("full", "scratch"),)  # the default pairs naming a dropped variant are left out
    spec = st.StudySpec.from_params({"variants": {"full": {"stages": ["multitask"]}, "scratch": {"stages": ["multitask"]},
                                                  "unimodal": None},
                                     "pairs": [["full", "scratch"], ["full", "unimodal"]]})
    assert spec.pairs == (("full", "scratch"),)  # so are declared pairs naming it


@pytest.mark.parametrize("study, match", [
    ({"variants": {}}, "study.variants must be a non-empty mapping"),
    ({"variants": {"v": {"stages": ["multitask"]}}, "budget": 0}, "study.budget must be a number > 0"),
    ({"variants": {"v": {"stages": ["multitask"]}}, "budget": -1.5}, "study.budget"),
    ({"variants": {"v": {"stage": ["multitask"]}}}, r"'study.variants.v.stage'; did you mean 'study.variants.v.stages'"),
    ({"variants": {"v": {"stages": ["multitask"]}}, "seed": [0]}, r"'study.seed'; did you mean 'study.seeds'"),
    ({"variants": {"v": {"stages": ["multitask", "pretrain_unimodal"]}}}, "method's order"),
    ({"variants": {"v": {"stages": ["pretrain_unimodal"]}}}, "end with 'multitask'"),
    ({"variants": {"v": {"stages": ["multitask"], "params": {"multitsk": {"lr": 1}}}}},
     r"did you mean 'study.variants.v.params.multitask'"),
    ({"variants": {"v": {"stages": ["multitask"], "params": {"multitask": {"stpes": 3}}}}},
     r"study.variants.v: unknown parameter.*stpes"),
    ({"variants": {"v": {"stages": ["multitask"]}}, "seeds": []}, "study.seeds must be a non-empty list"),
    ({"variants": {"v": {"stages": ["multitask"]}}, "pairs": [["v", "w"]]}, "study.pairs"),
    ({"variants": {"v": None}}, "every variant is null"),
])
def test_bad_study_parameters_fail_before_training(tmp_path, bundles, study, match) -> None:
    params = _params(tmp_path)
    params["study"] = study
    ran: list = []
    trainer_module.STEP_CALLBACKS.append(lambda *a: ran.append(a))
    try:
        with pytest.raises(ValueError, match=match):
            _run(params, bundles)
    finally:
        trainer_module.STEP_CALLBACKS.pop()
    assert not ran and not (tmp_path / "cache").exists()


def test_study_runs_every_variant_shares_prefixes_and_resumes(tmp_path, bundles) -> None:
    params = _params(tmp_path)
    doc, md, figs = _run(params, bundles)
    trained = [(t["run"], t["stage"]) for t in doc["trained_stages"]]
    for seed in (0, 1):
        # stage 1 once for unimodal and full, stage 2 once, multitask per variant, one model per task
        assert [r for r, s in trained if s == "pretrain_unimodal" and f"seed{seed}" in r] == [f"unimodal/seed{seed}"]
        assert [r for r, s in trained if s == "pretrain_paired" and f"seed{seed}" in r] == [f"full/seed{seed}"]
    assert len(trained) == 2 * (1 + 1 + 3 + len(TASKS))
    assert sorted(doc["variants"]) == ["full", "scratch", "single_task", "unimodal"]
    for v in doc["variants"].values():
        assert sorted(v) == TASKS
        assert v["grid.classification"]["accuracy"]["n"] == 2
    assert sorted(doc["baseline"]) == TASKS and doc["main_metric"]["series.forecasting"]["direction"] == "min"
    single = [r for r in doc["runs"] if r["variant"] == "single_task"][0]
    # single-task models see their share of multitask's samples: 12 steps * 2 / (2 modalities * T_m)
    steps = {s["task"]: s for s in single["stages"]}
    assert set(steps) == set(TASKS)
    assert "| grid.classification | accuracy ↑ |" in md and "`full` vs `scratch`" in md
    assert sorted(figs) == sorted(f"{t}.png" for t in TASKS)
    assert len(doc["pairs"]) == 3 and all(p["tasks"] == 3 for p in doc["pairs"])

    again, _, _ = _run(params, bundles)  # everything finished: nothing is trained again
    assert again["trained_stages"] == [] and all(r["cached"] for r in again["runs"])
    assert again["variants"] == doc["variants"]


def test_killed_study_continues_with_unfinished_runs(tmp_path, bundles) -> None:
    params = _params(tmp_path, seeds=(0,))
    calls = {"multitask": 0}

    def crash(stage: str, step: int, loss: float) -> None:
        if stage == "multitask" and step == 0:
            calls["multitask"] += 1
            if calls["multitask"] == 3:  # the third multitask stage (full/seed0) dies at its first step
                raise KeyboardInterrupt("killed")

    trainer_module.STEP_CALLBACKS.append(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(params, bundles)
    finally:
        trainer_module.STEP_CALLBACKS.remove(crash)
    finished = sorted(p.parent.name for p in (tmp_path / "cache" / "runs").rglob("seed0.json"))
    assert finished == ["scratch", "unimodal"]
    doc, _, _ = _run(params, bundles)
    cached = {r["variant"]: r["cached"] for r in doc["runs"]}
    assert cached == {"scratch": True, "unimodal": True, "full": False, "single_task": False}
    # full reuses unimodal's stage 1 and its own stage 2 (finished before the crash): only multitask trains
    trained = [(t["run"], t["stage"]) for t in doc["trained_stages"]]
    assert trained[0] == ("full/seed0", "multitask") and all(s == "multitask" for _, s in trained)
    assert json.loads((tmp_path / "cache/runs/full/seed0.json").read_text())["metrics"].keys() == set(TASKS)


@pytest.mark.slow
def test_study_stage_through_dvc_and_kedro(tmp_path) -> None:
    """`dvc repro studies/dvc.yaml` in a tiny copy: the tokenized data, then the study through the Kedro CLI."""
    import yaml

    from tests.project_copy import copy_project, run_cmd, shrink_base_params

    root = copy_project(tmp_path / "project")
    shrink_base_params(root)
    for name, block in (("parameters.yml", {"modalities": ["image", "time_series"]}),
                        ("parameters_study.yml", {"study": {"seeds": [0, 1], "budget": 1.0}})):
        path = root / "conf" / "base" / name
        doc = yaml.safe_load(path.read_text())
        for k, v in block.items():
            doc[k] = {**doc[k], **v} if isinstance(v, dict) else v
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_cmd(["git", "init", "-q"], root)
    if not (root / ".dvc").is_dir():
        run_cmd(["dvc", "init", "-q"], root)
    out = run_cmd(["dvc", "repro", "studies/dvc.yaml"], root).stdout
    assert "Running stage 'studies/dvc.yaml:study'" in out and "Running stage 'multitask'" not in out
    doc = json.loads((root / "data/08_reporting/study.json").read_text())
    assert sorted(doc["variants"]) == ["full", "scratch", "single_task", "unimodal"]
    tasks = ["image.classification", "time_series.classification", "time_series.forecasting"]
    assert sorted(doc["main_metric"]) == tasks and len(doc["runs"]) == 8
    assert doc["variants"]["full"]["image.classification"]["accuracy"]["n"] == 2
    md = (root / "data/08_reporting/study.md").read_text()
    assert "| time_series.forecasting | mse ↓ |" in md
    assert sorted(p.name for p in (root / "data/08_reporting/figures/study").iterdir()) == [f"{t}.png" for t in tasks]
    metrics = run_cmd(["dvc", "metrics", "show", "--json"], root).stdout
    assert "mean_normalised_score" in metrics
    assert "Data and pipelines are up to date" in run_cmd(["dvc", "repro", "studies/dvc.yaml"], root).stdout


def test_stage_keys_are_over_resolved_settings(tmp_path, bundles) -> None:
    """A model or trainer key written out at its default value (a new option reaching conf/base) keeps the
    cached stages; a real change does not."""
    params = _params(tmp_path, seeds=(0,))
    study = st.StudyRunner(st.StudySpec.from_params(params["study"]), params, bundles,
                     build_pipelines(sorted(bundles)))
    stages = ("pretrain_unimodal", "multitask")
    keys = study._chain_keys(stages, params)
    explicit = {**params, "model": {**params["model"], "qk_norm": False, "pool": "mean"},
                "trainer": {**params["trainer"], "ema_decay": 0.0}}
    assert study._chain_keys(stages, explicit) == keys
    changed = {**params, "model": {**params["model"], "qk_norm": True}}
    assert study._chain_keys(stages, changed)[0] != keys[0]
    longer = {**params, "trainer": {**params["trainer"], "min_lr_ratio": 0.5}}
    assert study._chain_keys(stages, longer)[0] != keys[0]


def test_single_task_gets_its_share_of_samples_under_pairs_per_step(tmp_path) -> None:
    """With 2P = 4 modalities every modality takes part in every step, with batch / 4 samples."""
    from tests.conftest import grid_bundle, series_bundle

    four = {"g1": grid_bundle("g1"), "g2": grid_bundle("g2", seed=2), "s1": series_bundle("s1"),
            "s2": series_bundle("s2", seed=3)}
    params = _params(tmp_path)
    runner = st.StudyRunner(st.StudySpec.from_params(params["study"]), params, four, {})
    params["multitask"].update({"steps": 100, "batch_size": 16})
    one = {j: q["multitask"] for j, q in runner._single_task_params(params)}
    params["multitask"]["pairs_per_step"] = 2
    two = {j: q["multitask"] for j, q in runner._single_task_params(params)}
    assert two["g1.classification"]["steps"] == 100 and two["g1.classification"]["batch_size"] == 4
    assert two["s1.forecasting"]["steps"] == 50  # its modality every step, one of its two tasks
    assert one["g1.classification"]["batch_size"] == 8 and one["g1.classification"]["steps"] < 100
    assert {q["pairs_per_step"] for q in two.values()} == {1}  # one stream per step in each single-task run

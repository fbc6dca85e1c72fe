"""The registered pipelines follow the run's own configuration (``kedro run --env``), for real, through the CLI."""

from __future__ import annotations

from tests.project_copy import copy_project, run_cmd


def test_kedro_run_env_sets_the_modalities_of_the_pipelines(tmp_path, monkeypatch) -> None:
    """``--env small`` with ``modalities: [time_series, tabular]`` builds (and runs) those two modalities only."""
    monkeypatch.delenv("KEDRO_ENV", raising=False)  # the list must come from --env, not from the environment
    root = copy_project(tmp_path / "project")
    (root / "conf" / "small").mkdir()
    (root / "conf" / "small" / "parameters.yml").write_text("modalities: [time_series, tabular]\n")

    proc = run_cmd(["kedro", "run", "--env", "small", "--pipelines", "sample_data"], root)
    out = proc.stdout + proc.stderr
    assert sorted(p.name for p in (root / "data" / "01_raw" / "manifests").iterdir()) == [
        "tabular.json", "time_series.json"]
    assert (root / "data" / "01_raw" / "time_series" / "GunPoint_TRAIN.ts").is_file()
    assert not (root / "data" / "01_raw" / "image").exists()
    assert "tabular.make_sample_data" in out and "image.make_sample_data" not in out

    # without --env the default list (conf/base, no conf/local override) is registered
    listed = run_cmd(["kedro", "registry", "describe", "sample_data"], root).stdout
    assert "image.make_sample_data" in listed and "tabular.make_sample_data" in listed

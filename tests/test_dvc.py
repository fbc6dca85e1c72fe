"""DVC on the project: `git clone` + `dvc repro` works as committed (no `dvc init`), a second repro is a no-op, a
multitask change re-runs only its tail; the outputs of `make run`'s commands are adopted with `dvc commit -f`; each
modality's stages depend on the code that modality imports, so editing one modality's module re-runs only its stages."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.project_copy import PROJECT, copy_project, run_cmd, shrink_base_params

MODALITIES = ["image", "audio", "time_series"]
PER_MODALITY = ("sample_data", "ingestion", "tokenization")
TRAINING = ["pretrain_unimodal", "pretrain_paired", "multitask", "evaluation"]
SRC = PROJECT / "src"


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_@]+)'", output)


def _tiny_repo(root: Path) -> Path:
    """A project copy with tiny parameters and three modalities, committed to a new git repository (no dvc init)."""
    copy_project(root)
    shrink_base_params(root)
    # a subset of modalities: the per-modality stages expand for exactly the enabled ones
    params_file = root / "conf/base/parameters.yml"
    params = yaml.safe_load(params_file.read_text())
    params["modalities"] = MODALITIES
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    run_cmd(["git", "init", "-q"], root)
    run_cmd(["git", "add", "-A"], root)
    run_cmd(["git", "commit", "-q", "-m", "tiny project"], root)
    return root


def _output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def _make_run_commands() -> list[list[str]]:
    """The recipe of `make run`, as commands run with the test environment's kedro."""
    lines = (PROJECT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"run:", line)) + 1
    commands = []
    for line in lines[start:]:
        if not line.startswith("\t"):
            break
        commands.append(shlex.split(line.strip().replace("$(BIN)/", "")))
    assert commands and all(c[0] == "kedro" for c in commands), commands
    return commands


@pytest.mark.slow
def test_fresh_clone_repro_twice_then_param_change(tmp_path) -> None:
    upstream = _tiny_repo(tmp_path / "upstream")
    root = tmp_path / "clone"
    run_cmd(["git", "clone", "-q", str(upstream), str(root)], tmp_path)
    assert (root / ".dvc" / "config").is_file() and not (root / "dvc.lock").exists()

    # every parameter the stages track, against the last commit (plain `dvc params diff` shows only changes)
    all_params = run_cmd(["dvc", "params", "diff", "--all"], root).stdout
    for key in ("multitask.steps", "image.tokenization.size", "audio.sample_data", "image.source.val_fraction"):
        assert key in all_params, all_params
    assert run_cmd(["dvc", "params", "diff"], root).stdout.strip() == ""

    first = run_cmd(["dvc", "repro"], root)
    expected = {f"{stage}@{m}" for stage in PER_MODALITY for m in MODALITIES}
    ran = _ran(first.stdout)
    assert set(ran[:-4]) == expected and len(ran) == len(expected) + 4
    assert ran[-4:] == TRAINING
    assert "KedroDeprecationWarning" not in _output(first)  # every stage runs `kedro run --pipelines ...`
    assert "time_series.forecasting.mse" in json.loads((root / "data/08_reporting/metrics.json").read_text())
    # the lock file appears with the first run and belongs in git
    assert "?? dvc.lock" in run_cmd(["git", "status", "--porcelain"], root).stdout

    second = run_cmd(["dvc", "repro"], root).stdout
    assert _ran(second) == [] and "Data and pipelines are up to date" in second

    params_file = root / "conf/base/parameters_multitask.yml"
    params = yaml.safe_load(params_file.read_text())
    assert params["multitask"]["steps"] == 4
    params["multitask"]["steps"] = 5
    params_file.write_text(yaml.safe_dump(params))
    changed = run_cmd(["dvc", "params", "diff"], root).stdout
    assert re.search(r"multitask\.steps\s+4\s+5", changed) and "tokenization" not in changed, changed
    third = run_cmd(["dvc", "repro"], root).stdout
    assert _ran(third) == ["multitask", "evaluation"]

    metrics = run_cmd(["dvc", "metrics", "show", "--json"], root).stdout
    assert "image.classification.accuracy" in metrics

    # experiments: commit the baseline, then change a Kedro parameter with -S; only its tail re-runs
    run_cmd(["git", "add", "-A"], root)
    run_cmd(["git", "commit", "-q", "-m", "baseline"], root)
    assert run_cmd(["git", "status", "--porcelain"], root).stdout.strip() == ""  # metrics, plots, lock: in git
    exp = run_cmd(["dvc", "exp", "run", "-S", "conf/base/parameters_multitask.yml:multitask.lr=0.005"], root).stdout
    assert _ran(exp) == ["multitask", "evaluation"]
    assert re.search(r"multitask\.lr\s+0\.001\s+0\.005", run_cmd(["dvc", "params", "diff"], root).stdout)
    table = run_cmd(["dvc", "exp", "show", "--csv"], root).stdout
    assert "multitask.lr" in table and "image.classification.accuracy" in table, table[:2000]
    # --all: a metric the tiny run leaves unchanged (accuracy on a handful of images often is) is listed too
    diff = json.loads(run_cmd(["dvc", "metrics", "diff", "--all", "--json"], root).stdout)
    report = diff["data/08_reporting/metrics.json"]
    assert "image.classification.accuracy" in report
    assert any(v.get("diff") for v in report.values()), "the lr change moved no metric of the report"
    plots = run_cmd(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)
    assert (tmp_path / "plots" / "index.html").is_file(), plots.stdout
    assert "loss_multitask.csv" in (tmp_path / "plots" / "index.html").read_text()

    # raw data is versioned by DVC: push to a local remote, lose it, pull it back
    remote = tmp_path / "remote"
    run_cmd(["dvc", "remote", "add", "-d", "local", str(remote)], root)
    run_cmd(["dvc", "push"], root)
    png = sorted((root / "data/01_raw/image/train").rglob("*.png"))[0]
    content = png.read_bytes()
    shutil.rmtree(root / "data/01_raw/image")
    shutil.rmtree(root / ".dvc" / "cache")
    run_cmd(["dvc", "pull"], root)
    assert png.read_bytes() == content


@pytest.mark.slow
def test_adopt_make_run_outputs_then_edit_one_modality(tmp_path) -> None:
    """`make run`'s commands, then `dvc commit -f`: DVC adopts the outputs instead of re-running (or re-writing the
    raw data); then editing audio.py re-runs audio's stages only."""
    root = _tiny_repo(tmp_path / "project")
    for command in _make_run_commands():
        proc = run_cmd(command, root)
        assert "KedroDeprecationWarning" not in _output(proc), _output(proc)[-3000:]

    # no dvc.lock yet: DVC has no record of what produced the outputs, so every stage counts as changed
    # (`dvc.yaml`: the main pipeline's stages, not those of other dvc.yaml files such as studies/)
    stages = {f"{stage}@{m}" for stage in PER_MODALITY for m in MODALITIES} | set(TRAINING)
    assert set(json.loads(run_cmd(["dvc", "status", "--json", "dvc.yaml"], root).stdout)) == stages

    run_cmd(["dvc", "commit", "-f", "dvc.yaml"], root)
    assert "Data and pipelines are up to date" in run_cmd(["dvc", "status", "dvc.yaml"], root).stdout
    raw = sorted((root / "data/01_raw/image").rglob("*.png"))[0]
    written = raw.stat().st_mtime_ns
    repro = run_cmd(["dvc", "repro"], root).stdout
    assert _ran(repro) == [] and "Data and pipelines are up to date" in repro
    assert raw.stat().st_mtime_ns == written

    module = root / "src/omnivec2_pipelines/modalities/audio.py"
    module.write_text(module.read_text() + "\n# edited\n")
    audio = [f"{stage}@audio" for stage in PER_MODALITY]
    # evaluation depends on every modality module (its classical baselines use each modality's features)
    changed = json.loads(run_cmd(["dvc", "status", "--json", "dvc.yaml"], root).stdout)
    assert sorted(changed) == sorted([*audio, "evaluation"])
    ran = _ran(run_cmd(["dvc", "repro"], root).stdout)
    # audio's stages, then the training stages where audio's tokenized arrays changed, and evaluation
    assert ran[:3] == audio and ran[-1] == "evaluation" and set(ran[3:]) <= set(TRAINING), ran
    assert raw.stat().st_mtime_ns == written


# --- fast checks of the committed files ---------------------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    """The source file of a project module (``omnivec2_pipelines.x.y``), or None for a package or outside module."""
    if module.split(".")[0] != "omnivec2_pipelines":
        return None
    path = SRC.joinpath(*module.split(".")).with_suffix(".py")
    return path if path.is_file() else None


def _import_nodes(node: ast.AST, functions: bool):
    """The import statements under ``node`` (in function bodies only if ``functions``; never ``if TYPE_CHECKING``)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not functions:
            continue
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child, functions)


def _imported_files(path: Path) -> set[Path]:
    """Project files ``path`` imports: every import of a modality module (readers import helpers inside functions),
    the module-level ones of other files. Importing the `modalities` package itself registers every modality (a
    lookup, not code the stage runs): packages are left out."""
    functions = path.parent == SRC / "omnivec2_pipelines" / "modalities"
    found = set()
    for node in _import_nodes(ast.parse(path.read_text()), functions):
        if isinstance(node, ast.ImportFrom) and node.module:
            candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {f for f in map(_module_file, candidates) if f is not None}
    return found


def _closure(path: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [path]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(_imported_files(f))
    return seen


def test_per_modality_stages_depend_on_the_code_they_import() -> None:
    """Every sample_data/ingestion/tokenization stage depends on each file its modality imports, and on no other
    modality's module unless some modality imports it (DVC's foreach lists one set of shared files for all)."""
    from dvc.repo import Repo

    modality_dir = SRC / "omnivec2_pipelines" / "modalities"
    with Repo(str(PROJECT)) as repo:
        deps = {s.name: {str(d.def_path) for d in s.deps if str(d.def_path).startswith("src/")}
                for s in repo.index.stages if Path(s.path) == PROJECT / "dvc.yaml" and "@" in s.name}
    enabled = yaml.safe_load((PROJECT / "conf/base/parameters.yml").read_text())["modalities"]
    assert set(deps) == {f"{stage}@{m}" for stage in PER_MODALITY for m in enabled}

    def rel(files: set[Path]) -> set[str]:
        return {f.relative_to(PROJECT).as_posix() for f in files}

    modules = [f for f in modality_dir.glob("*.py") if f.stem not in ("__init__", "base")]
    closures = {f.stem: _closure(f) for f in modules}
    # what any modality (enabled or not) imports besides its own module: DVC's foreach lists those for every one
    shared = rel({f for m, c in closures.items() for f in c if f != modality_dir / f"{m}.py"})
    for name, files in deps.items():
        m = name.split("@")[1]
        assert "src/omnivec2_pipelines/modalities" not in files, name
        missing = rel(closures[m]) - files
        assert not missing, f"{name} does not depend on {sorted(missing)}, which {m}.py imports: add to dvc.yaml"
        extra = files - rel(closures[m]) - shared
        assert not extra, f"{name} depends on {sorted(extra)}, which {m}.py does not import"


def test_dvc_config_is_committed_and_cache_is_not() -> None:
    """`.dvc/config` and `.dvc/.gitignore` are in the repository as `dvc init` writes them; cache and tmp are
    ignored, what `dvc repro` writes for git (dvc.lock, metrics, plots) is not."""
    if subprocess.run(["git", "rev-parse"], cwd=PROJECT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    config = (PROJECT / ".dvc" / "config").read_text()
    assert re.search(r"analytics\s*=\s*false", config)

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=PROJECT).returncode == 0

    for path in (".dvc/config", ".dvc/.gitignore", ".dvcignore", "dvc.yaml", "dvc.lock",
                 "data/08_reporting/metrics.json", "data/08_reporting/loss_multitask.csv"):
        assert not ignored(path), path
    for path in (".dvc/cache/files/md5/00/0", ".dvc/tmp/lock", ".dvc/config.local", "data/01_raw/image/x.png",
                 "data/06_models/multitask/model.pt"):
        assert ignored(path), path


#: Files that run or show `kedro run` commands.
COMMAND_FILES = ["Makefile", "dvc.yaml", "studies/dvc.yaml", "studies/transfer/dvc.yaml", "README.md",
                 "conf/README.md", *sorted(
    str(p.relative_to(PROJECT)) for p in [*(PROJECT / "docs").glob("*.md"), *(PROJECT / "src").rglob("*.py"),
                                          *(PROJECT / "conf" / "base").glob("*.yml")])]


def test_kedro_commands_use_pipelines_option() -> None:
    """Kedro 1.7 deprecates `kedro run --pipeline`; everything the project runs or writes uses `--pipelines`."""
    old = re.compile(r"kedro run\b[^\n`\"']*?(?<![\w-])(--pipeline|-p)(?![\w-])")
    found = [f"{name}:{i}: {line.strip()}" for name in COMMAND_FILES
             for i, line in enumerate((PROJECT / name).read_text().splitlines(), 1) if old.search(line)]
    assert not found, "\n".join(found)
    # the tests run the CLI with argument lists
    listed = [f"{p.name}:{i}" for p in (PROJECT / "tests").rglob("*.py") if p.name != "test_dvc.py"
              for i, line in enumerate(p.read_text().splitlines(), 1) if '"--pipeline",' in line]
    assert not listed, listed


def test_stages_track_exactly_the_parameters_their_nodes_read() -> None:
    """Each DVC stage depends on the parameter keys its Kedro nodes read (``params:...`` inputs): a per-modality stage
    on its part of the modality's block, a training stage on its own block and the keys of every modality's block it
    reads (``<modality>.mask_ratio``, ``<modality>.augment``), for every registered modality."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    from omnivec2_pipelines.modalities.base import registered_modalities
    from omnivec2_pipelines.pipeline_registry import build_pipelines

    with Repo(str(PROJECT)) as repo:
        tracked = {s.name: {p for d in s.deps if isinstance(d, ParamsDependency) for p in d.params}
                   for s in repo.index.stages if Path(s.path) == PROJECT / "dvc.yaml"}
    modalities = registered_modalities()
    pipes = build_pipelines(modalities)

    def reads(pipe) -> set[str]:
        return {i.removeprefix("params:") for i in pipe.inputs() if i.startswith("params:")}

    enabled = yaml.safe_load((PROJECT / "conf/base/parameters.yml").read_text())["modalities"]
    for stage in PER_MODALITY:
        for m in enabled:
            assert tracked[f"{stage}@{m}"] == reads(pipes[stage].only_nodes_with_namespaces([m])), f"{stage}@{m}"
    for stage in TRAINING:
        assert tracked[stage] - {"modalities"} == reads(pipes[stage]), stage

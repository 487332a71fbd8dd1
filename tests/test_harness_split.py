"""The library/harness split: `keras_fame` never imports `keras_fame.experiments`; one set of defaults."""

import ast
import dataclasses
import os
import subprocess

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_fame")
# The applications on top of the library: the harness itself and the `keras-fame` command.
APPLICATIONS = ("experiments", "console.py")


def _imports(path):
    tree = ast.parse(open(path).read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            yield node.lineno, names
        elif isinstance(node, ast.Import):
            yield node.lineno, [alias.name for alias in node.names]


def test_no_library_module_imports_the_harness():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        relative = os.path.relpath(folder, PACKAGE)
        if relative.split(os.sep)[0] in APPLICATIONS:
            continue
        for name in files:
            if not name.endswith(".py") or (relative == "." and name in APPLICATIONS):
                continue
            path = os.path.join(folder, name)
            for line, names in _imports(path):
                if any(n.startswith(("keras_fame.experiments", "keras_fame.console")) for n in names):
                    offenders.append(f"{os.path.relpath(path, PACKAGE)}:{line}")
    assert not offenders, offenders


def test_the_command_line_takes_its_defaults_from_pipeline_config(monkeypatch, tmp_path):
    from keras_fame.experiments import PipelineConfig, cli

    seen = {}

    def fake_run_pipeline(path, dataset, output_dir, config, **kwargs):
        seen["config"] = config

    monkeypatch.setattr("keras_fame.experiments.pipeline.run_pipeline", fake_run_pipeline)
    seq = tmp_path / "seq.txt"
    seq.write_text("1 1 2 3\n2 2 3 4\n")
    assert cli.main("toys", ["--sequence-file", str(seq), "--text-init", "none", "--output-dir", str(tmp_path)]) == 0
    defaults = PipelineConfig()
    chosen = seen["config"]
    for field in dataclasses.fields(PipelineConfig):
        if field.name in ("item_projection_initializer", "backbone"):
            continue  # built from flags (the identity start, no recipe options): checked below
        assert getattr(chosen, field.name) == getattr(defaults, field.name), field.name
    assert chosen.backbone == {}
    assert type(chosen.item_projection_initializer).__name__ == "HeadSliceIdentity"


def test_run_pipeline_rejects_unknown_settings(tmp_path):
    from keras_fame.experiments import run_pipeline

    with pytest.raises(TypeError, match="num_head"):
        run_pipeline(str(tmp_path / "none.txt"), "toys", str(tmp_path / "out"), num_head=3)


def test_the_recipe_preset_equals_the_flags_the_multi_seed_runs_measured(load_script, monkeypatch, tmp_path):
    """`--recipe bsarec` (what `make train` runs) must stay the flag list behind the stored recipe runs."""
    from keras_fame.experiments import cli

    multi_seed = load_script("benchmarks/multi_seed.py")
    seen = []
    monkeypatch.setattr("keras_fame.experiments.pipeline.run_pipeline", lambda *a, **k: seen.append(a[3]))
    seq = tmp_path / "seq.txt"
    seq.write_text("1 1 2 3\n2 2 3 4\n")
    base = ["--sequence-file", str(seq), "--text-init", "none", "--output-dir", str(tmp_path)]
    assert cli.main("toys", base + ["--recipe", "bsarec"]) == 0
    assert cli.main("toys", base + multi_seed.RECIPE) == 0
    same_start = [dataclasses.replace(c, item_projection_initializer=None) for c in seen]  # fresh objects each run
    assert same_start[0] == same_start[1]
    assert seen[0].every_prefix and seen[0].backbone["intermediate_dim"] == 256


def test_code_size_counts_code_lines_per_module(load_script):
    sizes = load_script("benchmarks/code_size.py")
    assert sizes.code_lines('"""doc"""\n\n# a comment\n  x = 1  # trailing\n\t\n') == 2
    try:
        counts = sizes.modules("HEAD")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert counts["experiments/"] > 0 and counts["layers/"] > 0 and "cli.py" not in counts
    # A module's count is the sum over its files as that revision holds them (not the working tree).
    show = lambda path: subprocess.run(["git", "show", f"HEAD:{path}"], cwd=os.path.dirname(PACKAGE),
                                       capture_output=True, text=True, check=True).stdout
    assert counts["utils.py"] == sizes.code_lines(show("keras_fame/utils.py"))
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD", "keras_fame/layers"],
                            cwd=os.path.dirname(PACKAGE), capture_output=True, text=True, check=True).stdout.split()
    assert counts["layers/"] == sum(sizes.code_lines(show(p)) for p in listed if p.endswith(".py"))

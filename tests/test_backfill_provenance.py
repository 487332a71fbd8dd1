"""Every result file records its provenance; files from before provenance say what is missing and why."""

import json
import os
import subprocess


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def test_every_result_file_of_the_checkout_records_provenance(load_script, capsys):
    backfill = load_script("benchmarks/backfill_provenance.py")
    assert backfill.main(["--check"]) == 0, capsys.readouterr().err


def test_old_files_get_the_commit_that_added_them_and_a_list_of_what_is_missing(load_script, tmp_path, capsys):
    backfill = load_script("benchmarks/backfill_provenance.py")
    results = tmp_path / "results" / "runs"
    results.mkdir(parents=True)
    old = {"command": "train.py --seed 0", "machine": {"cpu_count": 2}, "ndcg": 0.5}
    new = {"git": {"commit": "abc", "dirty": False}, "ndcg": 0.6}
    (results / "old.json").write_text(json.dumps(old, indent=2))  # no final newline, as early files were written
    (results / "new.json").write_text(json.dumps(new, indent=2) + "\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "results")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (results / "uncommitted.json").write_text(json.dumps({"ndcg": 0.7}))

    assert backfill.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "results/runs/old.json" in err and "results/runs/uncommitted.json" in err and "new.json" not in err

    assert backfill.backfill(str(tmp_path)) == ["results/runs/old.json"]  # never guesses for an uncommitted file
    text = (results / "old.json").read_text()
    marked = json.loads(text)
    block = marked.pop(backfill.KEY)
    assert marked == old and not text.endswith("\n")  # only the block added, in the file's own layout
    assert block["first_committed_in"] == sha
    assert block["not_recorded"] == ["git commit of the run", "CPU model", "package versions"]
    assert json.loads((results / "new.json").read_text()) == new
    assert backfill.without_provenance(str(tmp_path)) == ["results/runs/uncommitted.json"]
    assert backfill.not_recorded({"multi_seed": {"command": ""}, "machine": {"cpu": "x"}}) == [
        "command", "git commit of the run", "cores", "package versions"]

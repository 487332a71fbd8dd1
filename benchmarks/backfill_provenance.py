"""Marks the result files written before provenance was recorded, and checks that every result file has it.

Since session 14 every result file records its command, git commit, CPU model, cores and package versions
(`keras_fame.experiments.provenance`: top-level `git`, or a `provenance` entry or list). Files written
before that record some of it (most a command, some a machine block without the CPU model) and never the
commit. This script adds to each such file one block it can state from git alone:

    "provenance_recorded_later": {
        "first_committed_in": "<sha of the commit that first added the file, renames followed>",
        "committed": "<that commit's date>",
        "not_recorded": ["git commit of the run", "CPU model", ...],
        "note": "..."}

The commit that added a file bounds the run's code from above; which earlier commit ran is not known, and
the block says so instead of guessing.

    python benchmarks/backfill_provenance.py            # add the block where it is missing
    python benchmarks/backfill_provenance.py --check    # exit 1 naming every result file without provenance
"""

import argparse
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "provenance_recorded_later"
NOTE = ("Written before result files recorded their provenance. The run's own commit is not known: the code "
        "that produced it is at or before first_committed_in, the commit that added this file.")


def has_run_provenance(report):
    """True when the file records its run's commit: top-level `git` or a `provenance` entry (or list)."""
    return isinstance(report, dict) and ("git" in report or "provenance" in report)


def not_recorded(report):
    """What of command, commit, CPU model and package versions a pre-provenance `report` lacks."""
    machine = report.get("machine") or {}
    command = report.get("command") or (report.get("multi_seed") or {}).get("command")
    missing = [] if command else ["command"]
    missing.append("git commit of the run")
    if "cpu" not in machine:
        missing.append("CPU model")
    if "cpu_count" not in machine and "cpu_count" not in report and "cpus" not in report:
        missing.append("cores")
    if "packages" not in report:
        missing.append("package versions")
    return missing


def first_commit(path, root=ROOT):
    """`(sha, date)` of the commit that first added `path` (renames followed), or None when git does not know it."""
    log = subprocess.run(
        ["git", "log", "--follow", "--diff-filter=A", "--format=%H %cI", "--", os.path.relpath(path, root)],
        cwd=root, capture_output=True, text=True, check=False,
    )
    lines = log.stdout.split()
    return (lines[-2], lines[-1]) if log.returncode == 0 and len(lines) >= 2 else None


def result_files(root=ROOT):
    return sorted(glob.glob(os.path.join(root, "results", "**", "*.json"), recursive=True))


def without_provenance(root=ROOT):
    """Result files (relative paths) that record neither their run's provenance nor the block this script adds."""
    missing = []
    for path in result_files(root):
        with open(path) as f:
            report = json.load(f)
        if not (has_run_provenance(report) or KEY in (report if isinstance(report, dict) else {})):
            missing.append(os.path.relpath(path, root))
    return missing


def _dumps_like(report, original):
    """`report` as JSON in the layout of `original` (indent, ASCII escapes, final newline), so a diff shows
    only the added block."""
    before = json.loads(original)
    for indent in (2, 4, None):
        for ensure_ascii in (True, False):
            text = json.dumps(before, indent=indent, ensure_ascii=ensure_ascii)
            if original.rstrip("\n") == text:
                return json.dumps(report, indent=indent, ensure_ascii=ensure_ascii) + original[len(text):]
    return json.dumps(report, indent=2) + "\n"


def backfill(root=ROOT):
    """Adds the block to every file `without_provenance`; returns the files changed (relative paths)."""
    changed = []
    for relative in without_provenance(root):
        path = os.path.join(root, relative)
        origin = first_commit(path, root)
        if origin is None:  # not committed yet: it should have been written with provenance()
            continue
        with open(path) as f:
            text = f.read()
        report = json.loads(text)
        report[KEY] = {"first_committed_in": origin[0], "committed": origin[1],
                       "not_recorded": not_recorded(report), "note": NOTE}
        with open(path, "w") as f:
            f.write(_dumps_like(report, text))
        changed.append(relative)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only name the files without provenance; exit 1 if any")
    parser.add_argument("--root", default=ROOT, help="the checkout (default: this one)")
    args = parser.parse_args(argv)
    if args.check:
        missing = without_provenance(args.root)
        for relative in missing:
            print(f"{relative}: records no provenance (run it through keras_fame.experiments.provenance)",
                  file=sys.stderr)
        return 1 if missing else 0
    for relative in backfill(args.root):
        print(f"marked {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lines of code per module of `keras_fame/` at two git revisions (issue 10: before/after the split).

    python benchmarks/code_size.py 2cdc395~1 HEAD

Counts non-blank lines that are not `#` comments (docstrings count) of every
`.py` file, grouped by top-level module or subpackage, read with `git show`
so the working tree is not touched. Prints a markdown table, with the library
(what users import) and the harness (`keras_fame.experiments` and the
`keras-fame` console command) as subtotals.
"""

import argparse
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HARNESS = ("experiments", "console.py", "cli.py")  # cli.py: the training CLI before the split


def _git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=ROOT).stdout


def code_lines(text):
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def modules(rev):
    """{module: lines} for `keras_fame/` at `rev`; a module is a top-level file or a subpackage."""
    out = {}
    for path in _git("ls-tree", "-r", "--name-only", rev, "keras_fame").split():
        if path.endswith(".py"):
            parts = path.split("/")
            module = parts[1] + ("/" if len(parts) > 2 else "")
            out[module] = out.get(module, 0) + code_lines(_git("show", f"{rev}:{path}"))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs="+", help="git revisions, e.g. 2cdc395~1 HEAD")
    args = parser.parse_args(argv)
    counts = [modules(rev) for rev in args.revisions]
    print("| module | " + " | ".join(f"`{rev}`" for rev in args.revisions) + " |")
    print("|---|" + "---|" * len(args.revisions))
    for module in sorted(set().union(*counts)):
        print(f"| `{module}` | " + " | ".join(str(c.get(module, "-")) for c in counts) + " |")
    for name, keep in (("library", lambda m: m.rstrip("/") not in HARNESS), ("harness", lambda m: m.rstrip("/") in HARNESS)):
        print(f"| {name} | " + " | ".join(str(sum(v for m, v in c.items() if keep(m))) for c in counts) + " |")
    print("| total | " + " | ".join(str(sum(c.values())) for c in counts) + " |")


if __name__ == "__main__":
    main()

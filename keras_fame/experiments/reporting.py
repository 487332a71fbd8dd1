"""Reporting for the experiment harness: the paper's numbers, result tables, JSON files, the machine."""

import json
import os
import platform

import keras

from keras_fame.utils import json_default
from keras_fame.utils import replace_atomically

# Paper Table 2, FAME row (HR@5, HR@10, HR@20, NDCG@5, NDCG@10, NDCG@20).
PAPER_FAME = {
    "beauty": dict(zip(
        ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"],
        [0.0710, 0.0978, 0.1345, 0.0508, 0.0593, 0.0687],
    )),
    "sports": dict(zip(
        ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"],
        [0.0400, 0.0580, 0.0820, 0.0277, 0.0337, 0.0402],
    )),
    "toys": dict(zip(
        ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"],
        [0.0820, 0.1065, 0.1409, 0.0603, 0.0681, 0.0759],
    )),
}
METRIC_ORDER = ["hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20"]



def write_json_atomic(path, obj):
    """JSON through `replace_atomically` (never a half-written file under `path`)."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=json_default)

    replace_atomically(path, write)



def cpu_model():
    """The CPU's model name (Linux `/proc/cpuinfo`; else `platform.processor()`), e.g. "AMD EPYC"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description():
    backend = keras.backend.backend()
    device = "cpu"
    if backend == "jax":
        import jax

        device = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return {
        "backend": backend,
        "device": device,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "keras": keras.__version__,
    }


PROVENANCE_PACKAGES = ("keras", "tensorflow", "jax", "jaxlib", "numpy", "keras-hub", "keras-rs", "torch")


def git_state(path=None):
    """`{"commit": sha, "dirty": bool}` of the checkout holding `path` (default: this package), or None outside git."""
    import subprocess

    folder = os.path.dirname(os.path.abspath(path or __file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder, capture_output=True, text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions(names=PROVENANCE_PACKAGES):
    """Installed versions of `names` (`importlib.metadata`); packages that are not installed are left out."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def provenance(argv=None):
    """Where a result comes from: the command line, git commit (and dirty flag), machine and package versions.

    Every result file the harness and the benchmarks write records this
    (`results.json` under `provenance`; a resumed run appends an entry).
    """
    import sys
    import time

    argv = sys.argv if argv is None else argv
    return {
        "command": " ".join([os.path.basename(sys.executable), *argv]),
        "cwd": os.getcwd(),
        "git": git_state(),
        "machine": machine_description(),
        "packages": package_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def format_comparison(dataset, rows):
    """A text table of `{label: metrics}` rows beside the paper's FAME row."""
    header = f"{'model':<34}" + "".join(f"{m:>9}" for m in METRIC_ORDER)
    lines = [header, "-" * len(header)]
    for label, metrics in rows.items():
        lines.append(f"{label:<34}" + "".join(f"{metrics[m]:>9.4f}" for m in METRIC_ORDER))
    paper = PAPER_FAME.get(dataset)
    if paper:
        lines.append(f"{'paper FAME (Table 2)':<34}" + "".join(f"{paper[m]:>9.4f}" for m in METRIC_ORDER))
    return "\n".join(lines)

"""Drops TensorFlow's C++ start-up lines (oneDNN, CUDA probing, CPU features, "no GPU") from stderr.

TensorFlow 2.21 prints them through absl before its logging is initialised,
so `TF_CPP_MIN_LOG_LEVEL` no longer silences them. While TensorFlow is
imported, file descriptor 2 goes to a temporary file; afterwards every line
that is not one of these known start-up lines is written back to stderr, so
real errors and warnings still show. Skipped when `TF_CPP_MIN_LOG_LEVEL` is
0 (the user asked for everything) or stderr has no file descriptor.
"""

import contextlib
import os
import re
import sys
import tempfile

STARTUP_LINES = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I0000 \S+ +\d+ (port\.cc|cudart_stub\.cc|cpu_feature_guard\.cc):\d+\]"
    r"|E0000 \S+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|To enable the following instructions: )"
)


@contextlib.contextmanager
def tensorflow_startup_lines_dropped(force=False):
    """The context; `force=True` filters even when TensorFlow is already loaded (for tests)."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0" or ("tensorflow" in sys.modules and not force):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not STARTUP_LINES.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()

"""Fetching the raw public datasets (for users; tests use local `file://` URLs).

Nothing in the package downloads at import or training time: call these (or
`datasets/prepare.py`) once, then train from the prepared files.
"""

import hashlib
import os
import shutil
import urllib.request

from keras_fame.data.registry import AMAZON_2014, DATASETS  # noqa: F401  (AMAZON_2014 re-exported)
from keras_fame.utils import replace_atomically

SOURCES = {key: dataset.sources for key, dataset in DATASETS.items()}


def fetch(url, destination, sha256=None, timeout=60):
    """Downloads `url` to `destination` atomically (temp file + rename).

    An existing file is kept. With `sha256`, a mismatch raises and leaves no
    file behind.
    """
    if os.path.exists(destination):
        return destination

    def download(tmp):
        digest = hashlib.sha256()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise IOError(f"{url}: sha256 {digest.hexdigest()} != expected {sha256}")

    replace_atomically(destination, download, suffix=".part")
    return destination


def extract_movielens_ratings(archive, destination):
    """Extracts `*/ratings.csv` from a MovieLens zip to `destination`."""
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        member = next((n for n in zf.namelist() if n.endswith("/ratings.csv") or n == "ratings.csv"), None)
        if member is None:
            raise IOError(f"{archive}: no ratings.csv inside")
        with zf.open(member) as src, open(destination, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return destination

"""Fuzzed input files: valid data or a DataFormatError naming the file (and line), never another exception."""

import json
import os
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_fame.data import DataFormatError, read_item_text, read_sequences

VALID_SEQUENCES = b"1 1 2 3 4\n2 4 5 6\n3 7 1 2 3 9\n"
VALID_ITEMS = (
    "\n".join(
        json.dumps({"item_id": i, "idgenrec_text": f"toy {i}", "s3rec_attribute_ids": [10 + i % 2, 2, 20 + i % 3],
                    "attributes": [f"Brand {i % 2}", None, f"Cat {i % 3}"]})
        for i in range(1, 6)
    )
    + "\n"
).encode()

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOCATION = re.compile(r"^.+?(:\d+)?: ")


def mutations(valid):
    """Byte-level mutations of a valid file: replace, insert or delete a short span."""
    position = st.integers(min_value=0, max_value=len(valid))
    span = st.binary(min_size=0, max_size=6)
    return st.one_of(
        st.builds(lambda p, b: valid[:p] + b + valid[p + len(b):], position, span),
        st.builds(lambda p, b: valid[:p] + b + valid[p:], position, span),
        st.builds(lambda p, n: valid[:p] + valid[p + n:], position, st.integers(1, 8)),
        st.binary(max_size=64),
    )


def _check(reader, content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"fuzz{suffix}")
        with open(path, "wb") as f:
            f.write(content)
        try:
            return reader(path)
        except DataFormatError as err:
            assert str(err).startswith(path), str(err)
            assert LOCATION.match(str(err)), str(err)
            return None


@FUZZ
@given(mutations(VALID_SEQUENCES))
def test_sequence_reader_survives_mutations(content):
    data = _check(read_sequences, content, ".txt")
    if data is not None:
        assert data.num_users >= 1 and (data.lengths >= 3).all() and data.items.min() >= 1


@FUZZ
@given(mutations(VALID_ITEMS))
def test_item_text_reader_survives_mutations(content):
    text = _check(read_item_text, content, ".jsonl")
    if text is not None:
        assert len(text.texts) == text.num_items + 1 and all(text.texts[1:])
        assert text.facet_labels.shape == (text.num_items + 1, 4)

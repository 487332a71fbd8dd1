import numpy as np
import pytest

from keras_fame.data import DataFormatError, from_lists, read_sequences, write_sequences


def _write(tmp_path, text, name="seq.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_reads_s3rec_format(tmp_path):
    path = _write(tmp_path, "1 1 2 3 4\n2 4 5 6\n3 7 1 2 3 9\n")
    data = read_sequences(path)
    assert data.user_ids.tolist() == [1, 2, 3]
    assert data.sequence(2).tolist() == [7, 1, 2, 3, 9]
    assert data.num_items == 9 and data.num_events == 12
    assert data.items.dtype == np.int32


def test_tolerates_tabs_crlf_and_no_final_newline(tmp_path):
    data = read_sequences(_write(tmp_path, "1\t1 2 3\r\n2 4 5 6"))
    assert data.sequence(0).tolist() == [1, 2, 3] and data.sequence(1).tolist() == [4, 5, 6]


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("", None, "empty"),
        ("1 1 2 3\n2 4 x 6\n", 2, "'x' is not an integer"),
        ("1 1 2 3\n2 4 0 6\n", 2, "not positive"),
        ("1 1 2 3\n2 4 -5 6\n", 2, "not positive"),
        ("1 1 2 3\n2 4 5\n", 2, "has 2 item"),
        ("1 1 2 3\n\n2 4 5 6\n", 2, "blank line"),
        ("1 1 2 3\n2 4 5 6\n1 7 8 9\n", 3, "appears again (first on line 1)"),
        ("1 1 2 3\n2 4 5 99999999999\n", 2, "does not fit in int32"),
        ("1 1 2 3\n2 4 5 6.5\n", 2, "'6.5' is not an integer"),
    ],
)
def test_bad_input_names_file_line_and_reason(tmp_path, text, line, reason):
    path = _write(tmp_path, text)
    with pytest.raises(DataFormatError) as info:
        read_sequences(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:" if line else f"{path}:")
    assert reason in message
    assert info.value.line == line


def test_write_read_round_trip(tmp_path):
    data = from_lists([[3, 1, 2], [5, 4, 3, 2]], user_ids=[10, 20])
    path = str(tmp_path / "out.txt")
    write_sequences(path, data)
    again = read_sequences(path)
    assert again.user_ids.tolist() == [10, 20]
    assert again.items.tolist() == data.items.tolist()
    assert again.indptr.tolist() == data.indptr.tolist()


@pytest.mark.large
def test_real_toys_matches_the_paper(toys_file):
    stats = read_sequences(toys_file).stats()
    assert (stats["users"], stats["items"], stats["actions"]) == (19412, 11924, 167597)


@pytest.mark.large
def test_real_beauty_matches_the_paper(beauty_file):
    stats = read_sequences(beauty_file).stats()
    assert (stats["users"], stats["items"], stats["actions"]) == (22363, 12101, 198502)


def test_missing_real_data_skips_locally_and_fails_under_ci(monkeypatch, real_data):
    monkeypatch.setitem(real_data.__globals__, "find_sequence_file", lambda dataset: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="real toys data not found"):
        real_data("toys")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the real-data tests must run"):
        real_data("toys")

import gzip
import json
import zipfile

import numpy as np
import pytest

from keras_fame.data import DataFormatError, read_sequences
from keras_fame.data.download import extract_movielens_ratings, fetch
from keras_fame.data.preprocess import build_sequences, k_core, prepare_amazon, prepare_movielens


def _amazon_files(tmp_path):
    # Items a..e reviewed 2+ times survive a 2-core; "z" is reviewed once and is dropped.
    reviews = [
        ("u1", "a", 10), ("u1", "b", 5), ("u1", "c", 20),
        ("u2", "b", 7), ("u2", "c", 7), ("u2", "a", 9), ("u2", "z", 1),
        ("u3", "c", 1), ("u3", "a", 2), ("u3", "b", 3),
    ]
    path = tmp_path / "reviews_Test_5.json.gz"
    with gzip.open(path, "wt") as f:
        for user, asin, t in reviews:
            f.write(json.dumps({"reviewerID": user, "asin": asin, "unixReviewTime": t, "overall": 5.0}) + "\n")
    meta = tmp_path / "meta_Test.json.gz"
    with gzip.open(meta, "wt") as f:
        f.write(str({"asin": "a", "brand": "Acme", "categories": [["Toys", "Dolls"]]}) + "\n")
        f.write(str({"asin": "b", "brand": "Acme", "categories": [["Toys", "Cars"]]}) + "\n")
        f.write(str({"asin": "c", "categories": [["Toys", "Dolls", "Barbie"]]}) + "\n")
        f.write(str({"asin": "q", "brand": "Other"}) + "\n")
    return path, meta


def test_prepare_amazon(tmp_path):
    reviews, meta = _amazon_files(tmp_path)
    data = prepare_amazon(reviews, tmp_path / "out", "Test", metadata_path=meta, k=2, min_attribute_count=2)
    # u1: b(5) a(10) c(20); u2: b(7) c(7) a(9) (tie keeps file order); u3: c a b.
    # Items by first appearance: b=1, a=2, c=3.
    again = read_sequences(tmp_path / "out" / "Test.txt")
    assert [again.sequence(u).tolist() for u in range(3)] == [[1, 2, 3], [1, 3, 2], [3, 2, 1]]
    assert data.num_items == 3
    ids = json.loads((tmp_path / "out" / "Test_item_ids.json").read_text())
    assert ids == {"1": "b", "2": "a", "3": "c"}
    attrs = json.loads((tmp_path / "out" / "Test_item2attributes.json").read_text())
    names = json.loads((tmp_path / "out" / "Test_item2attributes_names.json").read_text())
    # Acme x2 and Dolls x2 kept; Cars and Barbie (once each) dropped.
    assert names == {"1": "Acme", "2": "Dolls"}
    assert attrs == {"1": [1], "2": [1, 2], "3": [2]}


def test_amazon_bad_line_is_named(tmp_path):
    path = tmp_path / "reviews.json"
    path.write_text('{"reviewerID": "u", "asin": "a", "unixReviewTime": 1}\n{"reviewerID": "u", \n')
    with pytest.raises(DataFormatError, match=r"reviews.json:2: not a JSON object"):
        prepare_amazon(path, tmp_path / "out", "X")
    path.write_text('{"reviewerID": "u", "asin": "a"}\n')
    with pytest.raises(DataFormatError, match=r"reviews.json:1: missing or bad field 'unixReviewTime'"):
        prepare_amazon(path, tmp_path / "out", "X")


def test_k_core_is_iterated_to_a_fixed_point():
    users = np.array([0, 0, 1, 1, 2])
    items = np.array([0, 1, 0, 1, 1])
    # user 2 has one event; removing it leaves item 1 with 2 -> still fine for k=2.
    assert k_core(users, items, 2).tolist() == [True, True, True, True, False]
    # For k=3 everything unravels.
    assert not k_core(users, items, 3).any()


def test_build_sequences_orders_users_by_first_appearance():
    data, users, items = build_sequences(["x", "y", "x", "y"], [7, 8, 8, 7], [2, 1, 1, 5], k=0)
    assert users.tolist() == ["x", "y"]
    assert [data.sequence(0).tolist(), data.sequence(1).tolist()] == [[1, 2], [1, 2]]
    assert items.tolist() == [8, 7]


def test_prepare_movielens_from_a_local_zip(tmp_path):
    rows = ["userId,movieId,rating,timestamp"]
    rng = np.random.default_rng(0)
    for user in range(1, 9):
        for movie in rng.choice(np.arange(1, 9), size=6, replace=False):
            rows.append(f"{user},{movie * 10},4.0,{rng.integers(1_000_000)}")
    archive = tmp_path / "ml-test.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-test/ratings.csv", "\n".join(rows) + "\n")
    # The real download path, on a local URL.
    fetched = fetch(archive.as_uri(), str(tmp_path / "dl" / "ml-test.zip"))
    ratings = extract_movielens_ratings(fetched, str(tmp_path / "ratings.csv"))
    data = prepare_movielens(ratings, tmp_path / "out", name="ml-test", k=5)
    # Brute-force 5-core over the same events.
    events = {tuple(int(v) for v in r.split(",")[:2]) for r in rows[1:]}
    while True:
        u_count, m_count = {}, {}
        for u, m in events:
            u_count[u] = u_count.get(u, 0) + 1
            m_count[m] = m_count.get(m, 0) + 1
        kept = {(u, m) for u, m in events if u_count[u] >= 5 and m_count[m] >= 5}
        if kept == events:
            break
        events = kept
    assert data.num_events == len(events) and data.num_users == len({u for u, _ in events})
    written = read_sequences(tmp_path / "out" / "ml-test.txt")
    assert written.num_items == data.num_items <= 8
    # Each user's items are in timestamp order.
    mapping = json.loads((tmp_path / "out" / "ml-test_item_ids.json").read_text())
    times = {}
    for row in rows[1:]:
        u, m, _, t = row.split(",")
        times[(int(u), int(m))] = int(t)
    for u in range(8):
        movies = [mapping[str(i)] for i in written.sequence(u).tolist()]
        assert [times[(u + 1, m)] for m in movies] == sorted(times[(u + 1, m)] for m in movies)


def test_fetch_checks_sha256(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello")
    with pytest.raises(IOError, match="sha256"):
        fetch(src.as_uri(), str(tmp_path / "dst.bin"), sha256="0" * 64)
    assert not (tmp_path / "dst.bin").exists()


def test_movielens_bad_row(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,2,4.0,5\n1,abc,3.0,6\n")
    with pytest.raises(DataFormatError, match="ratings.csv"):
        prepare_movielens(path, tmp_path / "out")


def test_build_sequences_keeps_each_events_time_beside_its_item():
    # User x: item 8 at t=1, item 7 at t=2 (given out of order); user y: item 8 at t=1, 7 at t=5.
    data, _, items = build_sequences(["x", "y", "x", "y"], [7, 8, 8, 7], [2, 1, 1, 5], k=0)
    assert data.timestamps.tolist() == [1, 2, 1, 5]
    assert [items[i - 1] for i in data.items] == [8, 7, 8, 7]

"""The synthetic generators' statistics."""

import numpy as np


def test_zipf_sessions_statistics():
    from keras_fame.data.synthetic import zipf_sessions

    data = zipf_sessions(num_users=20_000, num_items=5_000, mean_length=10, exponent=1.0, follow=0.5, seed=0)
    assert data.num_users == 20_000 and data.num_items == 5_000
    assert data.lengths.min() >= 3 and abs(data.lengths.mean() - 10) < 0.1
    assert data.items.min() >= 1 and data.items.max() <= 5_000
    # First items follow the popularity law: log-frequency against log-rank has slope -exponent.
    first = data.items[data.indptr[:-1]]
    counts = np.bincount(first, minlength=5_001)[1:51].astype(float)
    slope = np.polyfit(np.log(np.arange(1, 51)), np.log(counts), 1)[0]
    assert -1.15 < slope < -0.85, slope
    # About `follow` of the later items step 1..20 ahead of the previous one.
    later = np.ones(data.num_events, bool)
    later[data.indptr[:-1]] = False
    step = (data.items[1:] - data.items[:-1]) % 5_000
    followed = ((step >= 1) & (step <= 20))[later[1:]]
    assert 0.48 < followed.mean() < 0.56  # 0.5 plus the popular draws that land within the window


def test_clustered_sessions_statistics():
    from keras_fame.data.synthetic import clustered_sessions

    data = clustered_sessions(num_users=20_000, num_items=5_003, cluster_size=50, stay=0.8, seed=0)
    assert data.num_users == 20_000 and data.num_items == 5_003
    assert data.lengths.min() >= 3 and abs(data.lengths.mean() - 10) < 0.1
    assert data.items.min() >= 1 and data.items.max() <= 5_003
    cluster = (data.items - 1) // 50
    later = np.ones(data.num_events, bool)
    later[data.indptr[:-1]] = False
    same = (cluster[1:] == cluster[:-1])[later[1:]]
    # `stay` of the later items keep the cluster, plus the jumps that land in it again: in steady state the
    # current cluster is a popularity draw, so a jump repeats it with probability sum_c p_c^2.
    p = 1.0 / np.arange(1, 102)
    p /= p.sum()
    assert abs(same.mean() - (0.8 + 0.2 * np.sum(p**2))) < 0.005, same.mean()
    # Within a cluster the item is uniform; the last cluster holds the 3 remaining items.
    counts = np.bincount(data.items[cluster == 0] - 1, minlength=50)
    assert counts.min() > 0.7 * counts.mean() and (cluster == 100).any() and data.items[cluster == 100].max() == 5_003
    # Cluster popularity falls with rank.
    per_cluster = np.bincount(cluster, minlength=101)
    assert per_cluster[0] > per_cluster[10] > per_cluster[100]


def test_clustered_sessions_refuses_bad_sizes():
    import pytest

    from keras_fame.data.synthetic import clustered_sessions

    with pytest.raises(ValueError, match="cluster_size=1"):
        clustered_sessions(10, 100, cluster_size=1)
    with pytest.raises(ValueError, match="stay=1.5"):
        clustered_sessions(10, 100, stay=1.5)

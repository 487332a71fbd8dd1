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

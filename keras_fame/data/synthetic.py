"""Synthetic sequences with planted facets, for fast tests and demos.

Two generators. `planted_facet_walks` makes data that FAME's gate is needed
for (see its docstring); `planted_facets`, below, makes data that SASRec
learns as well as FAME.

In `planted_facets`, each item has two attributes, a *colour* and a
*shape* (two facets), laid out as `item = 1 + colour * num_shapes + shape`.
Each user follows ONE facet with a small set of favourite values in it
(e.g. "red or blue, any shape", or "circles or stars, any colour"),
switching between favourites over time, and a little noise. Predicting the
next item needs to know which facet the user follows and which of the
favourites is current. Because the favourite values repeat, summing item
embeddings over the history already reveals the facet.
"""

import numpy as np

from keras_fame.data.sequences import SequenceData


def _sequence_data(lengths, items, num_items, source):
    """`SequenceData` for users `1..len(lengths)` whose sequences lie back to back in `items`."""
    return SequenceData(
        user_ids=np.arange(1, len(lengths) + 1, dtype=np.int64),
        indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=items.astype(np.int32),
        num_items=num_items,
        source=source,
    )


def planted_facets(
    num_users=2000,
    num_colours=12,
    num_shapes=12,
    min_length=6,
    max_length=20,
    favourites=2,
    stay_probability=0.8,
    noise=0.05,
    seed=0,
):
    """Generates `SequenceData` with planted facets.

    Args:
        num_users: users to generate.
        num_colours, num_shapes: values of the two facets; there are
            `num_colours * num_shapes` items.
        min_length, max_length: sequence length range (inclusive).
        favourites: favourite values per user in the followed facet.
        stay_probability: chance the next item keeps the current favourite.
        noise: chance an item is uniformly random.
        seed: random seed.

    Returns:
        `(SequenceData, facts)`, `facts` a dict with `item_colour`,
        `item_shape` (arrays indexed by item id, 0 unused) and `user_facet`
        (0 = colour, 1 = shape).
    """
    rng = np.random.default_rng(seed)
    num_items = num_colours * num_shapes
    lengths = rng.integers(min_length, max_length + 1, size=num_users)
    total = int(lengths.sum())
    user_of = np.repeat(np.arange(num_users), lengths)
    facet = rng.integers(0, 2, size=num_users)
    n_values = np.where(facet == 0, num_colours, num_shapes)
    fav = (rng.random((num_users, favourites)).argsort(axis=1) + rng.integers(0, 1 << 30, size=(num_users, 1)))
    fav = fav % n_values[:, None]
    # Current favourite: a sticky random walk over the user's favourites.
    switch = rng.random(total) > stay_probability
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    switch[starts] = True
    draws = rng.integers(0, favourites, size=total)
    last_switch = np.maximum.accumulate(np.where(switch, np.arange(total), 0))
    current = fav[user_of, draws[last_switch]]
    other = rng.integers(0, np.where(facet == 0, num_shapes, num_colours)[user_of])
    colour = np.where(facet[user_of] == 0, current, other)
    shape = np.where(facet[user_of] == 0, other, current)
    items = 1 + colour * num_shapes + shape
    random_items = rng.integers(1, num_items + 1, size=total)
    items = np.where(rng.random(total) < noise, random_items, items)
    item_ids = np.arange(num_items + 1)
    data = _sequence_data(lengths, items, num_items, "<planted_facets>")
    facts = {
        "item_colour": np.where(item_ids > 0, (item_ids - 1) // num_shapes, -1),
        "item_shape": np.where(item_ids > 0, (item_ids - 1) % num_shapes, -1),
        "user_facet": facet,
    }
    return data, facts


def planted_facet_walks(
    num_users=2000,
    num_facets=2,
    num_values=16,
    min_length=6,
    max_length=20,
    jump=0.1,
    noise=0.05,
    seed=0,
):
    """Sequences whose next item depends on ONE facet, chosen per user.

    Items `1..num_facets` are *facet markers*; every other item has
    `num_facets` attributes with `num_values` values each (item id
    `1 + num_facets + Σ_k value_k · num_values^(num_facets-1-k)`). Each user
    follows one facet `k`: the sequence opens with marker `k` (say, an
    interest picked at sign-up), then the value of attribute `k` steps +1
    (mod `num_values`) per interaction, jumping to a random value with
    probability `jump`; the other attributes are uniformly random, and with
    probability `noise` an item is random altogether.

    Predicting the next item means: take the last item's value in the facet
    the marker names, add one, and ignore the other attributes. That is a
    product of two signals from different positions: the marker selects,
    the last item supplies the value. FAME's gate computes such a selection
    directly (one head per facet, the gate picks the head); SASRec's single
    vector must build it inside its FFN. Unlike in `planted_facets`, the
    facet cannot be read off by summing item embeddings over the history:
    the followed value changes at every step, so it spreads over its values
    like the random attributes do. Keep `max_length` at most the model's
    `max_len` so the marker stays in view.

    Args:
        num_users: users to generate.
        num_facets: attributes per item (and marker items).
        num_values: values per attribute; there are
            `num_values ** num_facets + num_facets` items.
        min_length, max_length: sequence length range, marker included.
        jump: per-step probability that the followed value jumps at random.
        noise: per-item probability of a uniformly random non-marker item.
        seed: random seed.

    Returns:
        `(SequenceData, facts)`, `facts` a dict with `item_attributes`
        (`[num_items + 1, num_facets]`, -1 for padding and markers),
        `user_facet` (`[num_users]`) and `num_facets`.
    """
    if num_facets < 1 or num_values < 2:
        raise ValueError(f"num_facets={num_facets} must be >= 1 and num_values={num_values} >= 2")
    if not 2 <= min_length <= max_length:
        raise ValueError(f"need 2 <= min_length ({min_length}) <= max_length ({max_length})")
    rng = np.random.default_rng(seed)
    num_items = num_values**num_facets + num_facets
    lengths = rng.integers(min_length, max_length + 1, size=num_users)
    total = int(lengths.sum())
    user_of = np.repeat(np.arange(num_users), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    facet = rng.integers(0, num_facets, size=num_users)
    # The followed value is a per-user cumulative sum of steps (+1, or a
    # random jump), restarted at each user's first position.
    step = np.where(rng.random(total) < jump, rng.integers(0, num_values, size=total), 1)
    step[starts] = rng.integers(0, num_values, size=num_users)
    running = np.cumsum(step)
    value = (running - np.repeat(running[starts] - step[starts], lengths)) % num_values
    attributes = rng.integers(0, num_values, size=(total, num_facets))
    attributes[np.arange(total), facet[user_of]] = value
    strides = num_values ** np.arange(num_facets - 1, -1, -1)
    items = 1 + num_facets + attributes @ strides
    random_items = rng.integers(1 + num_facets, num_items + 1, size=total)
    items = np.where(rng.random(total) < noise, random_items, items)
    items[starts] = 1 + facet
    data = _sequence_data(lengths, items, num_items, "<planted_facet_walks>")
    regular = np.arange(num_values**num_facets)
    item_attributes = np.full((num_items + 1, num_facets), -1, dtype=np.int64)
    item_attributes[1 + num_facets:] = (regular[:, None] // strides) % num_values
    return data, {"item_attributes": item_attributes, "user_facet": facet, "num_facets": num_facets}


def zipf_sessions(num_users, num_items, mean_length=10, exponent=1.0, follow=0.5, window=20, seed=0):
    """A large catalog in seconds: Zipf item popularity plus a learnable next-item pattern.

    Vectorised over users (one numpy pass per position), for scale tests and
    the million-item demo. Each user's length is `3 + Poisson(mean_length - 3)`;
    the first item is drawn by popularity, `P(rank r) ∝ r^-exponent`
    (item id = popularity rank); each next item, with probability `follow`,
    is a *neighbour* of the previous one (`prev + 1 .. prev + window`, wrapping
    around, chosen uniformly: the pattern a sequence model can learn), and
    otherwise another popularity draw.

    Args:
        num_users, num_items: sizes (e.g. 10^6 and 10^6 give ~10^7 events at
            the default mean length).
        mean_length: mean events per user (at least 3).
        exponent: the Zipf exponent `s` of item popularity.
        follow: the chance that the next item follows the previous one.
        window: how far ahead a following item may be.
        seed: random seed.

    Returns:
        `SequenceData` (users `1..num_users`; ids `1..num_items`).
    """
    if num_users < 1 or num_items < 2 or mean_length < 3:
        raise ValueError("need num_users >= 1, num_items >= 2 and mean_length >= 3")
    rng = np.random.default_rng(seed)
    lengths = 3 + rng.poisson(mean_length - 3, size=num_users)
    cdf = np.cumsum(np.arange(1, num_items + 1, dtype=np.float64) ** -float(exponent))
    cdf /= cdf[-1]

    def popular(n):
        return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), num_items - 1) + 1

    longest = int(lengths.max())
    out = np.zeros((num_users, longest), dtype=np.int32)
    out[:, 0] = popular(num_users)
    for t in range(1, longest):
        alive = np.flatnonzero(lengths > t)
        prev = out[alive, t - 1].astype(np.int64)
        step = (prev - 1 + rng.integers(1, window + 1, size=len(alive))) % num_items + 1
        fresh = popular(len(alive))
        out[alive, t] = np.where(rng.random(len(alive)) < follow, step, fresh)
    items = out[np.arange(longest)[None, :] < lengths[:, None]]  # row-major: users back to back
    return _sequence_data(lengths, items, num_items, f"<zipf_sessions users={num_users} items={num_items}>")


def clustered_sessions(num_users, num_items, cluster_size=50, stay=0.8, exponent=1.0, mean_length=10, seed=0):
    """A large catalogue whose next item a sequence model can learn from co-occurrence alone.

    The items form clusters of `cluster_size` consecutive ids (cluster `c` holds
    items `c * cluster_size + 1 ..`; the last one may be smaller). Each user's
    length is `3 + Poisson(mean_length - 3)`. The first item's cluster is drawn
    by popularity, `P(cluster rank r) ∝ r^-exponent`, and the item uniformly
    in it; each next item, with probability `stay`, is drawn uniformly from the
    current cluster, and otherwise the user jumps: a new popularity draw.
    Nothing but co-occurrence tells a model which items share a cluster (ids
    are opaque to it). A model that knows the clusters reaches HR@10 of about
    `stay * 10 / cluster_size` (more with the history excluded), while item
    popularity reaches only what the popular clusters give.

    Vectorised over users (one numpy pass per position).

    Args:
        num_users, num_items: sizes (10^6 and 10^6 give ~10^7 events at the
            default mean length).
        cluster_size: items per cluster, at least 2.
        stay: the chance that the next item stays in the current cluster.
        exponent: the Zipf exponent `s` of cluster popularity.
        mean_length: mean events per user (at least 3).
        seed: random seed.

    Returns:
        `SequenceData` (users `1..num_users`; ids `1..num_items`).

    Raises:
        ValueError: a size or probability out of range, naming it.
    """
    if num_users < 1 or num_items < 2 or mean_length < 3:
        raise ValueError("need num_users >= 1, num_items >= 2 and mean_length >= 3")
    if not 2 <= cluster_size <= num_items:
        raise ValueError(f"cluster_size={cluster_size}: must be in [2, num_items]")
    if not 0 <= stay <= 1:
        raise ValueError(f"stay={stay}: must be in [0, 1]")
    rng = np.random.default_rng(seed)
    lengths = 3 + rng.poisson(mean_length - 3, size=num_users)
    num_clusters = -(-num_items // cluster_size)
    sizes = np.full(num_clusters, cluster_size, dtype=np.int64)
    sizes[-1] = num_items - cluster_size * (num_clusters - 1)
    cdf = np.cumsum(np.arange(1, num_clusters + 1, dtype=np.float64) ** -float(exponent))
    cdf /= cdf[-1]

    def item_in(clusters):
        return clusters * cluster_size + 1 + (rng.random(len(clusters)) * sizes[clusters]).astype(np.int64)

    def popular_cluster(n):
        return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), num_clusters - 1)

    longest = int(lengths.max())
    cluster = popular_cluster(num_users)
    out = np.zeros((num_users, longest), dtype=np.int32)
    out[:, 0] = item_in(cluster)
    for t in range(1, longest):
        alive = np.flatnonzero(lengths > t)
        jump = rng.random(len(alive)) >= stay
        cluster[alive[jump]] = popular_cluster(int(jump.sum()))
        out[alive, t] = item_in(cluster[alive])
    items = out[np.arange(longest)[None, :] < lengths[:, None]]  # row-major: users back to back
    return _sequence_data(lengths, items, num_items, f"<clustered_sessions users={num_users} items={num_items}>")

"""Export a trained SASRec/FAME as a TensorFlow SavedModel that TF Serving can serve.

The export needs the TensorFlow backend (`KERAS_BACKEND=tensorflow`, the
default); a model trained on JAX is exported by loading its `.keras` file in
a TensorFlow-backend process (`python -m keras_fame.export`).

Signature `serving_default`:
    input  `item_ids`: int32 `[batch, any length]`, each user's history,
           oldest first, 0 = padding (anywhere in the row).
    output `item_ids`: int32 `[batch, k]`, best first.
           `scores`: float32 `[batch, k]`, the model's scores (logits).
           `head_weights`: float32 `[batch, heads]`, FAME only: the gate
           over facets (the paper's case-study explanation).
Signature `explain` (FAME, with `explain=True`): the above plus
    `head_item_ids` int32 `[batch, heads, k]` and `head_scores` float32, each
    head's own top-k.

Signatures `serving_strings` (and `explain_strings` for FAME), with an id
mapping (`item_ids=`, e.g. the `item_ids.json` of a model trained from
`--interactions-csv`): the same ranking in the user's own string ids.
    input  `item_ids`: string `[batch, any length]`, "" = padding.
    output `item_ids`: string `[batch, k]`; `scores`, `head_weights` (and
           `head_item_ids` string, `head_scores`) as above; `unknown_items`
           int32 `[batch]`, how many non-empty input ids of the row are not
           in the mapping: they are dropped (treated as padding).
The mapping lives inside the graph (a `tf.lookup.StaticHashTable` from the
user's ids to the model's, and a string table back), so clients never
translate ids.

Inside the signature:
- ids outside `1..num_items` are treated as padding (never a crash, never an
  out-of-range gather);
- the remaining items are packed to the right (so zeros may sit anywhere)
  and only the most recent `max_len` are fed to the model;
- with `exclude_seen` (default, as in the evaluation's `exclude_history`),
  every item of the whole input row is left out of the top-k;
- the padding id 0 is never returned (`k <= num_items` is required);
- an all-padding row gets the model's ranking for an empty history: the
  same list for every such row, computed from the weights alone (no
  popularity prior is added).
"""

import os
import re
import shutil
import tempfile

import keras

from keras_fame.models.retrieval import ItemTableSnapshot

_VERSION_DIR = re.compile(r"^\d+$")


def next_version(base_dir):
    """One more than the largest integer version folder in `base_dir` (1 if none)."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(n) for n in os.listdir(base_dir) if _VERSION_DIR.match(n)]
    return max(versions, default=0) + 1


def serving_functions(model, k=20, exclude_seen=True, chunk_size=None):
    """The TensorFlow functions behind the signatures (also used by the tests).

    Both wrap `model.ranker(...)`, the ranking model `recommend()` runs, so
    the served top-k is `recommend()`'s by construction. Where the item
    table is computed from several weights (item facets, a content table,
    norm-bounded offsets), both score against one `ItemTableSnapshot` taken
    now, so a request does not rebuild the `[num_items + 1, d]` table.

    Returns:
        `(serve, explain, snapshot)`: `tf.function`s taking `item_ids`;
        `explain` is None for SASRec; `snapshot` the `ItemTableSnapshot`
        (None where the table is a bare variable), whose weight the export
        tracks.
    """
    import tensorflow as tf

    snapshot = ItemTableSnapshot(model, name="item_table_snapshot") if model.item_embedding.computes_table else None
    ranker = model.ranker(k=k, exclude_seen=exclude_seen, chunk_size=chunk_size, table_snapshot=snapshot)
    is_fame = model.has_gates
    explainer = (model.ranker(k=k, exclude_seen=exclude_seen, explain=True, chunk_size=chunk_size,
                              table_snapshot=snapshot) if is_fame else None)
    spec = tf.TensorSpec(shape=(None, None), dtype=tf.int32, name="item_ids")

    @tf.function(input_signature=[spec])
    def serve(item_ids):
        return ranker(item_ids, training=False)

    explain = None
    if is_fame:

        @tf.function(input_signature=[spec])
        def explain(item_ids):
            return explainer(item_ids, training=False)

    return serve, explain, snapshot


def check_item_id_mapping(item_ids, num_items):
    """`item_ids` (dict internal id -> the user's id, or a sequence whose entry `i - 1` is item `i`'s id) as a list.

    Returns the `num_items + 1` strings indexed by internal id ("" for the
    padding id 0). Raises `ValueError` for a missing, repeated or empty id.
    """
    if isinstance(item_ids, dict):
        mapping = {int(k): str(v) for k, v in item_ids.items()}
    else:
        mapping = {i + 1: str(v) for i, v in enumerate(item_ids)}
    missing = [i for i in range(1, num_items + 1) if i not in mapping]
    if missing:
        raise ValueError(f"the item id mapping has no id for item {missing[0]} (it must cover 1..{num_items})")
    vocabulary = [""] + [mapping[i] for i in range(1, num_items + 1)]
    if "" in vocabulary[1:]:
        raise ValueError(f"item {vocabulary.index('', 1)} maps to the empty string, which means padding")
    if len(set(vocabulary)) != len(vocabulary):
        seen = set()
        repeated = next(v for v in vocabulary if v in seen or seen.add(v))
        raise ValueError(f"the item id {repeated!r} is given to two items")
    return vocabulary


def string_serving_functions(model, item_ids, serve, explain):
    """The signatures in the user's string ids: `(serve_strings, explain_strings, lookup table)`.

    `serve` and `explain` are `serving_functions`' (the integer-id
    signatures these translate). `explain_strings` is None for SASRec. The
    table must be tracked by the export so that it is saved with the graph.
    """
    import numpy as np
    import tensorflow as tf

    vocabulary = check_item_id_mapping(item_ids, model.num_items)
    names = tf.constant(vocabulary)  # internal id -> the user's id
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabulary[1:]), tf.constant(np.arange(1, model.num_items + 1, dtype=np.int64))
        ),
        default_value=0,
    )
    spec = tf.TensorSpec(shape=(None, None), dtype=tf.string, name="item_ids")

    def translated(ranked, item_ids):
        internal = table.lookup(item_ids)
        unknown = tf.logical_and(tf.not_equal(item_ids, ""), tf.equal(internal, 0))
        out = dict(ranked(tf.cast(internal, tf.int32)))
        for key in ("item_ids", "head_item_ids"):
            if key in out:
                out[key] = tf.gather(names, out[key])
        out["unknown_items"] = tf.reduce_sum(tf.cast(unknown, tf.int32), axis=1)
        return out

    @tf.function(input_signature=[spec])
    def serve_strings(item_ids):
        return translated(serve, item_ids)

    explain_strings = None
    if explain is not None:

        @tf.function(input_signature=[spec])
        def explain_strings(item_ids):
            return translated(explain, item_ids)

    return serve_strings, explain_strings, table


def export_saved_model(
    model, base_dir, k=20, version=None, exclude_seen=True, explain=True, chunk_size=None, item_ids=None
):
    """Writes `model` as a SavedModel to `<base_dir>/<version>/` (TF Serving's layout).

    Written atomically: to a temporary folder beside the target, then
    renamed. An existing version is never overwritten.

    Args:
        model: a `SASRec` or `FAME`.
        base_dir: the model's base folder, as given to TF Serving.
        k: items returned per row.
        version: int; default one more than the largest existing version.
        exclude_seen: leave each row's input items out of the top-k.
        explain: FAME only: add the `explain` signature (per-head top-k).
        chunk_size: score the items this many at a time with a running
            top-k inside the signature (large catalogs; `model.ranker`).
        item_ids: optional id mapping (dict internal id -> the user's id,
            e.g. from `keras_fame.data.preprocess.load_item_ids`): adds the
            string-id signatures `serving_strings` / `explain_strings`.

    Returns:
        The version folder written.

    Raises:
        RuntimeError: if the Keras backend is not TensorFlow.
        FileExistsError: if the version folder exists.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "SavedModel export needs KERAS_BACKEND=tensorflow (found "
            f"{keras.backend.backend()!r}): save the model as .keras and run "
            "`python -m keras_fame.export model.keras OUT_DIR` in a TensorFlow-backend process"
        )
    version = next_version(base_dir) if version is None else int(version)
    target = os.path.join(base_dir, str(version))
    if os.path.exists(target):
        raise FileExistsError(f"{target} exists: choose another version (TF Serving versions never change)")
    os.makedirs(base_dir, exist_ok=True)
    serve, explain_fn, snapshot = serving_functions(model, k=k, exclude_seen=exclude_seen, chunk_size=chunk_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if snapshot is not None:
        archive.track(snapshot)
    archive.add_endpoint(name="serving_default", fn=serve)
    if explain and explain_fn is not None:
        archive.add_endpoint(name="explain", fn=explain_fn)
    if item_ids is not None:
        serve_strings, explain_strings, table = string_serving_functions(model, item_ids, serve, explain_fn)
        archive.track(table)
        archive.add_endpoint(name="serving_strings", fn=serve_strings)
        if explain and explain_strings is not None:
            archive.add_endpoint(name="explain_strings", fn=explain_strings)
    tmp = tempfile.mkdtemp(prefix=f".{version}.tmp-", dir=base_dir)
    try:
        archive.write_out(tmp, verbose=False)
        if os.path.exists(target):
            raise FileExistsError(f"{target} appeared during the export")
        os.rename(tmp, target)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return target

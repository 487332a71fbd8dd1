"""Text-enhanced facet-aware pre-training of item embeddings (FAME+, 2026).

The 2026 version of FAME adds a pre-training stage that turns item text
into item embeddings "semantically robust and aligned with the downstream
multi-facet framework", with "an alternating supervised contrastive learning
objective". No code was published; this module is our reading of it, and
every choice is written down here:

- **Input**: frozen text-encoder embeddings of each item's text
  (`keras_fame.pretraining.embed_texts`), standardised per dimension
  (mean/variance from `adapt`, a diagonal whitening).
- **Heads**: `H` projection heads, one per facet, each a small MLP
  (`head_layers` Dense+GELU layers of width `head_hidden_dim`, then a
  linear map to `d' = d / H`), output L2-normalised. Head `h` is organised
  by facet `facets_for_heads(H)[h]` (brand, category levels).
- **Objective**: alternating supervised contrastive (SupCon, Khosla et
  al. 2020, the "L_out" form). Step `t` trains head `k = t mod H` on a batch
  of items that all have a label for facet `k`, sampled `samples_per_label`
  per label so every anchor has positives; positives are the other items
  with the same facet-`k` label, the denominator all other batch items.
  Only head `k` receives gradient, and the default optimizer
  (`keras_fame.optimizers.LazyAdam`) leaves a variable and its moments
  untouched when its gradient is exactly zero, so a step for facet `k`
  changes head `k`'s weights only.
- **Output**: `item_table(features)` concatenates the heads' unit vectors
  into `[n, H d']`, each scaled by `output_std * sqrt(d')` so every entry has
  RMS `output_std` (0.02, the std of the sequence models' embedding
  initialiser) and every head carries the same norm. Row `h` of the table's
  column block `h` is what FAME's head `h` scores with when `W_f` starts as
  the head-slice identity, so the facet heads line up with the text facets.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_fame.data.item_text import facets_for_heads
from keras_fame.layers.item_scores import PADDING_SCORE
from keras_fame.optimizers import LazyAdam
from keras_fame.validation import MODEL_KWARGS, no_unknown_kwargs, non_negative_int, positive_float, positive_int, rate


def supervised_contrastive_loss(embeddings, labels, temperature=0.1):
    """SupCon loss (Khosla et al. 2020, Eq. 2, "L_out") over one batch.

    For each anchor `i` with at least one positive,
    `-1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / T) / sum_{a != i} exp(z_i.z_a / T))`,
    averaged over those anchors. `P(i)`: the other items with the same
    label; the denominator runs over all other items with a label. Items
    labelled `-1` take no part. With no anchor having a positive the loss is 0.

    Args:
        embeddings: `[batch, dim]`, L2-normalised.
        labels: int `[batch]`, `-1` = no label.
        temperature: float `T`.

    Returns:
        A scalar.

    Example:
    >>> z = ops.convert_to_tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> round(float(supervised_contrastive_loss(z, ops.convert_to_tensor([0, 0, 1]), 1.0)), 4)
    0.3133
    """
    labels = ops.cast(labels, "int32")
    n = ops.shape(embeddings)[0]
    logits = ops.matmul(embeddings, ops.transpose(embeddings)) / temperature
    valid = labels >= 0
    not_self = ops.logical_not(ops.cast(ops.eye(n), "bool"))
    both = ops.logical_and(valid[:, None], valid[None, :])
    candidates = ops.logical_and(not_self, both)
    positives = ops.logical_and(candidates, ops.equal(labels[:, None], labels[None, :]))
    masked = ops.where(candidates, logits, ops.cast(PADDING_SCORE, logits.dtype))
    log_prob = logits - ops.logsumexp(masked, axis=1, keepdims=True)
    positives_f = ops.cast(positives, logits.dtype)
    count = ops.sum(positives_f, axis=1)
    per_anchor = -ops.sum(ops.where(positives, log_prob, 0.0), axis=1) / ops.maximum(count, 1.0)
    anchors = ops.cast(count > 0, logits.dtype)
    return ops.sum(per_anchor * anchors) / ops.maximum(ops.sum(anchors), 1.0)


@keras.saving.register_keras_serializable(package="keras_fame")
class FacetContrastivePretrainer(keras.Model):
    """Facet-aligned item embeddings from text, by alternating SupCon (FAME+).

    See the module docstring for the design. `call` maps text features
    `[batch, text_dim]` to per-head unit vectors `[batch, H, d']`;
    `item_table` gives the scaled `[n, H d']` embeddings a `SASRec`/`FAME`
    item table starts from. Train with `fit` on `FacetBatches`.

    Args:
        num_heads: int, `H`.
        head_dim: int, `d'` (the sequence model's `d / H`).
        head_hidden_dim: int, width of each head's hidden layers.
        head_layers: int, hidden Dense+GELU layers per head (0 = linear).
        temperature: float, SupCon temperature.
        output_std: float, RMS of the entries of `item_table`.
        dropout: float, on the standardised text features during training.

    Call arguments:
        inputs: text features `[batch, text_dim]`, or a dict with `"text"`
            (and `"facet"`, `[batch]` int, the facet every row of the batch
            trains, used by the loss).

    Returns:
        `[batch, num_heads, head_dim]`, L2-normalised per head.

    Example:
    >>> model = FacetContrastivePretrainer(num_heads=2, head_dim=4, head_hidden_dim=8)
    >>> tuple(model(np.ones((3, 6), "float32")).shape)
    (3, 2, 4)
    """

    def __init__(
        self,
        num_heads,
        head_dim,
        head_hidden_dim=256,
        head_layers=1,
        temperature=0.1,
        output_std=0.02,
        dropout=0.1,
        **kwargs,
    ):
        no_unknown_kwargs(type(self).__name__, kwargs, MODEL_KWARGS)
        super().__init__(**kwargs)
        self.num_heads = positive_int("num_heads", num_heads)
        self.head_dim = positive_int("head_dim", head_dim)
        self.head_hidden_dim = positive_int("head_hidden_dim", head_hidden_dim)
        self.head_layers = non_negative_int("head_layers", head_layers)
        self.temperature = positive_float("temperature", temperature)
        self.output_std = positive_float("output_std", output_std)
        self.dropout = rate("dropout", dropout)
        self.facets = facets_for_heads(self.num_heads)
        self.standardize = keras.layers.Normalization(axis=-1, name="standardize", dtype=self.dtype_policy)
        self.input_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.heads = [
            [
                *(
                    keras.layers.Dense(
                        self.head_hidden_dim, activation="gelu", name=f"head_{h}_hidden_{i}", dtype=self.dtype_policy
                    )
                    for i in range(self.head_layers)
                ),
                keras.layers.Dense(self.head_dim, name=f"head_{h}_out", dtype=self.dtype_policy),
            ]
            for h in range(self.num_heads)
        ]

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["text"]
        text_dim = input_shape[-1]
        if not self.standardize.built:
            self.standardize.build((None, text_dim))
        for layers in self.heads:
            width = text_dim
            for layer in layers:
                layer.build((None, width))
                width = layer.units
        self.built = True

    def adapt(self, text_features):
        """Sets the per-dimension mean/variance used to standardise the text features."""
        self.standardize.adapt(np.asarray(text_features, dtype="float32"))

    def call(self, inputs, training=None):
        text = inputs["text"] if isinstance(inputs, dict) else inputs
        x = self.input_dropout(self.standardize(ops.cast(text, "float32")), training=training)
        outputs = []
        for layers in self.heads:
            h = x
            for layer in layers:
                h = layer(h)
            outputs.append(h)
        stacked = ops.stack(outputs, axis=1)  # [batch, H, d']
        return stacked / ops.maximum(ops.norm(stacked, axis=-1, keepdims=True), 1e-12)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """SupCon on the head of the batch's facet only (the alternation)."""
        facet = ops.cast(x["facet"][0], "int32")
        head = ops.take(y_pred, facet, axis=1)  # [batch, d']: gradient reaches head `facet` only
        return supervised_contrastive_loss(head, y, self.temperature)

    def compile(self, optimizer=None, **kwargs):
        """Defaults to `LazyAdam(1e-3)` (see the module docstring)."""
        super().compile(optimizer=optimizer or LazyAdam(learning_rate=1e-3), **kwargs)

    def compile_from_config(self, config):
        # Restores the compiled state of a saved pre-trainer (Keras skips this for
        # models that override `compile`).
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def item_table(self, text_features, batch_size=4096):
        """Scaled embeddings `[n, H d']` for text features `[n, text_dim]` (no padding row)."""
        scale = self.output_std * math.sqrt(self.head_dim)
        parts = []
        for i in range(0, len(text_features), batch_size):
            out = self(np.asarray(text_features[i : i + batch_size], "float32"), training=False)
            parts.append(np.asarray(ops.reshape(out, (-1, self.num_heads * self.head_dim))) * scale)
        return np.concatenate(parts).astype("float32")

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "head_hidden_dim": self.head_hidden_dim,
            "head_layers": self.head_layers,
            "temperature": self.temperature,
            "output_std": self.output_std,
            "dropout": self.dropout,
        }


class FacetBatches(keras.utils.PyDataset):
    """Alternating facet batches for `FacetContrastivePretrainer.fit`.

    Batch `t` trains facet `k = t mod H`: it holds `batch_size` items that
    have a facet-`k` label, drawn `samples_per_label` per label (labels
    with at least 2 items, chosen at random each batch) so every anchor has
    positives. `x = {"text": [batch, text_dim], "facet": [batch]}`,
    `y = [batch]` labels. Reproducible from `seed`.

    Args:
        text_features: `[num_items + 1, text_dim]` (row 0 unused).
        head_labels: int `[num_items + 1, H]`, `-1` = no label
            (`ItemText.head_labels(H)`).
        batch_size: items per batch.
        samples_per_label: items drawn per label.
        steps_per_epoch: default `H * ceil(num_items / batch_size)`.
        seed: int.
    """

    def __init__(self, text_features, head_labels, batch_size=256, samples_per_label=4, steps_per_epoch=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.text_features = np.asarray(text_features, dtype="float32")
        head_labels = np.asarray(head_labels)
        if head_labels.ndim != 2 or len(head_labels) != len(self.text_features):
            raise ValueError(f"head_labels {head_labels.shape} must be [num_items + 1, H] like text_features")
        self.num_heads = head_labels.shape[1]
        self.head_labels = head_labels
        self.batch_size = int(batch_size)
        self.samples_per_label = int(samples_per_label)
        self.seed = int(seed)
        self.epoch = 0
        self._groups = []
        for h in range(self.num_heads):
            labels = head_labels[1:, h]
            items = np.flatnonzero(labels >= 0) + 1
            order = np.argsort(labels[items - 1], kind="stable")
            items = items[order]
            values, starts, counts = np.unique(labels[items - 1], return_index=True, return_counts=True)
            keep = counts >= 2
            if not keep.any():
                raise ValueError(f"facet of head {h}: no label is shared by two items, nothing to contrast")
            self._groups.append((items, starts[keep], counts[keep]))
        num_items = len(self.text_features) - 1
        self.steps = int(steps_per_epoch or self.num_heads * math.ceil(num_items / self.batch_size))

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        facet = index % self.num_heads
        rng = np.random.default_rng([self.seed, self.epoch, index])
        items, starts, counts = self._groups[facet]
        per = self.samples_per_label
        num_labels = min(len(starts), max(1, self.batch_size // per))
        chosen = rng.choice(len(starts), size=num_labels, replace=False)
        rows = []
        for c in chosen:
            take = min(per, counts[c])
            rows.append(items[starts[c] + rng.choice(counts[c], size=take, replace=False)])
        rows = np.concatenate(rows)[: self.batch_size]
        x = {"text": self.text_features[rows], "facet": np.full(len(rows), facet, dtype="int32")}
        return x, self.head_labels[rows, facet].astype("int32")

    def on_epoch_end(self):
        self.epoch += 1


def nearest_neighbour_agreement(table, labels, num_heads, sample=2000, seed=0):
    """Per head: how often an item's nearest neighbour (cosine, in that head's slice) shares its label.

    Args:
        table: `[num_items + 1, H d']` item embeddings (row 0 padding).
        labels: int `[num_items + 1]` labels of one facet, -1 = none.
        num_heads: `H`.
        sample: labelled items used as queries.
        seed: for the sample.

    Returns:
        `(per_head, chance)`: a list of `H` agreement rates, and the rate for a
        random neighbour (the label distribution's collision probability).
    """
    table = np.asarray(table, dtype=np.float64)[1:]
    labels = np.asarray(labels)[1:]
    labelled = np.flatnonzero(labels >= 0)
    rng = np.random.default_rng(seed)
    queries = rng.choice(labelled, size=min(sample, len(labelled)), replace=False)
    head_dim = table.shape[1] // num_heads
    per_head = []
    for h in range(num_heads):
        part = table[labelled, h * head_dim : (h + 1) * head_dim]
        part = part / np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        position = np.searchsorted(labelled, queries)
        sims = part[position] @ part.T
        sims[np.arange(len(queries)), position] = -np.inf
        nearest = labelled[np.argmax(sims, axis=1)]
        per_head.append(float(np.mean(labels[nearest] == labels[queries])))
    _, counts = np.unique(labels[labelled], return_counts=True)
    chance = float(np.sum((counts / counts.sum()) ** 2))
    return per_head, chance

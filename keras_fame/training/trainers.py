"""Trainers: wrap a built `SASRec`/`FAME` to fit it with another objective; the wrapped model's weights train.

- `AllPositionsTrainer`: the full softmax at every position (as `model.fit`),
  plus the auxiliary facet and routing losses;
- `LastPositionTrainer`: the full softmax at the newest position only (every-prefix rows);
- `SampledSoftmaxTrainer`: a sampled softmax over shared candidates
  (`keras_fame.data.SampledBatches`, `keras_fame.losses.sampled_logits`).

Every score is the head's `user` vector against rows of the item table
(`keras_fame.models.retrieval`). Ranking callbacks (`FullRankingEvaluation`)
use the wrapped model's `scorer()`. Save the wrapped model, not the trainer.
"""

import keras
import numpy as np  # noqa: F401  (doctest)

from keras_fame.layers.item_scores import mask_padding_scores, score_items
from keras_fame.losses import (  # noqa: F401
    MaskedSoftmaxCrossEntropy,
    facet_cross_entropy,
    mixture_routing_loss,
    replica_share,
    sampled_logits,
)
from keras_fame.models.retrieval import facet_logits


class RecommenderTrainer(keras.Model):
    """Base of the trainers: the wrapped `recommender`, its `encoder` and scoring `head`, and the auxiliary losses.

    The `encoder` maps item ids to the recommender's `(features, item_table)`;
    it and the `head` share the recommender's layers. Subclasses define
    `call`.

    Args:
        recommender: a built `SASRec` or `FAME`.
        facet_loss_weight: float >= 0, the weight `lambda` of the auxiliary
            facet loss (`keras_fame.losses.facet_cross_entropy`): the total
            loss is `L_rec + lambda L_facet`; > 0 needs a model built with
            `item_facets`. Defaults to 0 (the recommendation loss alone).
        routing_loss_weight: float >= 0, the weight `mu` of the routing
            loss (`keras_fame.losses.mixture_routing_loss`, FAME only): the
            total loss gains `mu L_route`, where each head's own softmax over
            the items is an expert and the gate mixes their probabilities.
            Defaults to 0.
    """

    head_logits_sampled = False  # True where the routing loss's head logits hold the target in column 0

    def __init__(self, recommender, facet_loss_weight=0.0, routing_loss_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        features, item_table, head = recommender._head_wiring
        for name, value in (("facet_loss_weight", facet_loss_weight), ("routing_loss_weight", routing_loss_weight)):
            if not float(value) >= 0:
                raise ValueError(f"{name}={value} must be a non-negative number")
        if facet_loss_weight and not recommender.item_embedding.facet_labels:
            raise ValueError("facet_loss_weight > 0 needs a model built with item_facets")
        if routing_loss_weight and not getattr(head, "has_gates", False):
            raise ValueError("routing_loss_weight > 0 needs a gated head (FAME); this model has one query per user")
        self.facet_loss_weight = float(facet_loss_weight)
        self.routing_loss_weight = float(routing_loss_weight)
        self.recommender = recommender
        self.encoder = keras.Model(recommender.inputs, [features, item_table], name="encoder")
        self.head = head
        # Every weight belongs to the already built recommender, so the trainer is built too: a resumed
        # `fit` (`keras_fame.training.TrainingCheckpoint`) loads its checkpoint before any batch runs.
        self.built = True

    def scorer(self, explain=False):
        return self.recommender.scorer(explain=explain)

    @property
    def num_items(self):
        return self.recommender.num_items

    @property
    def _auxiliary(self):
        return bool(self.facet_loss_weight or self.routing_loss_weight)

    def _outputs(self, logits, vectors, head_logits=None):
        """What `call` returns: the logits, or with an auxiliary loss a dict of what the losses read.

        `head_logits` (routing loss): each head's own logits, `[..., H, W]`,
        full-softmax (`W = num_items + 1`, the target read at its id) or
        sampled (`W = 1 + C`, the target in column 0: `head_logits_sampled`).
        """
        if not self._auxiliary:
            return logits
        outputs = {"logits": logits}
        if self.facet_loss_weight:
            embedding = self.recommender.item_embedding
            count = len(embedding.facet_labels)
            rows = [embedding.facet_rows(k) for k in range(count)]
            outputs["facet_logits"] = facet_logits(self.head.facet_queries(vectors, count), rows)
        if self.routing_loss_weight:
            outputs["head_logits"] = head_logits
            outputs["gates"] = vectors["gates"]
        return outputs

    def _full_head_logits(self, vectors, table):
        """Each head's own full-softmax logits `[..., H, num_items + 1]`, only when the routing loss reads them."""
        if not self.routing_loss_weight:
            return None
        return mask_padding_scores(score_items(vectors["head_users"], table))

    def _score_positions(self, features, item_table, training=None):
        """Full-softmax logits `[..., num_items + 1]` and the head's query vectors."""
        vectors = self.head.user_vectors(features, training=training)
        table = keras.ops.cast(item_table, vectors["user"].dtype)
        return mask_padding_scores(score_items(vectors["user"], table)), vectors, self._full_head_logits(vectors, table)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The recommendation loss, plus `facet_loss_weight` times the facet loss (`facet_cross_entropy`)
        and `routing_loss_weight` times the routing loss (`mixture_routing_loss`)."""
        if not isinstance(y_pred, dict):
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred["logits"], sample_weight=sample_weight, training=training)
        targets = keras.ops.cast(y, "int32")
        auxiliary = 0.0
        if self.facet_loss_weight:
            labels = [keras.ops.take(v, targets, axis=0) for v in self.recommender.item_embedding.facet_labels]
            auxiliary = auxiliary + self.facet_loss_weight * facet_cross_entropy(y_pred["facet_logits"], labels)
        if self.routing_loss_weight:
            log_p = keras.ops.log_softmax(keras.ops.cast(y_pred["head_logits"], "float32"), axis=-1)  # [..., H, W]
            if self.head_logits_sampled:  # the target in column 0
                target_log_p = log_p[..., 0]
            else:
                index = keras.ops.broadcast_to(targets[..., None, None], (*keras.ops.shape(log_p)[:-1], 1))
                target_log_p = keras.ops.take_along_axis(log_p, index, axis=-1)[..., 0]
            auxiliary = auxiliary + self.routing_loss_weight * mixture_routing_loss(target_log_p, y_pred["gates"], targets)
        # Terms added here, unlike the compiled loss, are not divided by tf.distribute's replicas by Keras.
        return loss + replica_share(auxiliary)


class AllPositionsTrainer(RecommenderTrainer):
    """The full softmax at every position, like `model.fit` on the recommender, plus the facet loss.

    `model.fit` on the recommender trains the recommendation loss only; the
    facet loss needs the targets, which a trainer's `compute_loss` sees.

    Example:
    >>> from keras_fame.models import SASRec
    >>> model = SASRec(num_items=20, hidden_dim=8, max_len=5, item_facets=[np.arange(21) % 3])
    >>> trainer = AllPositionsTrainer(model, facet_loss_weight=0.5)
    >>> trainer.compile(optimizer="adam", loss=MaskedSoftmaxCrossEntropy())
    >>> x = np.array([[0, 1, 2, 3, 4]], "int32")
    >>> float(trainer.train_on_batch(x, np.array([[0, 2, 3, 4, 5]]))) > 0
    True
    """

    def call(self, inputs, training=None):
        features, item_table = self.encoder(inputs, training=training)
        return self._outputs(*self._score_positions(features, item_table, training=training))


class LastPositionTrainer(RecommenderTrainer):
    """The full softmax at the newest position only, for every-prefix rows (`keras_fame.data.every_prefix_rows`).

    There only the last column holds a target: the wrapped model would
    score every position, `[batch, seq, num_items + 1]`, to use one. This
    trainer runs the same encoder and head on the last position alone,
    `[batch, 1, num_items + 1]` (the head is position-wise, so the logits
    and their gradients are the same), and the loss reads the targets' last
    column. With `V` items and `seq`-long buckets that saves `(seq - 1) V d`
    multiply-adds per row.
    """

    def call(self, inputs, training=None):
        features, item_table = self.encoder(inputs, training=training)
        last = keras.tree.map_structure(lambda x: x[:, -1:], features)  # FAME's gate context too, if any
        if not self._auxiliary:
            return self.head(last, item_table, training=training)
        return self._outputs(*self._score_positions(last, item_table, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is not None:
            y = y[:, -1:]
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


class SampledSoftmaxTrainer(RecommenderTrainer):
    """A sampled softmax: each position's target against the batch's shared candidates.

    Takes `keras_fame.data.SampledBatches`' input dict and returns
    `keras_fame.losses.sampled_logits` of the head's `user` vectors at
    every position against the targets' and candidates' rows of the item
    table (FAME's projection sits on the query side, and
    `ItemEmbedding.rows` fuses facets and content into those rows only, so
    no `[num_items + 1, d]` table is built per step). Compile it with
    `keras_fame.losses.SampledSoftmaxCrossEntropy`.
    """

    head_logits_sampled = True

    def call(self, inputs, training=None):
        features, item_table = self.encoder(inputs["item_ids"], training=training)
        vectors = self.head.user_vectors(features, training=training)
        dtype = vectors["user"].dtype
        embedding = self.recommender.item_embedding
        if embedding.draws_whole_table(training):
            items = keras.ops.cast(item_table, dtype)  # this step's one offset draw, shared with the input side
        else:  # only the targets' and candidates' rows: no [V, d] table is built (compiled graphs drop it)
            items = lambda ids: keras.ops.cast(embedding.rows(ids), dtype)  # noqa: E731
        sampled = lambda user: sampled_logits(  # noqa: E731
            user, items, inputs["targets"], inputs["candidates"], inputs["candidate_log_q"], inputs["target_log_q"]
        )
        head_logits = None
        if self.routing_loss_weight:  # each head against the same candidates, [b, t, H, 1 + C]
            head_logits = keras.ops.stack(
                [sampled(vectors["head_users"][..., h, :]) for h in range(self.head.num_heads)], axis=-2
            )
        return self._outputs(sampled(vectors["user"]), vectors, head_logits)

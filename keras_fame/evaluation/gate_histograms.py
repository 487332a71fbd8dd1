"""TensorBoard histograms of FAME's gate and router weights, per epoch."""

import os

import keras
import numpy as np

from keras_fame.utils import predict_rows


class GateHistograms(keras.callbacks.Callback):
    """Writes FAME's gate weights (per head) and router weights (per head and expert) to TensorBoard.

    At the end of every epoch the model scores a fixed sample of histories
    (e.g. validation rows) at their newest position and logs, under
    `log_dir`:

    - `gate/head_h`: the distribution over users of the gate weight `g_h`
      (Eq. 10) of head `h`; heads that specialise show wide or bimodal
      histograms, a gate that ignores the user stays at `1/H`;
    - `router/head_h/expert_n`: the distribution of the router weight of
      expert `n` within head `h` (Eq. 8) at the newest position; experts a
      head never uses sit at 0;
    - `gate_entropy` and `router_entropy`: mean entropies (scalars), which
      fall as the gate and routers become decisive.

    Keras' own `TensorBoard` callback logs the loss and the validation
    metrics (put it after `FullRankingEvaluation` to see those); it cannot
    log these, which are outputs of inner layers, so this callback reads
    them from the model's `scorer(explain=True)`. SASRec has neither and is
    skipped.
    Writing needs TensorFlow installed (any backend trains).

    Args:
        log_dir: folder for the event files (e.g. the same as `TensorBoard`'s).
        item_ids: int `[rows, seq]` left-padded histories to score (a few
            hundred rows are plenty).
        batch_size: rows per forward pass.
    """

    def __init__(self, log_dir, item_ids, batch_size=256):
        super().__init__()
        self.log_dir = log_dir
        self.item_ids = np.asarray(item_ids, dtype="int32")
        self.batch_size = int(batch_size)
        self._writer = None

    def weights_for(self, item_ids):
        """`(gate [rows, H], router [rows, H, N])` of the model at each row's newest position."""
        scorer = self._recommender().scorer(explain=True)
        gates, routers = [], []
        for start in range(0, len(item_ids), self.batch_size):
            out = predict_rows(scorer, item_ids[start : start + self.batch_size])
            gates.append(out["head_weights"])
            routers.append(out["router_weights"])
        return np.concatenate(gates), np.concatenate(routers)

    def _recommender(self):
        # A trainer (`keras_fame.training`) trains a wrapped model: log that model's gates.
        return getattr(self.model, "recommender", self.model)

    def on_epoch_end(self, epoch, logs=None):
        if not self._recommender().has_gates:
            return
        import tensorflow as tf  # lazily: only writing the events needs TensorFlow

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "facets"))
        gate, router = self.weights_for(self.item_ids)
        with self._writer.as_default(step=epoch):
            for h in range(gate.shape[1]):
                tf.summary.histogram(f"gate/head_{h}", gate[:, h])
                for n in range(router.shape[2]):
                    tf.summary.histogram(f"router/head_{h}/expert_{n}", router[:, h, n])
            tf.summary.scalar("gate_entropy", float(-(gate * np.log(gate + 1e-12)).sum(axis=1).mean()))
            tf.summary.scalar("router_entropy", float(-(router * np.log(router + 1e-12)).sum(axis=2).mean()))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

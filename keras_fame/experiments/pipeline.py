"""The paper's staged pipeline (§4.4.2), resumable: text start -> SASRec -> transplant -> FAME -> test.

`PipelineConfig` holds the one set of defaults; the command line
(`keras_fame.experiments.cli`) takes its defaults from it and `run_pipeline`
accepts it (or overrides of its fields).
"""

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from keras_fame.data import leave_one_out, read_sequences
from keras_fame.experiments.reporting import (
    PAPER_FAME,
    format_comparison,
    machine_description,
    provenance,
    write_json_atomic,
)
from keras_fame.models import FAME, SASRec
from keras_fame.evaluation import evaluate_test_set
from keras_fame.training import fit_with_early_stopping
from keras_fame.layers.facet_gated_head import HeadSliceIdentity
from keras_fame.layers.item_embedding import FACET_FUSIONS
from keras_fame.data.sampled_batches import SAMPLERS
from keras_fame.distribution import MODES as DISTRIBUTE_MODES, distributed
from keras_fame.utils import dtype_policy, json_default, replace_atomically, save_model_atomic, set_deterministic
from keras_fame.validation import divisible, non_negative_float, non_negative_int, positive_float, positive_int, rate


@dataclasses.dataclass(frozen=True)
class TextStart:
    """How the item table starts from item text (FAME+, `keras_fame.pretraining`).

    Attributes:
        mode: `"pca"` (PCA of the text embeddings, the plain start) or
            `"facet"` (`FacetContrastivePretrainer`, alternating SupCon per
            facet; one head per SASRec/FAME head).
        frozen: keep the text table frozen and learn a per-item ID offset
            (`item_content=True`) instead of training the table from the
            text start.
        item_text_file: the `*_item_text.jsonl` file.
        cache_dir: where text embeddings are cached.
        epochs, temperature, head_layers, head_hidden_dim, learning_rate:
            of the facet pre-training.
        whiten: PCA only: equalise the components' variances.
    """

    mode: str
    item_text_file: str
    frozen: bool = False
    cache_dir: str = ".cache/text"
    epochs: int = 20
    temperature: float = 0.1
    head_layers: int = 1
    head_hidden_dim: int = 256
    learning_rate: float = 1e-3
    whiten: bool = False

    def __post_init__(self):
        if self.mode not in ("pca", "facet"):
            raise ValueError(f"text start mode {self.mode!r} is not 'pca' or 'facet'")


def text_item_table(text_start, num_items, hidden_dim, num_heads, seed=0, verbose=1, encoder=None, save_pretrainer=None):
    """Reads item text, embeds it (cached) and builds the `[num_items + 1, d]` start table.

    `encoder` is passed to `embed_texts` (default: all-MiniLM-L6-v2). With
    `save_pretrainer` (a `.keras` path) the trained pre-trainer is saved
    there, to embed items added later (`add_items_from_text`).

    Returns:
        `(table, report)`; the report holds the text statistics, the
        encoder's time, and for `"facet"` the pre-training's time, loss
        and per-head label agreement.
    """
    from keras_fame.data.item_text import read_item_text
    from keras_fame.pretraining import embed_texts, pca_item_table, pretrain_item_embeddings

    item_text = read_item_text(text_start.item_text_file, num_items=num_items)
    start = time.perf_counter()
    features = embed_texts(item_text.texts[1:], encoder=encoder, cache_dir=text_start.cache_dir, verbose=verbose)
    report = {
        "item_text_file": os.path.abspath(text_start.item_text_file),
        "attribute_only_items": len(item_text.attribute_only),
        "facet_coverage": item_text.coverage(),
        "text_embedding_seconds": time.perf_counter() - start,
        "text_dim": int(features.shape[1]),
    }
    if text_start.mode == "pca":
        table = pca_item_table(features, hidden_dim, whiten=text_start.whiten)
    else:
        table, report["pretraining"], pretrainer = pretrain_item_embeddings(
            features,
            item_text.head_labels(num_heads),
            hidden_dim,
            epochs=text_start.epochs,
            learning_rate=text_start.learning_rate,
            seed=seed,
            verbose=2 if verbose else 0,
            temperature=text_start.temperature,
            head_layers=text_start.head_layers,
            head_hidden_dim=text_start.head_hidden_dim,
            return_model=True,
        )
        if save_pretrainer:
            save_model_atomic(pretrainer, save_pretrainer)
            report["pretrainer"] = os.path.abspath(save_pretrainer)
    return table, report


# Settings of the FAME stage alone: a run folder whose results differ only in these keeps its text start
# and SASRec stage and trains FAME again.
FAME_STAGE_KEYS = frozenset({
    "num_heads", "num_experts", "fame_warmup_epochs", "fame_dropout", "item_projection_initializer",
    "fame_facet_loss_weight", "gate_temperature",
})


def _finished_stages(results_path, config):
    """The stages a previous run of this configuration finished (from its `results.json`), by name.

    Returns `(done, fame_changed)`: `done` maps stage names to their
    records (and `"config"` to the previous configuration); `fame_changed`
    says the previous run differs in FAME-stage settings (`FAME_STAGE_KEYS`)
    only, so its FAME stage is not in `done`. Any other difference raises
    `ValueError`.
    """
    if not os.path.isfile(results_path):
        return {}, False
    try:
        with open(results_path) as f:
            previous = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{results_path}: unreadable ({error}); remove it or start over with resume=False") from error
    now = json.loads(json.dumps(config, default=json_default))
    before = {key: previous.get("config", {}).get(key) for key in now}
    changed = sorted(key for key in now if before[key] != now[key])
    if set(changed) - FAME_STAGE_KEYS:
        raise ValueError(
            f"{results_path} is from a run with a different configuration "
            f"({', '.join(k for k in changed if k not in FAME_STAGE_KEYS)} differ); "
            "use another output folder, or start over (resume=False, --fresh)"
        )
    done = {"config": previous["config"], "provenance": previous.get("provenance", [])}
    if "machine" in previous:
        done["machine"] = previous["machine"]
    for stage in ("text_start", "sasrec", "fame"):
        if stage in previous and (stage == "text_start" or "test" in previous[stage]) and not (changed and stage == "fame"):
            done[stage] = previous[stage]
    return done, bool(changed)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Every setting of the staged pipeline, with the one set of defaults.

    The defaults are those of `make train` (Toys): the command line
    (`keras_fame.experiments.cli`) takes each flag's default from here, and
    a test checks that they agree. `results.json` records the run's values.

    Attributes:
        hidden_dim, num_blocks, max_len: SASRec/FAME size (`d`, `B`, `L`).
        num_heads, num_experts: FAME's `H` and `N`.
        sasrec_heads: attention heads of the SASRec stage (default `num_heads`).
        dropout: SASRec's dropout; `fame_dropout` FAME's (None: SASRec's).
        epochs, fame_epochs: most epochs of each stage (early stopping decides).
        patience: epochs without a better validation metric before stopping.
        learning_rate, batch_size, seed.
        every_n_epochs: validate every n epochs.
        skip_fame: stop after SASRec.
        fame_warmup_epochs: first train only FAME's fresh parts (not in the paper).
        item_projection_initializer: start of `W_f` (None: `HeadSliceIdentity`).
        text_start: a `TextStart` (item table from text), or None (random start).
        backbone: extra SASRec constructor arguments (`activation`,
            `intermediate_dim`, `kernel_initializer`, `layer_norm_epsilon`).
        every_prefix: one training row per (prefix, next item).
        monitor: the validation metric for early stopping and model selection.
        deterministic: same seed, machine and backend -> the same metrics.
        negatives, sampler: a sampled softmax instead of the full one
            (`keras_fame.data.SampledBatches`; None: full softmax, the paper's).
        mixed_precision: build SASRec and FAME with bf16 compute and
            float32 variables, float32 scores and loss
            (`keras_fame.utils.dtype_policy`; the text stage stays float32).
        item_facets: facet names (`keras_fame.data.FACETS`) fed to both
            models (`item_facets=`), read from `item_attributes_file`
            (default: `<sequence file stem>_item2attributes.json`); empty:
            no facets.
        facet_fusion: `"slice"` or `"sum"` (`ItemEmbedding`).
        facet_loss_weight: weight of the auxiliary facet loss in the SASRec
            stage; `fame_facet_loss_weight` in the FAME stage (None: the same).
        gate_temperature: FAME's gate temperature (`FacetGatedHead`).
        head_diagnostics_users: FAME stage: gate entropy and per-head
            validation NDCG@10 on this many users per epoch (0: off).
        distribute: None (one device), `"data"` or `"model"`
            (`keras_fame.distribution.distributed`); `model_devices`: the
            devices the item tables' rows are split over with `"model"`.
    """

    hidden_dim: int = 64
    num_heads: int = 2
    num_experts: int = 4
    num_blocks: int = 2
    max_len: int = 50
    dropout: float = 0.3
    sasrec_heads: int = None
    epochs: int = 60
    fame_epochs: int = 30
    learning_rate: float = 1e-3
    batch_size: int = 256
    patience: int = 5
    every_n_epochs: int = 1
    seed: int = 0
    skip_fame: bool = False
    fame_warmup_epochs: int = 0
    fame_dropout: float = 0.5
    item_projection_initializer: object = None
    text_start: TextStart = None
    backbone: dict = None
    every_prefix: bool = False
    monitor: str = "val_ndcg@10"
    deterministic: bool = False
    negatives: int = None
    sampler: str = "uniform"
    mixed_precision: bool = False
    item_facets: tuple = ()
    item_attributes_file: str = None
    facet_fusion: str = "slice"
    facet_loss_weight: float = 0.0
    fame_facet_loss_weight: float = None
    gate_temperature: float = 1.0
    head_diagnostics_users: int = 2048
    distribute: str = None
    model_devices: int = 1

    def __post_init__(self):
        """Refuses impossible settings at once, naming the field (`ValueError("field=value: allowed")`)."""
        for name in ("hidden_dim", "num_heads", "num_experts", "num_blocks", "max_len", "epochs", "batch_size",
                     "every_n_epochs"):
            positive_int(name, getattr(self, name))
        for name in ("patience", "seed", "fame_warmup_epochs", "fame_epochs", "head_diagnostics_users"):
            non_negative_int(name, getattr(self, name))
        divisible("hidden_dim", self.hidden_dim, "num_heads", self.num_heads)
        if self.sasrec_heads is not None:
            divisible("hidden_dim", self.hidden_dim, "sasrec_heads", positive_int("sasrec_heads", self.sasrec_heads))
        rate("dropout", self.dropout)
        if self.fame_dropout is not None:
            rate("fame_dropout", self.fame_dropout)
        positive_float("learning_rate", self.learning_rate)
        positive_float("gate_temperature", self.gate_temperature)
        non_negative_float("facet_loss_weight", self.facet_loss_weight)
        if self.fame_facet_loss_weight is not None:
            non_negative_float("fame_facet_loss_weight", self.fame_facet_loss_weight)
        if self.negatives is not None:
            positive_int("negatives", self.negatives)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r}: must be one of {', '.join(SAMPLERS)}")
        if self.facet_fusion not in FACET_FUSIONS:
            raise ValueError(f"facet_fusion={self.facet_fusion!r}: must be one of {', '.join(FACET_FUSIONS)}")
        positive_int("model_devices", self.model_devices)
        if self.distribute not in (None, *DISTRIBUTE_MODES):
            raise ValueError(f"distribute={self.distribute!r}: must be one of {', '.join(DISTRIBUTE_MODES)}")
        if self.model_devices > 1 and self.distribute != "model":
            raise ValueError(f"model_devices={self.model_devices} splits the item tables: it needs distribute='model'")
        metric = self.monitor.removeprefix("val_")
        if metric.split("@")[0] not in ("ndcg", "hr") or not metric.split("@")[-1].isdigit():
            raise ValueError(f"monitor={self.monitor!r}: must be val_ndcg@K or val_hr@K")


def run_pipeline(
    sequence_file,
    dataset,
    output_dir,
    config=None,
    *,
    text_encoder=None,
    sasrec_model=None,
    verbose=1,
    resume=True,
    tensorboard_dir=None,
    **overrides,
):
    """SASRec -> transplant -> FAME fine-tuning -> test metrics, as in §4.4.2.

    `config` (a `PipelineConfig`, default `PipelineConfig()`) holds the
    settings; keyword `overrides` replace its fields
    (`run_pipeline(path, "toys", out, num_heads=4)`).

    Writes `sasrec.keras`, `fame.keras` and `results.json` (rewritten after
    each stage) to `output_dir` and returns the results dict. With
    `sasrec_model` (a `.keras` path) the SASRec stage is loaded, not trained.
    `fame_warmup_epochs > 0` first trains FAME's fresh parts alone (our
    addition; the paper fine-tunes everything from the start).
    `text_start` (a `TextStart`) starts SASRec's item table from item text
    (FAME inherits it through the transplant); its time and loss go into
    `results["text_start"]`; `text_encoder` replaces the default MiniLM
    (see `keras_fame.pretraining.embed_texts`). `backbone` holds extra SASRec
    constructor arguments (`activation`, `intermediate_dim`,
    `kernel_initializer`, `layer_norm_epsilon`), which FAME inherits;
    `every_prefix` and `monitor` go to `fit_with_early_stopping`.
    `deterministic` turns on `keras_fame.utils.set_deterministic` (same seed,
    machine and backend -> the same metrics).

    Resuming (`resume=True`, the default): each training stage checkpoints
    every epoch under `output_dir/checkpoints/<stage>` (`TrainingCheckpoint`),
    and the stages already finished are recorded in `results.json` with
    their model saved. Calling again with the same arguments after a kill
    (or after it finished) skips the finished stages (the text table is
    kept in `text_table.npy`) and continues the stage that was running from
    its last finished epoch; in deterministic mode the final metrics equal
    those of an uninterrupted run. A `results.json` that differs only in
    FAME-stage settings (`FAME_STAGE_KEYS`: heads, experts, FAME dropout,
    ...) keeps its text start and SASRec stage and trains FAME again; any
    other difference raises `ValueError` rather than being mixed in.
    `resume=False` starts over. `tensorboard_dir` logs each stage for
    TensorBoard (see `fit_with_early_stopping`).
    """
    config = dataclasses.replace(config or PipelineConfig(), **overrides)
    with distributed(config.distribute, config.model_devices), \
            dtype_policy("mixed_bfloat16" if config.mixed_precision else None):
        return _run_stages(
            sequence_file, dataset, output_dir, config, text_encoder=text_encoder, sasrec_model=sasrec_model,
            verbose=verbose, resume=resume, tensorboard_dir=tensorboard_dir,
        )


def _run_stages(sequence_file, dataset, output_dir, config, *, text_encoder, sasrec_model, verbose, resume,
                tensorboard_dir):
    # Local names for the settings, by name (not by field order, which a new field could shift).
    names = (
        "hidden_dim num_heads num_experts num_blocks max_len dropout sasrec_heads epochs fame_epochs learning_rate "
        "batch_size patience every_n_epochs seed skip_fame fame_warmup_epochs fame_dropout "
        "item_projection_initializer text_start backbone every_prefix monitor deterministic negatives sampler"
    ).split()
    (hidden_dim, num_heads, num_experts, num_blocks, max_len, dropout, sasrec_heads, epochs, fame_epochs,
     learning_rate, batch_size, patience, every_n_epochs, seed, skip_fame, fame_warmup_epochs, fame_dropout,
     item_projection_initializer, text_start, backbone, every_prefix, monitor, deterministic, negatives,
     sampler) = (getattr(config, name) for name in names)
    missing_environment = set_deterministic(seed) if deterministic else []
    keras.utils.set_random_seed(seed)
    os.makedirs(output_dir, exist_ok=True)
    data = read_sequences(sequence_file)
    split = leave_one_out(data, max_len=max_len)
    results = {
        "dataset": dataset,
        "data": data.stats(),
        "train_positions": split.num_train_positions,
        "config": {
            "hidden_dim": hidden_dim,
            "num_heads": num_heads,
            "num_experts": num_experts,
            "num_blocks": num_blocks,
            "max_len": max_len,
            "dropout": dropout,
            "sasrec_heads": sasrec_heads or num_heads,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "patience": patience,
            "seed": seed,
            "fame_warmup_epochs": fame_warmup_epochs,
            "text_start": dataclasses.asdict(text_start) if text_start else None,
            "backbone": dict(backbone or {}),
            "every_prefix": every_prefix,
            "monitor": monitor,
            "deterministic": deterministic,
            **({"negatives": negatives, "sampler": sampler} if negatives is not None or sampler != "uniform" else {}),
            **({"mixed_precision": True} if config.mixed_precision else {}),
            **({"distribute": config.distribute, "model_devices": config.model_devices} if config.distribute else {}),
            **({"item_facets": list(config.item_facets), "facet_fusion": config.facet_fusion,
                "facet_loss_weight": config.facet_loss_weight} if config.item_facets else {}),
        },
        "machine": machine_description(),
        "provenance": [provenance()],
        "paper_fame": PAPER_FAME.get(dataset),
    }
    fame_facet_loss_weight = (
        config.facet_loss_weight if config.fame_facet_loss_weight is None else config.fame_facet_loss_weight
    )
    if not skip_fame:  # recorded before any stage runs, so a rerun that changes them is noticed (`FAME_STAGE_KEYS`)
        results["config"]["fame_dropout"] = dropout if fame_dropout is None else fame_dropout
        results["config"]["item_projection_initializer"] = keras.initializers.serialize(
            keras.initializers.get(item_projection_initializer or HeadSliceIdentity())
        )
        if fame_facet_loss_weight or config.item_facets:
            results["config"]["fame_facet_loss_weight"] = fame_facet_loss_weight
        if config.gate_temperature != 1.0:
            results["config"]["gate_temperature"] = config.gate_temperature
    if deterministic:
        results["deterministic_environment_missing"] = missing_environment
    facets = None
    if config.item_facets:
        from keras_fame.data.item_facets import attribute_file_beside, read_item_facets

        facets = read_item_facets(
            config.item_attributes_file or attribute_file_beside(sequence_file), data.num_items, config.item_facets
        )
        results["item_facets"] = facets.summary()
    elif config.facet_loss_weight or config.fame_facet_loss_weight:
        raise ValueError("a facet loss weight needs item facets (item_facets / --item-facets)")
    results_path = os.path.join(output_dir, "results.json")
    checkpoints = os.path.join(output_dir, "checkpoints")
    done, fame_changed = _finished_stages(results_path, results["config"]) if resume else ({}, False)
    # A resumed run keeps the first process's machine and appends its own entry to the provenance.
    results["machine"] = done.get("machine", results["machine"])
    results["provenance"] = done.get("provenance", []) + results["provenance"]
    if not resume and os.path.isdir(checkpoints):
        shutil.rmtree(checkpoints)
    for stage in ("fame", "fame_warmup") if fame_changed else ():
        shutil.rmtree(os.path.join(checkpoints, stage), ignore_errors=True)  # another FAME's epochs
    sasrec_path, fame_path = os.path.join(output_dir, "sasrec.keras"), os.path.join(output_dir, "fame.keras")
    table_path = os.path.join(output_dir, "text_table.npy")

    def save_results():
        write_json_atomic(results_path, results)

    if not os.path.isfile(results_path) or not resume:
        save_results()  # the configuration is on disk before any checkpoint, so a changed rerun is caught

    if sasrec_model is not None:
        sasrec = keras.saving.load_model(sasrec_model, safe_mode=True)
        if sasrec.num_items != data.num_items or sasrec.max_len != max_len:
            raise ValueError(f"{sasrec_model}: built for {sasrec.num_items} items / max_len {sasrec.max_len}")
        results["sasrec"] = {"loaded_from": os.path.abspath(sasrec_model)}
        results["config"].update(hidden_dim=sasrec.hidden_dim, num_blocks=sasrec.num_blocks, sasrec_heads=sasrec.num_heads)
        if fame_dropout is None and not skip_fame:
            results["config"]["fame_dropout"] = sasrec.dropout  # `FAME.from_sasrec` takes the loaded model's
    elif "sasrec" in done and os.path.isfile(sasrec_path):
        print(f"\n== SASRec: finished before, loaded from {sasrec_path} ==")
        sasrec = keras.saving.load_model(sasrec_path, safe_mode=True)
        results["sasrec"] = done["sasrec"]
        if "text_start" in done:
            results["text_start"] = done["text_start"]
    else:
        table = None
        if text_start is not None and "text_start" in done and os.path.isfile(table_path):
            print(f"\n== Text start: finished before, loaded from {table_path} ==")
            table, results["text_start"] = np.load(table_path), done["text_start"]
        elif text_start is not None:
            heads = sasrec_heads or num_heads
            print(f"\n== Text start ({text_start.mode}, frozen={text_start.frozen}) for {data.num_items} items ==")
            with dtype_policy("float32"):  # the encoder and the pre-trainer, whatever the sequence models use
                table, results["text_start"] = text_item_table(
                    text_start, data.num_items, hidden_dim, heads, seed=seed, verbose=verbose, encoder=text_encoder,
                    save_pretrainer=os.path.join(output_dir, "pretrainer.keras"),
                )
            replace_atomically(table_path, lambda tmp: np.save(tmp, table), suffix=".npy")
            save_results()
        keras.utils.set_random_seed(seed)  # the sequence model starts as it would without the text stage
        sasrec = SASRec(
            data.num_items,
            hidden_dim=hidden_dim,
            num_blocks=num_blocks,
            num_heads=sasrec_heads or num_heads,
            max_len=max_len,
            dropout=dropout,
            item_content=bool(text_start and text_start.frozen),
            item_embeddings=table,
            **({"item_facets": facets.labels, "facet_fusion": config.facet_fusion} if facets else {}),
            row_multiple=config.model_devices if config.distribute == "model" else 1,
            **(backbone or {}),
        )
        print(f"\n== SASRec on {dataset}: {data.num_users} users, {data.num_items} items ==")
        results["sasrec"] = {
            "training": fit_with_early_stopping(
                sasrec, split, epochs, batch_size, patience, every_n_epochs, learning_rate, seed, verbose,
                monitor=monitor, every_prefix=every_prefix, negatives=negatives, sampler=sampler, stage="SASRec",
                checkpoint_dir=os.path.join(checkpoints, "sasrec") if resume else None, tensorboard_dir=tensorboard_dir,
                facet_loss_weight=config.facet_loss_weight,
            )
        }
        save_model_atomic(sasrec, sasrec_path)
    if "test" not in results["sasrec"]:
        results["sasrec"]["test"] = evaluate_test_set(sasrec, split)
    save_results()
    rows = {"SASRec (ours, exclude history)": results["sasrec"]["test"]["exclude_history"]}

    if not skip_fame and "fame" in done and os.path.isfile(fame_path):
        print(f"\n== FAME: finished before, loaded from {fame_path} ==")
        fame = keras.saving.load_model(fame_path, safe_mode=True)
        results["fame"] = done["fame"]
    elif not skip_fame:
        keras.utils.set_random_seed(seed)  # FAME's fresh parts start the same whether SASRec was trained or loaded
        fame = FAME.from_sasrec(
            sasrec, num_heads=num_heads, num_experts=num_experts, dropout=fame_dropout, seed=seed,
            item_projection_initializer=item_projection_initializer, gate_temperature=config.gate_temperature,
        )
        if fame_facet_loss_weight and not fame.item_embedding.facet_labels:
            raise ValueError("a FAME facet loss weight needs item facets (item_facets / --item-facets)")
        results["fame"] = {}
        if fame_warmup_epochs:
            # Not in the paper: train only the fresh parts first, so their
            # random start does not disturb the transplanted weights.
            copied = [fame.item_embedding, *fame.transformer_blocks]
            for layer in copied:
                layer.trainable = False
            print(f"\n== FAME warm-up: {fame_warmup_epochs} epochs with the transplanted layers frozen ==")
            results["fame"]["warmup"] = fit_with_early_stopping(
                fame, split, fame_warmup_epochs, batch_size, fame_warmup_epochs, every_n_epochs, learning_rate, seed,
                verbose, checkpoint_dir=os.path.join(checkpoints, "fame_warmup") if resume else None,
            )
            for layer in copied:
                layer.trainable = True
        print(f"\n== FAME (H={num_heads}, N={num_experts}) fine-tuned from SASRec ==")
        results["fame"]["training"] = fit_with_early_stopping(
            fame, split, fame_epochs or epochs, batch_size, patience, every_n_epochs, learning_rate, seed, verbose,
            monitor=monitor, every_prefix=every_prefix, negatives=negatives, sampler=sampler, stage="FAME",
            checkpoint_dir=os.path.join(checkpoints, "fame") if resume else None, tensorboard_dir=tensorboard_dir,
            facet_loss_weight=fame_facet_loss_weight, head_diagnostics_users=config.head_diagnostics_users,
        )
        results["fame"]["test"] = evaluate_test_set(fame, split)
        save_model_atomic(fame, fame_path)
        save_results()
    if not skip_fame:
        rows[f"FAME H={num_heads} N={num_experts} (exclude hist.)"] = results["fame"]["test"]["exclude_history"]
        rows[f"FAME H={num_heads} N={num_experts} (all items)"] = results["fame"]["test"]["all_items"]

    table = format_comparison(dataset, rows)
    results["table"] = table
    print("\nTest set, full ranking over all items (leave-one-out):\n" + table)
    save_results()
    return results

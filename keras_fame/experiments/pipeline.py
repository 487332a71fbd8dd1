"""The paper's staged pipeline (§4.4.2), resumable: text start -> SASRec -> transplant -> FAME -> test.

`PipelineConfig` holds the one set of defaults; the command line
(`keras_fame.experiments.cli`) takes its defaults from it and `run_pipeline`
accepts it (or overrides of its fields).
"""

import dataclasses
import json
import os
import shutil

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
from keras_fame.distribution import distributed
from keras_fame.experiments.config import PipelineConfig
from keras_fame.experiments.text_start import text_item_table
from keras_fame.utils import dtype_policy, json_default, replace_atomically, save_model_atomic, set_deterministic


# Settings of the FAME stage alone: a run folder whose results differ only in these keeps its text start
# and SASRec stage and trains FAME again.
FAME_STAGE_KEYS = frozenset({
    "num_heads", "num_experts", "fame_warmup_epochs", "fame_dropout", "item_projection_initializer",
    "fame_facet_loss_weight", "gate_temperature", "routing_loss_weight", "gate_facets",
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


@dataclasses.dataclass
class _Run:
    """The state one pipeline run's stages share: settings, data, the results so far, what finished before."""

    config: PipelineConfig
    dataset: str
    output_dir: str
    data: object
    split: object
    results: dict
    done: dict
    resume: bool
    verbose: int
    tensorboard_dir: str
    facets: object

    def path(self, name):
        return os.path.join(self.output_dir, name)

    def checkpoint_dir(self, stage):
        return os.path.join(self.output_dir, "checkpoints", stage) if self.resume else None

    def save(self):
        write_json_atomic(self.path("results.json"), self.results)

    def fit(self, model, stage, epochs, **kwargs):
        """`fit_with_early_stopping` with this run's settings, checkpointing under `checkpoints/<stage>`."""
        c = self.config
        return fit_with_early_stopping(
            model, self.split, epochs, c.batch_size, c.patience, c.every_n_epochs, c.learning_rate, c.seed,
            self.verbose, monitor=c.monitor, every_prefix=c.every_prefix, negatives=c.negatives, sampler=c.sampler,
            optimizer=c.optimizer, stage=stage, checkpoint_dir=self.checkpoint_dir(stage.lower()),
            tensorboard_dir=self.tensorboard_dir,
            **kwargs,
        )


def _recorded_config(config):
    """The settings `results.json` records (and a resumed run is compared on, `_finished_stages`)."""
    c = config
    recorded = {
        "hidden_dim": c.hidden_dim,
        "num_heads": c.num_heads,
        "num_experts": c.num_experts,
        "num_blocks": c.num_blocks,
        "max_len": c.max_len,
        "dropout": c.dropout,
        "sasrec_heads": c.sasrec_heads or c.num_heads,
        "learning_rate": c.learning_rate,
        "batch_size": c.batch_size,
        "patience": c.patience,
        "seed": c.seed,
        "fame_warmup_epochs": c.fame_warmup_epochs,
        "text_start": dataclasses.asdict(c.text_start) if c.text_start else None,
        "backbone": dict(c.backbone or {}),
        "every_prefix": c.every_prefix,
        "monitor": c.monitor,
        "deterministic": c.deterministic,
        **({"negatives": c.negatives, "sampler": c.sampler} if c.negatives is not None or c.sampler != "uniform" else {}),
        **({"optimizer": c.optimizer} if c.optimizer != "adam" else {}),
        **({"mixed_precision": True} if c.mixed_precision else {}),
        **({"distribute": c.distribute, "model_devices": c.model_devices} if c.distribute else {}),
        **({"item_facets": list(c.item_facets), "facet_fusion": c.facet_fusion,
            "facet_loss_weight": c.facet_loss_weight} if c.item_facets else {}),
        **({"facet_attention": True} if c.facet_attention else {}),
    }
    if not c.skip_fame:  # recorded before any stage runs, so a rerun that changes them is noticed (`FAME_STAGE_KEYS`)
        recorded["fame_dropout"] = c.dropout if c.fame_dropout is None else c.fame_dropout
        recorded["item_projection_initializer"] = keras.initializers.serialize(
            keras.initializers.get(c.item_projection_initializer or HeadSliceIdentity())
        )
        if c.fame_stage_facet_loss_weight or c.item_facets:
            recorded["fame_facet_loss_weight"] = c.fame_stage_facet_loss_weight
        if c.gate_temperature != 1.0:
            recorded["gate_temperature"] = c.gate_temperature
        if c.routing_loss_weight:
            recorded["routing_loss_weight"] = c.routing_loss_weight
        if c.gate_facets:
            recorded["gate_facets"] = True
    return recorded


def _start(sequence_file, dataset, output_dir, config, verbose, resume, tensorboard_dir):
    """Seeds, reads and splits the data, reads the facets, and finds what a previous run finished."""
    missing_environment = set_deterministic(config.seed) if config.deterministic else []
    keras.utils.set_random_seed(config.seed)
    os.makedirs(output_dir, exist_ok=True)
    data = read_sequences(sequence_file)
    split = leave_one_out(data, max_len=config.max_len)
    results = {
        "dataset": dataset,
        "data": data.stats(),
        "train_positions": split.num_train_positions,
        "config": _recorded_config(config),
        "machine": machine_description(),
        "provenance": [provenance()],
        "paper_fame": PAPER_FAME.get(dataset),
    }
    if config.deterministic:
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
    run = _Run(config, dataset, output_dir, data, split, results, done, resume, verbose, tensorboard_dir, facets)
    if not os.path.isfile(results_path) or not resume:
        run.save()  # the configuration is on disk before any checkpoint, so a changed rerun is caught
    return run


def _text_stage(run, text_encoder):
    """The text start's item table (`[num_items + 1, d]`), or None for a random start."""
    c, done = run.config, run.done
    if c.text_start is None:
        return None
    table_path = run.path("text_table.npy")
    if "text_start" in done and os.path.isfile(table_path):
        print(f"\n== Text start: finished before, loaded from {table_path} ==")
        run.results["text_start"] = done["text_start"]
        return np.load(table_path)
    print(f"\n== Text start ({c.text_start.mode}, frozen={c.text_start.frozen}) for {run.data.num_items} items ==")
    with dtype_policy("float32"):  # the encoder and the pre-trainer, whatever the sequence models use
        table, run.results["text_start"] = text_item_table(
            c.text_start, run.data.num_items, c.hidden_dim, c.sasrec_heads or c.num_heads, seed=c.seed,
            verbose=run.verbose, encoder=text_encoder, save_pretrainer=run.path("pretrainer.keras"),
        )
    replace_atomically(table_path, lambda tmp: np.save(tmp, table), suffix=".npy")
    run.save()
    return table


def _sasrec_stage(run, sasrec_model, text_encoder):
    """SASRec: loaded (`sasrec_model`, or finished before) or trained; its test metrics recorded."""
    c, results, done = run.config, run.results, run.done
    sasrec_path = run.path("sasrec.keras")
    if sasrec_model is not None:
        sasrec = keras.saving.load_model(sasrec_model, safe_mode=True)
        if sasrec.num_items != run.data.num_items or sasrec.max_len != c.max_len:
            raise ValueError(f"{sasrec_model}: built for {sasrec.num_items} items / max_len {sasrec.max_len}")
        results["sasrec"] = {"loaded_from": os.path.abspath(sasrec_model)}
        results["config"].update(hidden_dim=sasrec.hidden_dim, num_blocks=sasrec.num_blocks, sasrec_heads=sasrec.num_heads)
        if c.fame_dropout is None and not c.skip_fame:
            results["config"]["fame_dropout"] = sasrec.dropout  # `FAME.from_sasrec` takes the loaded model's
    elif "sasrec" in done and os.path.isfile(sasrec_path):
        print(f"\n== SASRec: finished before, loaded from {sasrec_path} ==")
        sasrec = keras.saving.load_model(sasrec_path, safe_mode=True)
        results["sasrec"] = done["sasrec"]
        if "text_start" in done:
            results["text_start"] = done["text_start"]
    else:
        table = _text_stage(run, text_encoder)
        keras.utils.set_random_seed(c.seed)  # the sequence model starts as it would without the text stage
        sasrec = SASRec(
            run.data.num_items,
            num_heads=c.sasrec_heads or c.num_heads,
            item_embeddings=table,
            item_facets=run.facets.labels if run.facets else None,
            **dataclasses.asdict(c.sasrec_backbone()),
        )
        print(f"\n== SASRec on {run.dataset}: {run.data.num_users} users, {run.data.num_items} items ==")
        results["sasrec"] = {"training": run.fit(sasrec, "SASRec", c.epochs, facet_loss_weight=c.facet_loss_weight)}
        save_model_atomic(sasrec, sasrec_path)
    if "test" not in results["sasrec"]:
        results["sasrec"]["test"] = evaluate_test_set(sasrec, run.split)
    run.save()
    return sasrec


def _fame_stage(run, sasrec):
    """FAME transplanted from `sasrec` (§4.4.2) and fine-tuned, or loaded when it finished before."""
    c, results, done = run.config, run.results, run.done
    fame_path = run.path("fame.keras")
    if "fame" in done and os.path.isfile(fame_path):
        print(f"\n== FAME: finished before, loaded from {fame_path} ==")
        results["fame"] = done["fame"]
        return
    keras.utils.set_random_seed(c.seed)  # FAME's fresh parts start the same whether SASRec was trained or loaded
    fame = FAME.from_sasrec(
        sasrec, num_heads=c.num_heads, num_experts=c.num_experts, dropout=c.fame_dropout, seed=c.seed,
        item_projection_initializer=c.item_projection_initializer, gate_temperature=c.gate_temperature,
        gate_facets=c.gate_facets,
    )
    if c.fame_stage_facet_loss_weight and not fame.item_embedding.facet_labels:
        raise ValueError("a FAME facet loss weight needs item facets (item_facets / --item-facets)")
    results["fame"] = {}
    if c.fame_warmup_epochs:
        # Not in the paper: train only the fresh parts first, so their
        # random start does not disturb the transplanted weights.
        copied = [fame.item_embedding, *fame.transformer_blocks]
        for layer in copied:
            layer.trainable = False
        print(f"\n== FAME warm-up: {c.fame_warmup_epochs} epochs with the transplanted layers frozen ==")
        results["fame"]["warmup"] = fit_with_early_stopping(
            fame, run.split, c.fame_warmup_epochs, c.batch_size, c.fame_warmup_epochs, c.every_n_epochs,
            c.learning_rate, c.seed, run.verbose, checkpoint_dir=run.checkpoint_dir("fame_warmup"),
        )
        for layer in copied:
            layer.trainable = True
    print(f"\n== FAME (H={c.num_heads}, N={c.num_experts}) fine-tuned from SASRec ==")
    results["fame"]["training"] = run.fit(
        fame, "FAME", c.fame_epochs or c.epochs, facet_loss_weight=c.fame_stage_facet_loss_weight,
        head_diagnostics_users=c.head_diagnostics_users, routing_loss_weight=c.routing_loss_weight,
    )
    results["fame"]["test"] = evaluate_test_set(fame, run.split)
    save_model_atomic(fame, fame_path)
    run.save()


def _report(run):
    """The test table beside the paper's row, printed and recorded."""
    c, results = run.config, run.results
    rows = {"SASRec (ours, exclude history)": results["sasrec"]["test"]["exclude_history"]}
    if not c.skip_fame:
        rows[f"FAME H={c.num_heads} N={c.num_experts} (exclude hist.)"] = results["fame"]["test"]["exclude_history"]
        rows[f"FAME H={c.num_heads} N={c.num_experts} (all items)"] = results["fame"]["test"]["all_items"]
    table = format_comparison(run.dataset, rows)
    results["table"] = table
    print("\nTest set, full ranking over all items (leave-one-out):\n" + table)
    run.save()


def _run_stages(sequence_file, dataset, output_dir, config, *, text_encoder, sasrec_model, verbose, resume,
                tensorboard_dir):
    run = _start(sequence_file, dataset, output_dir, config, verbose, resume, tensorboard_dir)
    sasrec = _sasrec_stage(run, sasrec_model, text_encoder)
    if not config.skip_fame:
        _fame_stage(run, sasrec)
    _report(run)
    return run.results

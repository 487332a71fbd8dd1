"""`PipelineConfig`: every setting of the staged pipeline, with the one set of defaults."""

import dataclasses

from keras_fame.data.sampled_batches import SAMPLERS
from keras_fame.distribution import MODES as DISTRIBUTE_MODES
from keras_fame.experiments.text_start import TextStart
from keras_fame.layers.item_embedding import FACET_FUSIONS
from keras_fame.optimizers import OPTIMIZERS
from keras_fame.validation import divisible, non_negative_float, non_negative_int, positive_float, positive_int, rate


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
        optimizer: `"adam"` (the paper's) or `"lazy_adam"`
            (`keras_fame.optimizers.LazyAdam`: with a sampled softmax on
            TensorFlow, a step updates only the item rows it read).
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
        routing_loss_weight: FAME stage: weight of the routing loss
            (`keras_fame.losses.mixture_routing_loss`; 0: off).
        gate_facets: FAME's gate also reads the history's facet agreement
            (`FAME(gate_facets=True)`; needs `item_facets`).
        head_diagnostics_users: FAME stage: gate entropy and per-head
            validation NDCG@10 on this many users per epoch (0: off).
        facet_attention: every attention head of both models also attends
            by the items' facets (`MoEQueryAttention`; needs `item_facets`).
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
    optimizer: str = "adam"
    mixed_precision: bool = False
    item_facets: tuple = ()
    item_attributes_file: str = None
    facet_fusion: str = "slice"
    facet_loss_weight: float = 0.0
    fame_facet_loss_weight: float = None
    gate_temperature: float = 1.0
    routing_loss_weight: float = 0.0
    gate_facets: bool = False
    head_diagnostics_users: int = 2048
    distribute: str = None
    model_devices: int = 1
    facet_attention: bool = False

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
        non_negative_float("routing_loss_weight", self.routing_loss_weight)
        if self.fame_facet_loss_weight is not None:
            non_negative_float("fame_facet_loss_weight", self.fame_facet_loss_weight)
        if self.negatives is not None:
            positive_int("negatives", self.negatives)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler={self.sampler!r}: must be one of {', '.join(SAMPLERS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}: must be one of {', '.join(OPTIMIZERS)}")
        if self.facet_fusion not in FACET_FUSIONS:
            raise ValueError(f"facet_fusion={self.facet_fusion!r}: must be one of {', '.join(FACET_FUSIONS)}")
        positive_int("model_devices", self.model_devices)
        if self.facet_attention and not self.item_facets:
            raise ValueError("facet_attention=True attends by the items' facets: it needs item_facets")
        if self.gate_facets and not self.item_facets:
            raise ValueError("gate_facets=True feeds FAME's gate the items' facet labels: it needs item_facets")
        if self.distribute not in (None, *DISTRIBUTE_MODES):
            raise ValueError(f"distribute={self.distribute!r}: must be one of {', '.join(DISTRIBUTE_MODES)}")
        if self.model_devices > 1 and self.distribute != "model":
            raise ValueError(f"model_devices={self.model_devices} splits the item tables: it needs distribute='model'")
        try:
            self.sasrec_backbone()
        except TypeError as error:  # a backbone option that is no BackboneConfig field
            raise ValueError(f"backbone={self.backbone!r}: {error}") from None
        metric = self.monitor.removeprefix("val_")
        if metric.split("@")[0] not in ("ndcg", "hr") or not metric.split("@")[-1].isdigit():
            raise ValueError(f"monitor={self.monitor!r}: must be val_ndcg@K or val_hr@K")

    def sasrec_backbone(self):
        """The SASRec stage's `keras_fame.models.BackboneConfig` (FAME inherits it through the transplant)."""
        from keras_fame.models import BackboneConfig

        return BackboneConfig(
            hidden_dim=self.hidden_dim, num_blocks=self.num_blocks, max_len=self.max_len, dropout=self.dropout,
            item_content=bool(self.text_start and self.text_start.frozen), facet_fusion=self.facet_fusion,
            facet_attention=self.facet_attention, row_multiple=self.model_devices if self.distribute == "model" else 1,
            **(self.backbone or {}),
        )

    @property
    def fame_stage_facet_loss_weight(self):
        """The FAME stage's facet loss weight: `fame_facet_loss_weight`, or `facet_loss_weight` when None."""
        return self.facet_loss_weight if self.fame_facet_loss_weight is None else self.fame_facet_loss_weight

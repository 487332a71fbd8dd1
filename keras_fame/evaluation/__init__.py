"""Full-ranking evaluation (HR@k, NDCG@k over all items) and its Keras callback."""

from keras_fame.evaluation.callback import FullRankingEvaluation
from keras_fame.evaluation.gate_histograms import GateHistograms
from keras_fame.evaluation.head_diagnostics import HeadDiagnostics, head_diagnostics
from keras_fame.evaluation.ranking import (
    DEFAULT_KS,
    chunked_target_ranks,
    evaluate_model,
    evaluate_ranking,
    evaluate_test_set,
    metrics_from_ranks,
    ndcg_per_user,
    target_ranks,
    top_k,
)

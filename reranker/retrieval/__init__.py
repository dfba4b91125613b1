"""Stage 1: candidate retrieval (ItemCF, UserCF, popularity) and kNN rating prediction.
Build any of them by name through `reranker.registry.RETRIEVERS`."""

from .base import CandidateScorer, Retriever
from .knn import (
    BatchPrediction,
    ItemCF,
    ItemCFConfig,
    KNNConfig,
    Prediction,
    UserCF,
    UserCFConfig,
)
from .popularity import PopularityConfig, PopularityRetriever

__all__ = [
    "CandidateScorer",
    "Retriever",
    "ItemCF",
    "UserCF",
    "ItemCFConfig",
    "UserCFConfig",
    "KNNConfig",
    "Prediction",
    "BatchPrediction",
    "PopularityRetriever",
    "PopularityConfig",
]

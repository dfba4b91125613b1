"""Stage 1: candidate retrieval (ItemCF, UserCF, popularity) and kNN rating prediction."""

from .base import Retriever
from .knn import (
    BatchPrediction,
    ItemCF,
    ItemCFConfig,
    KNNConfig,
    Prediction,
    UserCF,
    UserCFConfig,
    make_retriever,
)
from .popularity import PopularityConfig, PopularityRetriever

__all__ = [
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
    "make_retriever",
]

"""The product: retriever -> candidates -> scorers / rankers -> fusion -> diversity -> top-k ->
explanations, built from one YAML config (`config`), fitted and served (`core`), saved and
loaded without pickles (`persist`)."""

from .config import PipelineConfig
from .core import Pipeline

__all__ = ["Pipeline", "PipelineConfig"]

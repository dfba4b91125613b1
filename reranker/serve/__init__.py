"""The HTTP service (`reranker serve`): rerank, recommend, feedback, health and metrics over
FastAPI. Importing this package imports nothing heavy; `create_app` builds the app."""

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)

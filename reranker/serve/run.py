"""`reranker serve`: load the config, check the key rule, run uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ConfigError
from .config import LOOPBACK_HOSTS, ServeConfig


def check_binding(config: ServeConfig, host: str) -> None:
    """Bound to anything but loopback, the Bearer key must be set (ConfigError otherwise)."""
    if host in LOOPBACK_HOSTS:
        return
    if not config.api_key_env or not os.environ.get(config.api_key_env):
        raise ConfigError(f"api_key_env: serving on {host} (not loopback) needs an API key; set the "
                          f"environment variable {config.api_key_env or 'named by api_key_env'}")


def serve(config_path: str | Path | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service until interrupted."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        raise ConfigError(f"reranker serve needs FastAPI and uvicorn ({e.name} is missing): "
                          "pip install 'reranker[serve]'") from None

    config = ServeConfig.from_yaml(config_path) if config_path is not None else ServeConfig()
    check_binding(config, host)
    logging.getLogger("reranker.serve").setLevel(logging.INFO)
    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=10)


__all__ = ["check_binding", "serve"]

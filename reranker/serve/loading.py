"""Building the served pipeline from the config's `pipeline:` section."""

from __future__ import annotations

from typing import Any

from .config import PipelineSource


def load_pipeline(src: PipelineSource, *, backend: Any = None) -> Any:
    """A saved folder (`path`) loaded, or a config fitted at start on `data`, `data_name` (the
    data cache's copy, fetched on first use) or `synthetic`."""
    from ..pipeline import Pipeline, PipelineConfig

    if src.path is not None:
        return Pipeline.load(src.path, llm_backend=backend)
    if isinstance(src.config, dict):
        cfg = PipelineConfig.from_dict(src.config, source="pipeline.config")
    else:
        assert src.config is not None
        cfg = PipelineConfig.from_yaml(src.config)
    if src.synthetic is not None:
        from ..data.synthetic import generate_world

        s = src.synthetic
        data = generate_world(seed=s.seed, n_users=s.users, n_items=s.items).dataset
    elif src.data_name is not None:
        from ..data.fetch import load_named

        data = load_named(src.data_name, src.format if "format" in src.model_fields_set else None, progress=False)
    else:
        from ..data.loaders import load

        assert src.data is not None
        data = load(src.data, src.format)
    return Pipeline(cfg, llm_backend=backend).fit(data)


__all__ = ["load_pipeline"]

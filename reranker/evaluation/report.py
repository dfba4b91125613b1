"""Markdown report and PNG plots from a results dict (as written to results.json).

``write_report(results, out_dir)`` writes ``report.md`` and the plots that apply:

- ``ndcg10.png``: NDCG@10 per ranker with 95% CI error bars;
- ``pr_curve.png``: Precision@K vs Recall@K, K = 1..20, traditional vs LLM-based rankers
  (the seed paper's Fig. 5);
- ``heatmap.png``: rankers x metrics (the seed paper's Fig. 4 layout);
- ``position_bias.png``: HR@1 of the target forced to each position;
- ``mae_vs_k.png``: MAE against the number of neighbours K (rating protocol).

matplotlib is imported lazily with the Agg backend. The Markdown text is built in
:mod:`.report_markdown`, the plots in :mod:`.report_plots`; this module re-exports both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .report_markdown import fmt_ci, render_markdown
from .report_plots import LLM_BASED, TRADITIONAL, make_plots

log = logging.getLogger(__name__)

__all__ = ["render_markdown", "write_report", "make_plots", "fmt_ci", "TRADITIONAL", "LLM_BASED"]


def write_report(res: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write report.md (and the plots) into ``out_dir``; returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        plots = make_plots(res, out)
    except Exception:
        log.exception("plots failed")
        plots = []
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render_markdown(res, [str(p) for p in plots]), encoding="utf-8")
    tmp.replace(path)
    return path

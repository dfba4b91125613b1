"""Markdown tables and PNG plots from a results dict."""

from __future__ import annotations

from reranker.evaluation.report import fmt_ci, make_plots, render_markdown, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _cell(m, lo, hi, n=100):
    return {"mean": m, "ci_lo": lo, "ci_hi": hi, "n": n}


def _ranking_results(status="complete"):
    curve = {"k": [1, 2, 3], "precision": [0.3, 0.2, 0.15], "recall": [0.3, 0.4, 0.45]}
    rankers = {
        "itemcf": {
            "type": "itemcf", "n_users": 100, "complete": True,
            "summary": {"ndcg@10": _cell(0.25, 0.2, 0.3), "hr@1": _cell(0.1, 0.05, 0.15)},
            "diagnostics": {"seconds_per_user": _cell(0.001, 0.0009, 0.0011), "cache_hits": 0},
            "pr_curve": curve, "per_user": {},
        },
        "llm-listwise": {
            "type": "llm-listwise", "n_users": 50, "complete": status == "complete",
            "summary": {"ndcg@10": _cell(0.12, 0.08, 0.16, 50), "hr@1": _cell(0.04, 0.0, 0.08, 50)},
            "diagnostics": {
                "seconds_per_user": _cell(2.5, 2.0, 3.0, 50),
                "tokens_in_per_user": _cell(1800.0, 1700.0, 1900.0, 50),
                "tokens_out_per_user": _cell(40.0, 35.0, 45.0, 50),
                "valid_rate": _cell(0.6, 0.5, 0.7, 50),
                "hallucination_rate": _cell(0.1, 0.05, 0.15, 50),
                "duplicate_rate": _cell(0.05, 0.0, 0.1, 50),
                "cache_hits": 10,
            },
            "pr_curve": curve,
            "paired": {"ndcg@10": _cell(-0.13, -0.18, -0.08, 50), "hr@1": _cell(-0.06, -0.1, -0.02, 50)},
            "examples": [{"user": "7", "raw": "3, 1, 2", "parse": {"valid": 3}}],
            "per_user": {},
        },
    }
    return {
        "experiment": "unit", "status": status,
        "protocol": {"regime": "b", "split": "chronological leave-one-out", "stage": "test",
                     "n_candidates": 20, "history_cap": 20, "seeds": [0], "n_boot": 1000},
        "machine": {"processor": "Test CPU", "cpu_count": 2, "memory_gib": 24, "platform": "Linux", "python": "3.11"},
        "data": {"name": "toy", "users": 100, "items": 50, "interactions": 1000, "evaluated_users": 100, "eligible_users": 100},
        "wall_time_s": 12.5, "started_at": "t0", "finished_at": "t1",
        "runs": [{
            "seed": 0, "regime": "b", "rankers": rankers, "paired_vs": "itemcf",
            "position_bias": {"positions": [0, 19], "users": 10, "rankers": {
                "llm-listwise": {"type": "llm-listwise",
                                 "plain": {"0": {"hr@1": 0.5, "mean_rank": 2.0}, "19": {"hr@1": 0.0, "mean_rank": 12.0}},
                                 "bootstrap": {"0": {"hr@1": 0.3, "mean_rank": 4.0}, "19": {"hr@1": 0.2, "mean_rank": 6.0}}}}},
        }],
    }


def test_fmt_ci_puts_the_interval_in_brackets():
    assert fmt_ci(_cell(0.12345, 0.1, 0.15)) == "0.1235 [0.1000, 0.1500]"
    assert fmt_ci({"mean": None}) == "n/a" and fmt_ci(None) == "n/a"


def test_markdown_has_protocol_machine_wall_time_and_ranker_rows():
    md = render_markdown(_ranking_results())
    assert "Regime B" in md and "Test CPU" in md and "Wall time: 12.5 s" in md
    assert "| ranker | type | users | ndcg@10 | hr@1 |" in md
    assert "| itemcf | itemcf | 100 | 0.2500 [0.2000, 0.3000] | 0.1000 [0.0500, 0.1500] |" in md
    assert "| llm-listwise | llm-listwise | 50 | 0.1200 [0.0800, 0.1600]" in md
    assert "Paired difference vs itemcf" in md and "-0.1300 [-0.1800, -0.0800]" in md
    assert "| llm-listwise | 2.5000 [2.0000, 3.0000] | 1800 | 40.0 | 0.600 |" in md
    assert "Position bias (10 users)" in md and "| llm-listwise | bootstrap | 0.300 / 4.0 | 0.200 / 6.0 |" in md
    assert "3, 1, 2" in md  # raw output example


def test_partial_results_are_labelled():
    md = render_markdown(_ranking_results(status="interrupted"))
    assert "Status: interrupted" in md and "llm-listwise (partial)" in md


def test_plots_are_png_files(tmp_path):
    paths = make_plots(_ranking_results(), tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["heatmap.png", "ndcg10.png", "position_bias.png", "pr_curve.png"]
    for p in paths:
        assert p.read_bytes()[:8] == PNG


def test_rating_report_and_mae_plot(tmp_path):
    by_k = [
        {"k": k, "mae": 0.8 - 0.01 * i, "mae_ci": [0.79 - 0.01 * i, 0.81 - 0.01 * i], "rmse": 1.0,
         "rmse_ci": [0.99, 1.01], "fit_seconds": 0.1, "predict_seconds": 0.05}
        for i, k in enumerate([5, 10])
    ]
    res = {
        "experiment": "rating", "status": "complete",
        "protocol": {"regime": "rating", "split": "random 80%/20%"},
        "machine": {}, "wall_time_s": 1.0,
        "runs": [{"seed": 0, "regime": "rating", "n_test": 20000,
                  "models": {"usercf": {"type": "usercf", "params": {}, "by_k": by_k}}}],
    }
    path = write_report(res, tmp_path)
    md = path.read_text()
    assert "| model | metric | K=5 | K=10 |" in md and "| usercf | MAE | 0.8000 | 0.7900 |" in md
    assert "| usercf | 10 | 0.7900 [0.7800, 0.8000]" in md
    assert (tmp_path / "mae_vs_k.png").read_bytes()[:8] == PNG
    assert "![mae_vs_k](mae_vs_k.png)" in md


def test_learned_head_fit_report_is_rendered():
    res = _ranking_results()
    res["runs"][0]["rankers"]["itemcf"]["fit_report"] = {
        "n_lists": 200, "holdout_ndcg@10_head": 0.71, "holdout_ndcg@10_single": {"usercf": 0.69, "llm": 0.3},
        "best_single": "usercf", "fallback_feature": None, "coef": {"usercf": 1.25, "llm": -0.5},
        "coef_hidden_abs_sum": 0.8,
    }
    md = render_markdown(res)
    assert "### Learned heads" in md
    assert "| itemcf | 200 | 0.710 | usercf 0.690 | no | usercf +1.25, llm -0.50, hidden PCA sum abs 0.80 |" in md


def test_learned_head_fit_report_uses_its_guard_cutoff():
    res = _ranking_results()
    res["runs"][0]["rankers"]["itemcf"]["fit_report"] = {
        "n_lists": 50, "guard_k": 5,
        "holdout_ndcg@10_head": 0.1, "holdout_ndcg@10_single": {"usercf": 0.2},  # not the guard's cutoff
        "holdout_ndcg@5_head": 0.61, "holdout_ndcg@5_single": {"usercf": 0.64},
        "best_single": "usercf", "fallback_feature": "usercf", "coef": {"usercf": 0.5},
    }
    md = render_markdown(res)
    assert "| itemcf | 50 | 0.610 | usercf 0.640 | usercf | usercf +0.50 |" in md


def test_header_states_cache_hits_and_first_measured_cost():
    res = _ranking_results()
    res["runs"][0]["rankers"]["llm-listwise"]["diagnostics"]["total_seconds"] = 7200.0
    res["runs"][0]["rankers"]["itemcf"]["diagnostics"]["total_seconds"] = 0.1
    md = render_markdown(res)
    assert "- Cache: 10 of 150 (ranker, user) results came from the cache" in md
    assert "sums to 7,200 s (2.0 h;" in md
    res["runs"][0]["rankers"]["llm-listwise"]["diagnostics"]["cache_hits"] = 0
    assert "- Cache:" not in render_markdown(res)


def test_score_agreement_matches_items_by_id_and_skips_constant_rows():
    from reranker.evaluation.ranking_regime import score_agreement
    from reranker.evaluation.records import RankerRun

    a = RankerRun("a", users=["u1", "u2", "u3"], ranked=[["x", "y", "z"], ["x", "y", "z"], ["x", "y"]],
                  scores=[[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [1.0, 1.0]])
    # u1: the same order listed differently (ids matched, not positions); u2: reversed; u3: constant
    b = RankerRun("b", users=["u1", "u2", "u3"], ranked=[["z", "x", "y"], ["x", "y", "z"], ["x", "y"]],
                  scores=[[0.1, 0.9, 0.5], [1.0, 2.0, 3.0], [2.0, 1.0]])
    got = score_agreement(a, b)
    assert got["n"] == 2 and got["spearman_mean"] == 0.0 and got["spearman_median"] == 0.0
    assert score_agreement(a, RankerRun("c")) == {"spearman_median": None, "spearman_mean": None, "n": 0}

"""Faithfulness of explanations, before and after issue 18 -> eval/results/explanations.md.

Protocol, per data set (ml-100k and the demo world, `generate_world(seed=0)`, 500 users x 400
items): chronological leave-one-out; ItemCF (k=50, cosine, implicit feedback, as in the demo
pipeline) fitted on train+valid; for each of the first N evaluated users (sorted ids), the
ItemCF top-1 item for the test-stage history (last 20 items) is explained, smollm2-135m
zero-shot, greedy (`--threads` torch threads), the library's default explain settings.

- **before**: the old explainer's prompt (`eval/prompts_explain_titles/explain.j2`: the user's
  last 10 titles with category, the recommended item with its description, no evidence) and
  its anchor (the most recent same-category history item); its first answer (the old
  title-only retry is not re-run).
- **after**: `reranker.explain.Explainer` (evidence prompt, the check, one regeneration, the
  template sentence), with the co-choice counts from the fit data (train+valid).

Every text is checked by `reranker.explain_check` against the evidence for the history item
it cites (before: the old anchor's item), the unsupported-claim rate is the share of
explanations with at least one unsupported mention. Written: the Markdown report and a JSON
of every explanation (eval/results/explanations.json).

    nice -n 5 .venv/bin/python eval/explanations.py [--n 200] [--threads 1] [--resume LOG]
        [--reuse-before eval/results/explanations.json]   # the old explainer's texts of a previous run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "eval"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

OLD_PROMPTS = ROOT / "eval" / "prompts_explain_titles"


def _old_anchor(ex: Any, history: list, cand: Any) -> tuple[Any, str]:
    """The old explainer's cited item (most recent same-category history item) and anchor."""
    from reranker.ranking.item_text import clean_title

    same = [h for h in history if cand.category and h.category == cand.category]
    pick = (same or list(history))[-1]
    return pick, f'Because you chose "{clean_title(pick.title)}", you may like "{clean_title(cand.title)}" because it'


def _old_prompt(ex: Any, old_tpl: Any, history: list, cand: Any, context: dict) -> str:
    from reranker.ranking.item_text import VALUE_CHARS, clean_field, clean_text, clean_title

    def view(it: Any, with_text: bool) -> dict:
        text = ""
        if with_text and it.text:
            text = ex.backend.truncate_tokens(clean_text(it.text), ex.config.item_text_tokens)
        return {"title": clean_title(it.title) or clean_title(it.item_id),
                "category": clean_field(it.category, VALUE_CHARS), "text": text}

    body = old_tpl.render(history=[view(h, False) for h in history], candidate=view(cand, True),
                          context=context, strict=False)
    return ex.backend.chat_prompt(body) + _old_anchor(ex, history, cand)[1]


def run_dataset(name: str, ds: Any, n: int, backend: Any, log: Any, done: dict | None = None,
                before_rows: dict | None = None) -> list[dict]:
    from reranker.data.splits import leave_one_out
    from reranker.explain import Explainer, ExplainerConfig
    from reranker.explain_evidence import CoChoices, evidence_for
    from reranker.llm.prompts import PromptLibrary
    from reranker.registry import RETRIEVERS, BuildContext
    from reranker.types import Ranking

    split = leave_one_out(ds)
    fit = split.train_valid()
    itemcf = RETRIEVERS.build({"type": "itemcf", "k": 50, "similarity": "cosine", "feedback": "implicit"},
                              BuildContext(fit_data=fit))
    hists = split.histories("test", cap=20)
    users = split.users[:n]
    ex = Explainer(backend=backend, catalog=ds, explain_config=ExplainerConfig(top_k=1))
    old_tpl = PromptLibrary(OLD_PROMPTS).get("explain")
    vocab = ex.vocabulary()
    rows = []
    done = done or {}
    for j, u in enumerate(users):
        if (name, u) in done:  # resumed from an earlier run's log (--resume)
            rows.append(done[(name, u)])
            log.write(json.dumps(rows[-1]) + "\n")
            continue
        h = hists[u]
        top = itemcf.retrieve(h, 1)[0].item_id
        hist_items = [ds.item(i) for i in h.last(ex.max_history).items]
        cand = ds.item(top)
        co = CoChoices.from_data(fit, [*(x.item_id for x in hist_items), top])
        # before: the old prompt, the old anchor, first answer (or its text from --reuse-before:
        # the old explainer does not depend on the checker; the text is checked again below)
        t = time.perf_counter()
        pick, anchor = _old_anchor(ex, hist_items, cand)
        old = (before_rows or {}).get((name, u))
        if old is not None and old["item"] == top:
            before, t_before = old["before"], old["before_s"]
        else:
            g = backend.generate([_old_prompt(ex, old_tpl, hist_items, cand, {})], ex.settings.max_new_tokens,
                                 repetition_penalty=ex.settings.repetition_penalty)[0]
            before = ex.tidy(g.text, anchor)
            t_before = time.perf_counter() - t
        ev_before = evidence_for(pick, cand, co, h.user_id)
        ch_before = vocab.check(before, ev_before)
        # after: the library's explainer
        t = time.perf_counter()
        out = ex.explain(h, Ranking.from_order([top], {}), interactions=fit)
        t_after = time.perf_counter() - t
        d = out.diagnostics["explanations"][top]
        shown = out[0].explanation or ""
        ev_after = evidence_for(ds.item(d["evidence"]["cited"]), cand, co, h.user_id)
        ch_shown = vocab.check(shown, ev_after)
        rows.append({
            "dataset": name, "user": u, "item": top, "title": cand.title,
            "before": before, "before_reused": old is not None and old["item"] == top, "before_unsupported": ch_before.unsupported, "before_s": t_before,
            "after": shown, "source": d["source"], "first_unsupported": d["first_unsupported"],
            "retry_unsupported": d.get("retry_unsupported"), "shown_unsupported": ch_shown.unsupported,
            "evidence": d["evidence"], "after_s": t_after,
        })
        log.write(json.dumps(rows[-1]) + "\n")
        log.flush()
        print(f"{name} {j + 1}/{len(users)} before {'ok' if not ch_before.unsupported else 'FLAG'} "
              f"after {d['source']} ({t_before:.1f}s + {t_after:.1f}s)", file=sys.stderr, flush=True)
    return rows


def _rate(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.1f}%)" if n else "0/0"


def _kinds(lists: list[list[str]]) -> str:
    c = Counter(m.rsplit("(", 1)[1].rstrip(")") for lst in lists for m in lst)
    return ", ".join(f"{k} {v}" for k, v in c.most_common()) or "-"


def report(rows: list[dict], args: Any, machine: str, wall: float) -> str:
    from reranker.explain_check import ClaimVocabulary  # noqa: F401  (documented below)

    lines = [
        "# Faithful explanations (issue 18, item 5)",
        "",
        f"Command: `nice -n 5 .venv/bin/python eval/explanations.py --n {args.n} --threads {args.threads}"
        + (f" --reuse-before {args.reuse_before}" if args.reuse_before else "")
        + f"` ({wall / 60:.0f} min wall).",
        f"Host: {machine}.",
        "",
        "Protocol: chronological leave-one-out; ItemCF (k=50, cosine, implicit) fitted on train+valid; the",
        f"ItemCF top-1 item of each of the first {args.n} evaluated users (sorted ids) explained from the",
        "test-stage history (last 20 items; the explainer shows or cites the last 10); smollm2-135m zero-shot,",
        f"greedy, {args.threads} torch thread(s), default explain settings (max_new_tokens 40, repetition penalty 1.1, "
        "anchor on).",
        "ml-100k: /work/shared/data/ml-100k; demo world: `generate_world(seed=0)` (500 users x 400 items).",
        "",
        "- **before**: the old explainer's titles-only prompt (`eval/prompts_explain_titles/explain.j2`) and",
        "  anchor (most recent same-category history item); its first answer (its title-only retry not re-run)"
        + ("; the texts of the previous run reused (`--reuse-before`), checked again." if args.reuse_before else "."),
        "- **after**: `reranker.explain.Explainer` with `explain.mode: llm`: the evidence prompt, the check,",
        "  one regeneration with the strict prompt, else the template sentence; co-choice counts from train+valid.",
        "",
        "Every text is checked by `reranker.explain_check` (the catalogue's categories, attribute values,",
        "titles, known product nouns, price/quality claims, capitalised names and numbers in digits) against the evidence",
        "for the history item it cites, with attribution: a term said of the recommended item must be in the",
        "shared evidence or the recommended item's own text; a term only the cited item has passes only where",
        "the sentence says it of the cited item (the rule: `reranker/explain_check.py`, step 3).",
        "*Unsupported-claim rate*: the share of explanations with at least one unsupported mention, as the",
        "checker sees it (its limits: README, `reranker/explain_check.py`).",
        "",
        "| data | n | before: unsupported | after, first answer: unsupported | after, retry: unsupported | shown: LLM first / LLM retry / template | shown: unsupported | median s per explanation before / after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        n = len(rs)
        bu = sum(bool(r["before_unsupported"]) for r in rs)
        fu = sum(bool(r["first_unsupported"]) for r in rs)
        retried = [r for r in rs if r["retry_unsupported"] is not None]
        ru = sum(bool(r["retry_unsupported"]) for r in retried)
        src = Counter(r["source"] for r in rs)
        su = sum(bool(r["shown_unsupported"]) for r in rs)
        lines.append(
            f"| {name} | {n} | {_rate(bu, n)} | {_rate(fu, n)} | {_rate(ru, len(retried))} | "
            f"{src.get('llm', 0)} / {src.get('llm-retry', 0)} / {src.get('template', 0)} "
            f"(template {100 * src.get('template', 0) / n:.1f}%) | {_rate(su, n)} | "
            f"{statistics.median(r['before_s'] for r in rs):.1f} / {statistics.median(r['after_s'] for r in rs):.1f} |"
        )
    lines += ["", "Unsupported mentions by kind (all flagged mentions):", ""]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        lines.append(f"- {name}: before: {_kinds([r['before_unsupported'] for r in rs])}; "
                     f"after, first answer: {_kinds([r['first_unsupported'] for r in rs])}")
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        lines += ["", f"## Examples: {name}", "", "### the first 10 shown texts (the hand reading's sample)", ""]
        lines += [f"{j + 1}. user {r['user']}, item \"{r['title']}\" ({r['source']}): {r['after']}"
                  for j, r in enumerate(rs[:10])]
        lines.append("")
        groups = [
            ("before, flagged (old explainer)", [r for r in rs if r["before_unsupported"]],
             lambda r: f"{r['before']}  \n  flagged: {', '.join(r['before_unsupported'])}"),
            ("before, passed the check", [r for r in rs if not r["before_unsupported"]], lambda r: r["before"]),
            ("after, first answer shown", [r for r in rs if r["source"] == "llm"], lambda r: r["after"]),
            ("after, regenerated answer shown", [r for r in rs if r["source"] == "llm-retry"],
             lambda r: f"{r['after']}  \n  first answer flagged: {', '.join(r['first_unsupported'])}"),
            ("after, template fallback shown", [r for r in rs if r["source"] == "template"],
             lambda r: f"{r['after']}  \n  flagged: first {', '.join(r['first_unsupported'])}; "
                       f"retry {', '.join(r['retry_unsupported'] or [])}"),
        ]
        for title, grp, fmt in groups:
            lines += [f"### {title} ({len(grp)} of {len(rs)}; first 10)", ""]
            lines += [f"- user {r['user']}, item \"{r['title']}\": {fmt(r)}" for r in grp[:10]] or ["- (none)"]
            lines.append("")
    return "\n".join(lines) + "\n"


def _read_rows(path: str) -> list[dict]:
    """The rows of a --log file (one JSON a line) or of the report's JSON (a list)."""
    text = Path(path).read_text()
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="users per data set")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    ap.add_argument("--datasets", default="ml-100k,demo-world")
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "explanations.md"))
    ap.add_argument("--log", default="/tmp/explanations.jsonl", help="one JSON line per explanation, as it goes")
    ap.add_argument("--resume", default=None, help="reuse the explanations of an earlier run's --log file")
    ap.add_argument("--report-from", default=None, help="write the report from a --log file (a cut run)")
    ap.add_argument("--reuse-before", default=None,
                    help="take the 'before' texts (and their timings) from an earlier run's JSON or --log file; "
                         "they are checked again, the 'after' arm is generated anew")
    args = ap.parse_args()
    if args.report_from:
        from _bench_common import machine

        rows = _read_rows(args.report_from)
        out = Path(args.out)
        out.write_text(report(rows, args, machine() + " (report written from the run's log)", float("nan")))
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
        print(out.read_text())
        return

    from _bench_common import machine

    from reranker.data import load
    from reranker.data.synthetic import generate_world
    from reranker.llm.base import LLMConfig
    from reranker.llm.hf import load_backend

    host = machine()
    t0 = time.perf_counter()
    backend = load_backend(LLMConfig(model="smollm2-135m", threads=args.threads))
    rows: list[dict] = []
    done = {}
    if args.resume:
        for r in _read_rows(args.resume):
            done[(r["dataset"], r["user"])] = r
    before_rows = {(r["dataset"], r["user"]): r for r in _read_rows(args.reuse_before)} if args.reuse_before else {}
    with open(args.log, "w") as log:
        for name in args.datasets.split(","):
            ds = load(args.data, format="auto") if name == "ml-100k" else generate_world(seed=0).dataset
            rows += run_dataset(name, ds, args.n, backend, log, done, before_rows)
    out = Path(args.out)
    out.write_text(report(rows, args, host, time.perf_counter() - t0))
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()

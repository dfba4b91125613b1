"""Summary tables of issue 18's select-only decoding and CF-hint runs, from their results.json.

    python eval/issue18_tables.py select-only --load "9.0 (2 cores)" > eval/results/select_only.md
    python eval/issue18_tables.py cf-hint --load "..." > eval/results/cf_hint.md

Reads eval/results/ml100k/<kind>-a/results.json and -b/results.json (written by
`reranker eval --config configs/ml100k-<kind>-a.yaml` / `-b.yaml`) and prints, per regime, each
row's NDCG@10 with its CI, the paired difference against the run's `compare_to` row on the
same users, the output validity (listwise) and the cost per user. Optionally (`--tiefair`)
checks the free listwise / plain pointwise rows against the tie-fair reports' per-user values
on the same users (the same computation: they must be equal).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results" / "ml100k"


def ci(x: dict[str, Any] | None, digits: int = 3) -> str:
    if not x:
        return "n/a"
    return f"{x['mean']:.{digits}f} [{x['ci_lo']:.{digits}f}, {x['ci_hi']:.{digits}f}]"


def pct(x: dict[str, Any] | None) -> str:
    return "n/a" if not x else f"{100 * x['mean']:.0f}%"


def num(x: dict[str, Any] | None, digits: int = 0) -> str:
    return "n/a" if not x else f"{x['mean']:,.{digits}f}"


def table(path: Path, with_validity: bool) -> list[str]:
    r = json.loads(path.read_text())
    run = r["runs"][0]
    ref = run.get("paired_vs")
    head = ["ranker", "params", "users", "NDCG@10", f"paired vs {ref}", "HR@1 (B) / Recall@10 (A)"]
    if with_validity:
        head += ["valid", "fully valid", "filled in", "hallucinated", "duplicate"]
    head += ["s/user", "tokens in/user", "tokens out/user"]
    out = [f"Status: {r['status']}; wall time {r.get('wall_time_s') or 0:.0f} s; config "
           f"`{Path(r.get('config_file') or '').name}`", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in run["rankers"].items():
        s, d = e.get("summary") or {}, e.get("diagnostics") or {}
        params = {k: v for k, v in (e.get("params") or {}).items() if k not in ("model", "threads")}
        pv = (e.get("paired") or {}).get("ndcg@10")
        hr1 = s.get("hr@1") or s.get("recall@10")
        row = [name, "`" + json.dumps(params, separators=(",", ":")) + "`" if params else "",
               str(e.get("n_users")), ci(s.get("ndcg@10")), ci(pv) if pv else "(reference)" if name == ref else "",
               ci(hr1)]
        if with_validity:
            row += [pct(d.get("valid_rate")), pct(d.get("fully_valid_rate")), pct(d.get("filled_in_rate")),
                    pct(d.get("hallucination_rate")), pct(d.get("duplicate_rate"))]
        row += [num(d.get("seconds_per_user"), 2), num(d.get("tokens_in_per_user")),
                num(d.get("tokens_out_per_user"))]
        out.append("| " + " | ".join(row) + " |")
    pairs = run.get("pairs") or []
    for p in pairs:
        out.append("")
        out.append(f"Paired {p['a']} - {p['b']}: NDCG@10 {ci(p['diff']['ndcg@10'])}")
    return out


def same_as_tiefair(path: Path, row: str, regime: str, tiefair_row: str) -> str:
    """Compare with the tie-fair run of the regime that ranked the most users with this row
    (`tiefair-a-listwise` holds regime A's 200-user listwise row, `tiefair-a` 50)."""
    mine = json.loads(path.read_text())["runs"][0]["rankers"].get(row)
    if mine is None:
        return ""
    refs = []
    for ref_path in sorted(RESULTS.glob(f"tiefair-{regime}*/results.json")):
        ref_row = json.loads(ref_path.read_text())["runs"][0]["rankers"].get(tiefair_row)
        if ref_row is not None:
            refs.append((len(ref_row["per_user"]["ndcg@10"]), ref_path.parent.name, ref_row))
    if not refs:
        return ""
    _, ref_name, ref = max(refs, key=lambda r: r[0])
    a, b = mine["per_user"]["ndcg@10"], ref["per_user"]["ndcg@10"]
    both = [u for u in a if u in b]
    n = len(both)
    equal = sum(abs(a[u] - b[u]) < 1e-9 for u in both)
    return (f"Check: `{row}` here and `{tiefair_row}` of {ref_name}/results.json (the same computation) "
            f"agree on {equal} of the {n} users both ranked.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["select-only", "cf-hint"])
    ap.add_argument("--load", default="", help="the host load during the runs, as measured (uptime)")
    args = ap.parse_args()
    validity = args.kind == "select-only"
    base = "llm-listwise" if validity else "llm-pointwise"
    lines: list[str] = []
    for regime in ("a", "b"):
        path = RESULTS / f"{args.kind}-{regime}" / "results.json"
        if not path.is_file():
            lines += [f"## Regime {regime.upper()}", "", "not run", ""]
            continue
        lines += [f"## Regime {regime.upper()}", "", f"`nice -n 5 reranker eval --config configs/ml100k-{args.kind}-{regime}.yaml`", ""]
        lines += table(path, validity)
        check = same_as_tiefair(path, base, regime, base)
        if check:
            lines += ["", check]
        lines.append("")
    if args.load:
        lines += [f"Host load during the runs: {args.load}.", ""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

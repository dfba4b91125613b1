#!/usr/bin/env bash
# The evaluation harness's per-user overhead on about 6,000 users (issue 20): the trivial rows
# (random, pop, ItemCF) of regime B on generated data, wall time of `reranker eval` for two trees of
# this repository side by side (e.g. before and after a change), one run each by default.
#   bash eval/bench_harness.sh OLD_TREE NEW_TREE [REPEATS]
# OLD_TREE / NEW_TREE: folders holding a checkout (`git worktree add --detach /tmp/old COMMIT`);
# each is put first on PYTHONPATH, the venv is this repository's.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1; new=$2; reps=${3:-1}
work=$(mktemp -d)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_WAIT_POLICY=PASSIVE
.venv/bin/python - "$work" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "eval")
import bench_scale as B
work = Path(sys.argv[1])
(work / "data").mkdir()
# the 1M generator's 6,000 users x 3,700 items, cut to each user's first 40 interactions
frame = B.generate(*B.SIZES["1M"]).groupby("user_id").head(40)
frame.to_parquet(work / "data" / "interactions.parquet")
(work / "exp.yaml").write_text(f"""name: harness-6k
data: {{path: {work}/data, format: parquet}}
protocol: {{regime: b, n_boot: 1000, compare_to: itemcf, position_bias: {{enabled: false}}}}
rankers:
  - {{name: random, type: random}}
  - {{name: pop, type: pop}}
  - {{name: itemcf, type: itemcf, params: {{k: 20, feedback: implicit}}}}
""")
print(f"{len(frame):,} interactions, {frame.user_id.nunique():,} users, {frame.item_id.nunique():,} items")
PY
uptime
for rep in $(seq "$reps"); do
  for tree in "$old" "$new"; do
    s=$(date +%s.%N)
    PYTHONPATH=$tree .venv/bin/reranker eval --config "$work/exp.yaml" --out "$work/out" --no-cache --no-progress >/dev/null 2>&1
    e=$(date +%s.%N)
    echo "$tree run $rep: $(echo "$e - $s" | bc) s"
  done
done
uptime
rm -rf "$work"

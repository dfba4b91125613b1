"""The README's `reranker ...` commands run, in the README's order, on tiny data.

Every command line in a fenced ``bash`` block of README.md that calls `reranker` is either run
here (in a scratch folder, on the data it names or a tiny stand-in, with the sizes of slow ones
cut) or listed in `SKIP` with the reason and the test that covers it instead. A command added
to the README is run by default, so the README cannot drift from the CLI unnoticed.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reranker.cli import main

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

SKIP: dict[str, str] = {
    r"^reranker data fetch ml-100k$": "needs the network; tests/test_data_fetch.py runs the same code "
    "against a loopback HTTP server",
    r"^reranker data fetch ml-1m /data/ml-1m --from ~/Downloads/ml-1m\.zip$": "needs the user's downloaded "
    "archive; tests/test_data_fetch.py::test_from_file_offline_and_wrong_file covers --from FILE",
    r"^(RERANKER_API_KEY=\S+ )?reranker serve\b": "a long-running server; tests/test_serve.py starts it on a "
    "loopback port",
    r"finetune-ml100k\.yaml --resume$": "hours of fine-tuning on ml-100k; tests/test_finetune.py covers --resume",
    r"^reranker batch\b": "needs the user's requests file (and a Ray cluster for --address auto); "
    "tests/test_batch.py runs `reranker batch` through the CLI on generated requests and both engines on a local Ray",
}

# Sizes cut so the whole file runs in about a minute or two (the command is otherwise as printed).
SHRINK: list[tuple[str, str]] = [
    (r"^(reranker eval .*)--users \d+", r"\1--users 2 --no-progress --no-cache"),
    (r"^reranker demo$", "reranker demo --users 60 --items 40 --eval-users 5 --no-explain"),
]


def readme_commands() -> list[str]:
    """`reranker` command lines of the README's bash blocks (continuations joined, comments cut)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            words = line.split()
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words = words[1:]
            if words and words[0] == "reranker":
                out.append(line)
    return out


def skip_reason(cmd: str) -> str | None:
    return next((why for pat, why in SKIP.items() if re.search(pat, cmd)), None)


def _scratch(tmp: Path) -> None:
    """The scratch folder: the repo's configs (the fine-tuning demo cut to a few steps), its
    examples, and the files the README's own-data example names."""
    (tmp / "configs").mkdir()
    for cfg in (REPO / "configs").glob("*.yaml"):
        (tmp / "configs" / cfg.name).symlink_to(cfg)
    (tmp / "configs" / "finetune-demo.yaml").unlink()
    ft = yaml.safe_load((REPO / "configs" / "finetune-demo.yaml").read_text(encoding="utf-8"))
    ft.update(max_steps=2, save_every=2, log_every=1, validation={"users": 4, "n_negatives": 4, "every": 2},
              data={"synthetic": {"seed": 0, "n_users": 30, "n_items": 30}})
    (tmp / "configs" / "finetune-demo.yaml").write_text(yaml.safe_dump(ft), encoding="utf-8")
    (tmp / "examples").symlink_to(REPO / "examples")
    rows = ["User-ID;ISBN;Book-Rating"] + [f"u{u};b{(u * 7 + k) % 9};{1 + (u + k) % 10}"
                                          for u in range(6) for k in range(4)]
    (tmp / "ratings.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    books = ["ISBN;Book-Title"] + [f"b{i};Book number {i}" for i in range(9)]
    (tmp / "books.csv").write_text("\n".join(books) + "\n", encoding="utf-8")


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    cmds = readme_commands()
    assert len(cmds) >= 15, cmds  # the parser found the README's CLI section
    for pat in SKIP:  # no stale entries: each skip still matches a README command
        assert any(re.search(pat, c) for c in cmds), f"SKIP entry {pat!r} matches no README command"


@pytest.mark.slow
def test_readme_commands_run(tmp_path, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip("needs ../shared/data/ml-100k (the README's offline copy)")
    work = tmp_path / "repo"  # the README's commands run from the repository root, ../shared beside it
    work.mkdir()
    (tmp_path / "shared").symlink_to(SHARED)
    _scratch(work)
    monkeypatch.chdir(work)
    env = {"RERANKER_DATA": str(tmp_path / "data-cache")}
    ran, failures = [], []
    # the data installs first: the README's first screen evaluates on ml-100k before its CLI section
    # shows the offline install (`reranker data fetch ml-100k --from ../shared/...`)
    cmds = readme_commands()
    cmds = [c for c in cmds if c.startswith("reranker data fetch")] + [
        c for c in cmds if not c.startswith("reranker data fetch")]
    for cmd in cmds:
        if skip_reason(cmd):
            continue
        line = cmd.replace("~/.cache/reranker/data", env["RERANKER_DATA"])
        for pat, repl in SHRINK:
            line = re.sub(pat, repl, line)
        args = shlex.split(line)
        while args and args[0] != "reranker":  # VAR=value prefixes
            key, _, value = args.pop(0).partition("=")
            env[key] = value
        result = CliRunner().invoke(main, args[1:], env=env, catch_exceptions=True)
        ran.append(line)
        if result.exit_code != 0:
            failures.append(f"{line}\n  exit {result.exit_code}: {result.output[-800:]}\n  {result.exception!r}")
    assert not failures, "\n\n".join(failures)
    assert any(c.startswith("reranker eval") for c in ran) and any(c.startswith("reranker rerank") for c in ran)
    assert os.path.isfile(work / "runs" / "b" / "report.md")

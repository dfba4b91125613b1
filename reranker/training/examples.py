"""Instruction examples for fine-tuning, drawn from the TRAINING split only.

For each user, a few target positions p in their training history (most recent first, seeded);
the example shows the (capped) history before p, and a candidate list holding the item at p
(the "next item") plus negatives: the CF retriever's top items for that prefix history (a
retriever fitted on the training split, the prefix passed as an ad-hoc history so no later
item informs it) mixed with uniformly drawn items the user never touched, shuffled (seeded).

Order: the training histories come from `split.train` (`Dataset.histories`), so ties in time
follow the dataset's `tie_order` (`FinetuneConfig.ties` / `tie_seed`), the same order as the
split's validation and test targets.

Leakage rule: a user's validation and test items (and every later item of theirs) never appear
as a negative, and the validation/test items never appear in any example of that user at all.

Examples are rendered to text by the rankers' public prompt method (`build_prompts` of the
pointwise, listwise and verbalizer rankers, candidates shown in stage-1 order), so the model is
trained on exactly the prompts it will see at inference:

- pointwise: "Yes" for the next item, "No" for each of `pointwise_negatives` sampled negatives;
- verbalizer: the letter of the next item;
- listwise: the numbers of the next item first, then the other candidates in CF-score order,
  followed by the end-of-turn token.

Only the answer tokens carry a loss (labels are -100 elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from ..types import Candidate, History
from .config import ExampleConfig, Mode

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """One target position of one user: history before it, candidates (shown order), target."""

    user_id: str
    position: int
    history: History
    candidates: tuple[str, ...]
    target: str
    cf_order: tuple[str, ...]
    """The non-target candidates ordered by the CF retriever's score (best first)."""
    scores: tuple[float, ...] = ()
    """The CF retriever's score of each of `candidates` (shown order) for the history: the
    stage-1 scores a `cf_hint` prompt shows as ranks or bands."""


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of prompt + answer; the loss is on positions >= n_prompt."""

    input_ids: tuple[int, ...]
    n_prompt: int
    user_id: str
    mode: str
    group: int = -1
    """Index of the example it came from (pointwise Yes/No sequences of one example share
    their prompt prefix: the trainer runs that prefix once)."""

    def __len__(self) -> int:
        return len(self.input_ids)

    def labels(self) -> list[int]:
        return [IGNORE] * self.n_prompt + list(self.input_ids[self.n_prompt :])


def _user_rng(seed: int, user_id: str, salt: str) -> np.random.Generator:
    from ..evaluation.protocol import user_rng

    return user_rng(seed, user_id, salt)


def build_examples(split, config: ExampleConfig, seed: int = 0, retriever=None) -> list[Example]:
    """Examples from `split.train` only (see module docstring). `split` is a LeaveOneOutSplit.

    `retriever`: an already fitted CF retriever (fitted on `split.train`); built from the
    config when None.
    """
    from ..evaluation.protocol import user_order

    train = split.train
    item_ids = np.asarray([str(i) for i in train.item_ids], dtype=object)
    item_pos = {x: i for i, x in enumerate(item_ids.tolist())}
    held_out: dict[str, set[str]] = {}
    for frame in (split.validation, split.test):
        for u, i in zip(frame["user_id"].astype(str), frame["item_id"].astype(str), strict=True):
            held_out.setdefault(u, set()).add(i)
    full = train.histories(cap=None)
    users = user_order(full.keys(), seed)
    if config.max_users is not None:
        users = users[: config.max_users]
    users = sorted(users)

    picks: list[tuple[str, int, History]] = []
    for u in users:
        h = full[u]
        bad = held_out.get(u, set())
        eligible = [
            p for p in range(config.min_history, len(h.items)) if h.items[p] not in bad
        ]
        if not eligible:
            continue
        rng = _user_rng(seed, u, "positions")
        # the most recent position always, the rest sampled
        k = min(config.positions_per_user, len(eligible))
        rest = eligible[:-1]
        chosen = [eligible[-1]] + (
            sorted(rng.choice(rest, size=k - 1, replace=False).tolist(), reverse=True) if k > 1 else []
        )
        for p in chosen:
            prefix = History(
                user_id=u,
                items=h.items[:p],
                ratings=None if h.ratings is None else h.ratings[:p],
                timestamps=None if h.timestamps is None else h.timestamps[:p],
            )
            keep = [j for j, it in enumerate(prefix.items) if it not in bad]
            if len(keep) < len(prefix.items):
                prefix = _subset(prefix, keep)
            picks.append((u, p, prefix))
    if not picks:
        raise DataError(
            f"no training examples: no user has more than {config.min_history} training items "
            "(lower examples.min_history or use more data)"
        )

    if retriever is None:
        retriever = make_retriever(config, train)
    n_neg = config.n_candidates - 1
    n_cf = int(round(n_neg * config.cf_fraction))
    # ad-hoc (user_id=None) prefix histories: CF sees only what came before the target
    adhoc = [History(None, pre.items, pre.ratings) for _, _, pre in picks]
    cf_lists = retriever.retrieve_batch(adhoc, min(len(item_ids), n_cf + 2 * config.max_history + 32))

    examples: list[Example] = []
    for (u, p, prefix), cf in zip(picks, cf_lists, strict=True):
        h = full[u]
        target = h.items[p]
        known = set(h.items) | held_out.get(u, set())
        cf_ids = [c.item_id for c in cf if c.item_id not in known][:n_cf]
        rng = _user_rng(seed, f"{u}#{p}", "candidates")
        from ..evaluation.protocol import sample_negatives

        try:
            rand = sample_negatives(known | set(cf_ids), target, item_ids, n_neg - len(cf_ids), rng, item_pos)
        except ValueError:
            log.debug("user %s: too few unseen items for %d negatives; skipped", u, n_neg)
            continue
        cands = [target, *cf_ids, *rand]
        shown = tuple(cands[i] for i in rng.permutation(len(cands)))
        examples.append(
            Example(u, p, prefix.last(config.max_history), shown, target, tuple(cf_ids + rand))
        )
    # the CF scores of every candidate for the prefix: the non-target ones in CF-score order
    # (listwise targets), all of them as the stage-1 scores of `cf_hint` prompts
    scores = retriever.score_items(
        [History(None, e.history.items, e.history.ratings) for e in examples],
        [list(e.candidates) for e in examples],
    )
    out = []
    for e, s in zip(examples, scores, strict=True):
        by_id = {i: float(x) for i, x in zip(e.candidates, s, strict=True)}
        order = [i for _, i in sorted((-by_id[c], i) for i, c in enumerate(e.cf_order))]
        out.append(
            Example(e.user_id, e.position, e.history, e.candidates, e.target,
                    tuple(e.cf_order[i] for i in order), tuple(by_id[c] for c in e.candidates))
        )
    log.info("built %d examples from %d users", len(out), len({e.user_id for e in out}))
    return out


def _subset(h: History, keep: Sequence[int]) -> History:
    return History(
        user_id=h.user_id,
        items=[h.items[j] for j in keep],
        ratings=None if h.ratings is None else [h.ratings[j] for j in keep],
        timestamps=None if h.timestamps is None else [h.timestamps[j] for j in keep],
    )


def make_retriever(config: ExampleConfig, train: Any) -> Any:
    """The CF retriever named by the config (implicit feedback), built through the registry and
    fitted on the training split."""
    from ..registry import RETRIEVERS, BuildContext

    spec = {"type": config.retriever, "k": config.retriever_k, "feedback": "implicit"}
    return RETRIEVERS.build(spec, BuildContext(fit_data=train))


# ----------------------------------------------------------------------------- rendering
def make_ranker(mode: Mode, backend: Any, catalog: Any, max_history: int, max_prompt_tokens: int | None,
                **options: Any) -> Any:
    """The inference ranker of `mode` over `backend` (the registry's LLM ranker with the
    backend's model settings; used for rendering and validation)."""
    from ..registry import MODE_TO_TYPE, RANKERS, BuildContext

    spec = {**backend.config.model_dump(), "type": MODE_TO_TYPE[mode], "max_history": max_history,
            "max_prompt_tokens": max_prompt_tokens, **options}
    return RANKERS.build(spec, BuildContext(catalog=catalog, backend=backend), where="ranker")


def render_example(ranker, mode: Mode, example: Example, rng: np.random.Generator,
                   pointwise_negatives: int = 1) -> list[tuple[str, str]]:
    """(prompt, answer) pairs for one example, rendered by the ranker's own prompt code.

    A ranker with `cf_hint` shows each candidate's rank or band among the whole list by the
    example's CF scores (`Example.scores`), as at inference over a stage-1 list."""
    hint = getattr(ranker, "cf_hint", "none") != "none"
    if hint and len(example.scores) != len(example.candidates):
        raise DataError("cf_hint: the example has no CF scores for its candidates (build it with build_examples)")
    cands = [Candidate(i, example.scores[j] if hint else 0.0, "train") for j, i in enumerate(example.candidates)]
    if mode == "pointwise":
        negs = [c for c in cands if c.item_id != example.target]
        k = min(pointwise_negatives, len(negs))
        picked = [negs[i] for i in sorted(rng.choice(len(negs), size=k, replace=False).tolist())]
        target = next(c for c in cands if c.item_id == example.target)
        if hint:  # the hint is a rank / band within the whole list: render it all, keep these
            every, _ = ranker.build_prompts(example.history, cands)
            at = {c.item_id: j for j, c in enumerate(cands)}
            prompts = [every[at[c.item_id]] for c in (target, *picked)]
        else:
            prompts, _ = ranker.build_prompts(example.history, [target, *picked])
        return [(prompts[0], ranker.labels[0])] + [(p, ranker.labels[1]) for p in prompts[1:]]
    pos = {c.item_id: j for j, c in enumerate(cands)}
    built = ranker.build_prompts(example.history, cands, orders=[list(range(len(cands)))])
    if mode == "verbalizer":
        return [(built.prompts[0], built.label_of(0, pos[example.target]))]
    # listwise (PALR): numbers of the target first, then the rest in CF order
    order = [example.target, *example.cf_order]
    answer = ", ".join(built.label_of(0, pos[i]) for i in order)
    prompt = built.prompts[0]
    return [(prompt, answer)]


def tokenize_pair(backend, prompt: str, answer: str, mode: Mode, user_id: str) -> TokenizedExample:
    """Prompt ids + answer ids. Pointwise / verbalizer: the answer is the label's first token
    (exactly the token the ranker scores); listwise: the answer text then end-of-turn."""
    ids = backend.encode(prompt)
    if mode == "listwise":
        ans = backend.encode(answer)
        eos = backend.tokenizer.eos_token_id
        if eos is not None:
            ans = [*ans, int(eos)]
    else:
        ans = [backend.label_token_ids([answer])[0]]
    return TokenizedExample(tuple(ids) + tuple(ans), len(ids), user_id, mode)


def tokenize_examples(ranker, mode: Mode, examples: Sequence[Example], seed: int,
                      pointwise_negatives: int, max_seq_len: int,
                      progress: bool = False) -> tuple[list[TokenizedExample], int]:
    """Render and tokenize every example; returns (sequences, number dropped as too long)."""
    from tqdm.auto import tqdm

    out: list[TokenizedExample] = []
    dropped = 0
    for k, e in enumerate(tqdm(examples, desc="render examples", disable=not progress, leave=False)):
        rng = _user_rng(seed, f"{e.user_id}#{e.position}", "render")
        for prompt, answer in render_example(ranker, mode, e, rng, pointwise_negatives):
            t = tokenize_pair(ranker.backend, prompt, answer, mode, e.user_id)
            t = TokenizedExample(t.input_ids, t.n_prompt, t.user_id, t.mode, k)
            if len(t) > max_seq_len:
                dropped += 1
                continue
            out.append(t)
    if dropped:
        log.warning("%d sequence(s) longer than max_seq_len=%d dropped", dropped, max_seq_len)
    return out, dropped


def fingerprint(examples: Sequence[Example], tokens: Sequence[TokenizedExample]) -> str:
    """SHA-256 over the examples (users, positions, histories, candidates, targets) and the
    exact token ids trained on."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.user_id, e.position, list(e.history.items), list(e.candidates),
                             e.target, list(e.cf_order)]).encode())
    for t in tokens:
        h.update(np.asarray(t.input_ids, dtype=np.int64).tobytes())
        h.update(str(t.n_prompt).encode())
    return h.hexdigest()


__all__ = [
    "Example",
    "IGNORE",
    "TokenizedExample",
    "build_examples",
    "fingerprint",
    "make_ranker",
    "make_retriever",
    "render_example",
    "tokenize_examples",
    "tokenize_pair",
]

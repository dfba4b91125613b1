"""Select-only listwise decoding: the answer of a listwise prompt can only be a list of the
candidates' labels, each at most once.

The answer format (prompts/rank_listwise.j2, the strict parser in `reranker.ranking.parsing`)
is ``3, 1, 2``: labels separated by ``", "``, no other text. `LabelList` describes one such
answer: its labels (the strings "1".."n"), the separator, and whether every label must be
placed before the answer may end (`complete`, what the prompt asks: "Use each number from 1 to
n exactly once").

Three ways to enforce it, one per backend:

- In process (`LabelListProcessor`, used by `HFBackend.generate_label_list`): at each step only
  the tokens that keep the text a prefix of a valid answer keep their logits: digits that can
  still become an unused label, the separator after a complete unused label, and end-of-text
  once the list is complete (`LabelListState`). Valid, distinct labels in the answer format by
  construction; the model's own preference decides the order.
- llama.cpp (`gbnf_grammar`, the `grammar` field of `/v1/completions`): the format and the
  label range by grammar, exactly n labels. A GBNF grammar for "distinct" needs a state per
  subset of used labels (2^n for n labels), so distinctness is left to the parser (repeats are
  counted as `duplicate` and the missing labels filled in, in stage-1 order).
- vLLM (`label_list_regex`, `structured_outputs.regex` or the older `guided_regex`): as the
  grammar, the same limits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SEPARATOR = ", "
"""The separator of the built-in answer format (the parser also reads others)."""


@dataclass(frozen=True)
class LabelList:
    """One listwise answer's shape: `labels` (distinct, non-empty, digits or letters without
    the separator's characters), `separator` between them, and whether all must be placed
    (`complete`) before the answer may end."""

    labels: tuple[str, ...]
    separator: str = SEPARATOR
    complete: bool = True

    def __post_init__(self) -> None:
        labels = tuple(str(x) for x in self.labels)
        object.__setattr__(self, "labels", labels)
        if not labels:
            raise ValueError("a label list needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct, got {list(labels)}")
        if not self.separator:
            raise ValueError("the separator must not be empty")
        sep_chars = set(self.separator)
        for lab in labels:
            if not lab or sep_chars & set(lab):
                raise ValueError(f"label {lab!r} is empty or shares a character with the separator "
                                 f"{self.separator!r}")

    @classmethod
    def numbered(cls, n: int, separator: str = SEPARATOR, complete: bool = True) -> LabelList:
        """Labels "1".."n" (what the listwise prompt shows)."""
        return cls(tuple(str(i + 1) for i in range(n)), separator, complete)

    @property
    def alphabet(self) -> frozenset[str]:
        """Every character an answer may contain."""
        return frozenset("".join(self.labels)) | frozenset(self.separator)

    def key(self) -> dict[str, Any]:
        """What a cache key holds of it."""
        return {"labels": list(self.labels), "separator": self.separator, "complete": self.complete}


@dataclass(frozen=True)
class LabelListState:
    """Where an answer stands: labels `used` so far, the characters of the label being written
    (`partial`), or of the separator being written (`in_sep`: how many of its characters)."""

    spec: LabelList
    used: frozenset[str] = frozenset()
    partial: str = ""
    in_sep: int = 0
    _prefixes: Mapping[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def start(cls, spec: LabelList) -> LabelListState:
        prefixes: dict[str, set[str]] = {}
        for lab in spec.labels:
            for k in range(1, len(lab) + 1):
                prefixes.setdefault(lab[:k], set()).add(lab)
        return cls(spec, _prefixes={p: frozenset(s) for p, s in prefixes.items()})

    def _open(self, prefix: str, used: frozenset[str]) -> bool:
        """Whether a label not in `used` starts with `prefix`."""
        return any(lab not in used for lab in self._prefixes.get(prefix, ()))

    def step(self, text: str) -> LabelListState | None:
        """The state after `text` (one token's characters), or None when `text` leaves the
        answer format (a label that does not exist or is used, a wrong separator, a label
        after the list is complete, ...)."""
        spec, used, partial, in_sep = self.spec, self.used, self.partial, self.in_sep
        sep = spec.separator
        n = len(spec.labels)
        for ch in text:
            if in_sep:
                if ch != sep[in_sep]:
                    return None
                in_sep += 1
                if in_sep == len(sep):
                    in_sep = 0
                continue
            if partial and ch == sep[0]:
                if partial not in spec.labels or partial in used:
                    return None
                used = used | {partial}
                partial = ""
                if len(used) >= n:  # nothing left to place after a separator
                    return None
                in_sep = 1 if len(sep) > 1 else 0
                continue
            grown = partial + ch
            if not self._open(grown, used):
                return None
            partial = grown
        return LabelListState(spec, used, partial, in_sep, self._prefixes)

    @property
    def can_end(self) -> bool:
        """Whether the answer may end here: a complete unused label just written and, for a
        `complete` list, every label placed."""
        if self.in_sep or not self.partial:
            return False
        if self.partial not in self.spec.labels or self.partial in self.used:
            return False
        placed = len(self.used) + 1
        return placed == len(self.spec.labels) or not self.spec.complete

    @property
    def placed(self) -> list[str]:
        """The labels written so far (a complete label being written counts once it is ended)."""
        return sorted(self.used)


class TokenTable:
    """The vocabulary tokens that can appear in a label-list answer: each token id whose text
    is made only of the answer's characters, with that text (built once per tokenizer and
    alphabet; everything else is never allowed)."""

    def __init__(self, token_texts: Mapping[int, str], alphabet: frozenset[str], end_ids: Sequence[int]) -> None:
        self.texts = {i: t for i, t in token_texts.items() if t and set(t) <= alphabet}
        self.end_ids = tuple(dict.fromkeys(int(i) for i in end_ids))

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, alphabet: frozenset[str]) -> TokenTable:
        """From a Hugging Face tokenizer: each id decoded on its own (special tokens skipped);
        end ids: the tokenizer's EOS (and the chat template's end-of-turn when it has one)."""
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        texts: dict[int, str] = {}
        vocab = tokenizer.get_vocab()
        for piece, i in vocab.items():
            if i in special:
                continue
            # a cheap pre-filter on the raw piece (byte-level BPE spells a space "Ġ")
            if len(piece) > 12:
                continue
            text = tokenizer.decode([i], clean_up_tokenization_spaces=False)
            if text and set(text) <= alphabet:
                texts[i] = text
        ends = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            i = vocab.get(tok)
            if i is not None:
                ends.append(i)
        return cls(texts, alphabet, ends)

    def allowed(self, state: LabelListState) -> tuple[list[int], dict[int, LabelListState]]:
        """Token ids allowed after `state` (end ids included when it may end) and the state
        each non-end token leads to."""
        nxt: dict[int, LabelListState] = {}
        for i, text in self.texts.items():
            s = state.step(text)
            if s is not None:
                nxt[i] = s
        ids = list(nxt)
        if state.can_end:
            ids.extend(self.end_ids)
        return ids, nxt


class LabelListConstraint:
    """The per-sequence bookkeeping of constrained decoding over a batch: each row's state,
    advanced by the token it emitted; `allowed(row)` lists the ids it may emit next. Rows that
    emitted an end id are finished (only end ids allowed after that). Pure Python: the torch
    logits processor (`LabelListProcessor`) and the property tests drive it alike."""

    def __init__(self, spec: LabelList, table: TokenTable, rows: int) -> None:
        self.spec = spec
        self.table = table
        self.states = [LabelListState.start(spec) for _ in range(rows)]
        self.finished = [False] * rows
        self._next: list[dict[int, LabelListState]] = [{} for _ in range(rows)]
        self._memo: dict[tuple[frozenset[str], str, int], tuple[list[int], dict[int, LabelListState]]] = {}

    def allowed(self, row: int) -> list[int]:
        if self.finished[row]:
            return list(self.table.end_ids)
        s = self.states[row]
        key = (s.used, s.partial, s.in_sep)
        if key not in self._memo:
            self._memo[key] = self.table.allowed(s)
        ids, nxt = self._memo[key]
        self._next[row] = nxt
        return ids

    def advance(self, row: int, token_id: int) -> None:
        """Record the token `row` emitted (one that `allowed(row)` listed)."""
        if self.finished[row]:
            return
        if token_id in self.table.end_ids:
            self.finished[row] = True
            return
        nxt = self._next[row].get(token_id)
        if nxt is None:  # not from allowed(): recompute (never happens under the processor)
            step = self.states[row].step(self.table.texts.get(token_id, "\x00"))
            if step is None:
                raise ValueError(f"token {token_id} leaves the answer format")
            nxt = step
        self.states[row] = nxt


class LabelListProcessor:
    """A transformers `LogitsProcessor`: every token outside `LabelListConstraint.allowed` gets
    -inf. The prompt length is read on the first call (left-padded batch); each later call
    first advances each row by the token it emitted last."""

    def __init__(self, constraint: LabelListConstraint) -> None:
        self.constraint = constraint
        self.prompt_len: int | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        c = self.constraint
        if self.prompt_len is None:
            self.prompt_len = int(input_ids.shape[1])
        elif input_ids.shape[1] > self.prompt_len:
            last = input_ids[:, -1].tolist()
            for row, tok in enumerate(last):
                c.advance(row, int(tok))
        masked = torch.full_like(scores, -math.inf)
        for row in range(scores.shape[0]):
            ids = c.allowed(row)
            if ids:
                idx = torch.tensor(ids, dtype=torch.long, device=scores.device)
                masked[row, idx] = scores[row, idx]
        return masked


# ---------------------------------------------------------------------- server grammars
def _gbnf_literal(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gbnf_grammar(spec: LabelList) -> str:
    """A llama.cpp GBNF grammar for the answer: labels of `spec` separated by its separator,
    exactly n of them for a `complete` list (1 to n otherwise). Distinctness is not expressed
    (see the module docstring)."""
    n = len(spec.labels)
    label = " | ".join(_gbnf_literal(x) for x in spec.labels)
    sep = _gbnf_literal(spec.separator)
    more = f"{{{n - 1}}}" if spec.complete else f"{{0,{n - 1}}}"
    rest = f" ({sep} label){more}" if n > 1 else ""
    return f"root ::= label{rest}\nlabel ::= {label}\n"


_REGEX_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _regex_literal(s: str) -> str:
    """`s` with the regex metacharacters escaped (spaces stay plain: some guided-decoding
    engines read ``\\ `` as an unknown escape)."""
    return _REGEX_SPECIAL.sub(r"\\\1", s)


def label_list_regex(spec: LabelList) -> str:
    """The same answer as a regular expression (vLLM `structured_outputs.regex`), longer labels
    first in each alternation."""
    n = len(spec.labels)
    label = "(" + "|".join(_regex_literal(x) for x in sorted(spec.labels, key=lambda x: (-len(x), x))) + ")"
    if n == 1:
        return label
    more = f"{{{n - 1}}}" if spec.complete else f"{{0,{n - 1}}}"
    return f"{label}({_regex_literal(spec.separator)}{label}){more}"


__all__ = [
    "LabelList",
    "LabelListConstraint",
    "LabelListProcessor",
    "LabelListState",
    "SEPARATOR",
    "TokenTable",
    "gbnf_grammar",
    "label_list_regex",
]

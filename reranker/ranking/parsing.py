"""Strict parsing of a listwise LLM answer ("3, 1, 2") into a complete permutation.

The accepted grammar (the prompt shows candidates as ``[n] title`` and asks for "their numbers
only, best first, separated by commas")::

    answer  := line+                      the leading run of non-blank lines that are lists
    line    := [lead-in] label (sep label)* ["."]      (the lead-in on the first line only)
    label   := digits | "[" digits "]"    ASCII digits; "3" and "[3]" both name candidate 3
    sep     := "," | ";" | ">"  (spaces around allowed) | spaces
    lead-in := letters and spaces, then ":"        e.g. "Answer:", "Ranking:"

Blank lines before the answer are skipped; reading stops at the first line after it that is
not a list (an explanation after the answer is ignored). If the first non-blank line is not a
list, the whole answer is malformed: no number of it is read, and it counts as one
hallucinated entry. So list numbering ("1. Heat", "2) ..."), digits inside words or titles
("Hydration Vest 5L"), a bracketed label followed by a title ("[3] Heat (1995)"), decimals,
signs and prose never become labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_LABEL = r"(?:[0-9]+|\[[ \t]*[0-9]+[ \t]*\])"
_SEP = r"(?:[ \t]*[,;>][ \t]*|[ \t]+)"
_LIST = rf"{_LABEL}(?:{_SEP}{_LABEL})*[ \t]*\.?"
_FIRST_LINE = re.compile(rf"(?:[A-Za-z][A-Za-z \t]{{0,40}}:[ \t]*)?({_LIST})")
_NEXT_LINE = re.compile(rf"({_LIST})")
_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = 18
"""Longer digit runs are out of range for any list (and int() of thousands of digits fails)."""


@dataclass
class ParseResult:
    """A parsed answer. `order` holds 0-based candidate indices, every one exactly once.

    valid: distinct in-range numbers the model gave; hallucinated: out-of-range numbers, plus
    one for a malformed answer (not in the accepted grammar, see the module docstring);
    duplicate: repeats of a number already given; filled_in: candidates the model left out,
    appended in stage-1 order. `raw` is the text as generated; `numbers` the labels read from
    it (none from a malformed answer), so valid + hallucinated + duplicate == len(numbers) +
    malformed.
    """

    order: list[int]
    valid: int
    hallucinated: int
    duplicate: int
    filled_in: int
    raw: str
    numbers: list[int] = field(default_factory=list)
    malformed: bool = False

    @property
    def valid_fraction(self) -> float:
        n = len(self.order)
        return self.valid / n if n else 1.0

    def counts(self) -> dict[str, int]:
        return {
            "valid": self.valid,
            "hallucinated": self.hallucinated,
            "duplicate": self.duplicate,
            "filled_in": self.filled_in,
        }


def read_answer(text: str) -> list[int] | None:
    """The labels of an answer in the accepted grammar (module docstring), in order; [] for a
    blank answer, None for a malformed one."""
    lines = [line.strip() for line in (text or "").splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return []
    first = _FIRST_LINE.fullmatch(lines[0])
    if first is None:
        return None
    body = [first.group(1)]
    for line in lines[1:]:
        more = _NEXT_LINE.fullmatch(line)
        if more is None:
            break
        body.append(more.group(1))
    return [
        int(d) if len(d) <= _MAX_DIGITS else 10**_MAX_DIGITS
        for part in body
        for d in _DIGITS.findall(part)
    ]


def extract_numbers(text: str) -> list[int]:
    """The candidate numbers of an answer in the accepted grammar ([] when it is malformed)."""
    return read_answer(text) or []


def parse_ranking(text: str, n: int, fill_order: Sequence[int] | None = None) -> ParseResult:
    """Parse `text` naming candidates 1..n into a complete order of indices 0..n-1.

    Only an answer in the accepted grammar (module docstring) is read; a malformed one names no
    candidate and counts as one hallucinated entry. Out-of-range numbers are dropped and
    counted as hallucinated, repeats as duplicate; candidates never named are appended in
    `fill_order` (default: 0..n-1, the stage-1 order).
    """
    read = read_answer(text or "")
    malformed = read is None
    numbers = read or []
    seen: set[int] = set()
    order: list[int] = []
    hallucinated, duplicate = int(malformed), 0
    for k in numbers:
        if not 1 <= k <= n:
            hallucinated += 1
        elif k - 1 in seen:
            duplicate += 1
        else:
            seen.add(k - 1)
            order.append(k - 1)
    valid = len(order)
    fill = list(fill_order) if fill_order is not None else list(range(n))
    if sorted(fill) != list(range(n)):
        raise ValueError("fill_order must be a permutation of range(n)")
    for i in fill:
        if i not in seen:
            order.append(i)
    return ParseResult(
        order=order,
        valid=valid,
        hallucinated=hallucinated,
        duplicate=duplicate,
        filled_in=n - valid,
        raw=text,
        numbers=numbers,
        malformed=malformed,
    )


def borda(orders: Sequence[Sequence[int]], n: int) -> list[float]:
    """Mean Borda points per candidate index (n - position) over several complete orders."""
    points = [0.0] * n
    for order in orders:
        for pos, i in enumerate(order):
            points[i] += n - pos
    m = max(1, len(orders))
    return [p / m for p in points]


__all__ = ["ParseResult", "parse_ranking", "read_answer", "extract_numbers", "borda"]

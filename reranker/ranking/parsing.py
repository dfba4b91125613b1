"""Strict parsing of a listwise LLM answer ("3, 1, 2") into a complete permutation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_NUMBER = re.compile(r"(?<![\d.])\d+(?![\d])")


@dataclass
class ParseResult:
    """A parsed answer. `order` holds 0-based candidate indices, every one exactly once.

    valid: distinct in-range numbers the model gave; hallucinated: out-of-range numbers;
    duplicate: repeats of a number already given; filled_in: candidates the model left out,
    appended in stage-1 order. `raw` is the text as generated.
    """

    order: list[int]
    valid: int
    hallucinated: int
    duplicate: int
    filled_in: int
    raw: str
    numbers: list[int] = field(default_factory=list)

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


def extract_numbers(text: str) -> list[int]:
    """The candidate numbers in an answer. Bracketed labels (`[3]`) win when present (the model
    echoed the candidate list); otherwise every standalone integer counts."""
    bracketed = _BRACKETED.findall(text)
    if bracketed:
        return [int(x) for x in bracketed]
    return [int(x) for x in _NUMBER.findall(text)]


def parse_ranking(text: str, n: int, fill_order: Sequence[int] | None = None) -> ParseResult:
    """Parse `text` naming candidates 1..n into a complete order of indices 0..n-1.

    Out-of-range numbers are dropped and counted as hallucinated, repeats as duplicate;
    candidates never named are appended in `fill_order` (default: 0..n-1, the stage-1 order).
    """
    numbers = extract_numbers(text or "")
    seen: set[int] = set()
    order: list[int] = []
    hallucinated = duplicate = 0
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
    )


def borda(orders: Sequence[Sequence[int]], n: int) -> list[float]:
    """Mean Borda points per candidate index (n - position) over several complete orders."""
    points = [0.0] * n
    for order in orders:
        for pos, i in enumerate(order):
            points[i] += n - pos
    m = max(1, len(orders))
    return [p / m for p in points]


__all__ = ["ParseResult", "parse_ranking", "extract_numbers", "borda"]

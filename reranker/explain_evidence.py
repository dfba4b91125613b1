"""The evidence an explanation may state, computed deterministically from the item data.

For a recommended item and the user's history, :func:`choose_evidence` picks the history item
to cite and lists what the two share:

- **categories**: the category and genre values both carry (ml-100k genres, the demo's
  categories), as written in the catalog;
- **attributes**: attribute values equal in both (brand, colour, material, price band, release
  year ...), compared case-insensitively; numbers with decimals (prices) are left out;
- **words**: content words of both descriptions (4+ letters, not stop words), in the order of
  the recommended item's description, at most :data:`MAX_WORDS`;
- **co-choices** (CF evidence): how many *other* users chose both items, counted in the
  interactions passed in with the call (the fitted stage-1 / training data), never in state
  kept on the explainer.

The cited item is the history item with the strongest evidence (shared categories and
attributes, then the co-choice count, then shared words), ties to the most recent. The
:class:`Evidence` renders itself as short fact lines (the prompt's data) and as a template
sentence that names nothing else (the fallback and ``explain.mode: template``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DataError
from .ranking.item_text import VALUE_CHARS, clean_field, clean_title
from .types import Item

MAX_WORDS = 4
"""Shared description words kept per evidence."""
MAX_ATTRIBUTES = 4
"""Shared attribute values kept per evidence."""

#: attributes that are not item facts (a request's stage-1 score) or are shown as categories
SKIP_ATTRIBUTES = frozenset({"score", "source", "genres", "genre", "categories", "price"})

STOP_WORDS = frozenset("""
about above after again against also among another because been before being below between both
bring brings built came comes could does doing down during each either else even ever every from
further great good have having here into just keep keeps like made make makes many more most much
must near need needs only other over same should since some such than that their them then there
these they this those through under until upon very well were what when where which while will
with within without would your yours best band price really also plus ones help helps use used
uses using perfect ideal designed design great everyday every things thing item items product
products
""".split())

_WORD = re.compile(r"[^\W\d_][\w'’-]*[^\W_]|[^\W\d_]")
_KEY = re.compile(r"[_\s]+")
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+),\s*(?P<art>The|A|An)(?P<year>\s*\(\d{4}\))?$")
PLACEHOLDER_CATEGORIES = frozenset({"unknown", "none", "n/a", "nan", "other", "misc"})
"""Category values that say nothing (ml-100k's genre 'unknown'): never evidence, never claims."""


def item_categories(item: Item) -> list[str]:
    """The item's category and genre values (a ``genres`` attribute as an ``A|B`` string or a
    list), first spelling kept, duplicates (any case) dropped."""
    out: list[str] = []
    seen: set[str] = set()
    raw: list[Any] = [item.category]
    for key in ("genres", "genre", "categories"):
        v = item.attrs.get(key)
        if isinstance(v, str):
            raw.extend(v.split("|"))
        elif isinstance(v, (list, tuple)):
            raw.extend(v)
    for v in raw:
        s = clean_field(v, VALUE_CHARS)
        if s and s.lower() not in seen and s.lower() not in PLACEHOLDER_CATEGORIES:
            seen.add(s.lower())
            out.append(s)
    return out


def display_title(item: Item) -> str:
    """The item's title, cleaned, with a trailing article moved to the front ("Birdcage, The"
    -> "The Birdcage"; a trailing year is kept)."""
    t = clean_title(item.title) or clean_title(item.item_id)
    m = _TRAILING_ARTICLE.match(t)
    return f"{m.group('art')} {m.group('body')}{m.group('year') or ''}" if m else t


def _is_fact_value(v: Any) -> bool:
    if v is None or isinstance(v, (bool, dict, list, tuple, set)):
        return False
    if isinstance(v, float):
        return math.isfinite(v) and v.is_integer()
    if isinstance(v, int):
        return True
    s = str(v).strip()
    return bool(s) and not re.fullmatch(r"[-+]?\d*[.,]\d+", s)


def item_attributes(item: Item) -> dict[str, str]:
    """Attribute key -> value as the evidence compares them (cleaned; prices, request-only fields
    and the genre list left out)."""
    out: dict[str, str] = {}
    for k, v in item.attrs.items():
        key = str(k)
        if key.lower() in SKIP_ATTRIBUTES or not _is_fact_value(v):
            continue
        sv = clean_field(int(v) if isinstance(v, float) else v, VALUE_CHARS)
        if sv:
            out[key] = sv
    return out


def description_words(text: str) -> list[str]:
    """Content words of a description, lower-cased, in order, each once."""
    out: list[str] = []
    seen: set[str] = set()
    for m in _WORD.finditer(clean_field(text, 2000).replace("’", "'")):
        w = m.group(0).lower().strip("'-")
        if len(w) < 4 or w in STOP_WORDS or w in seen:
            continue
        seen.add(w)
        out.append(w)
    return out


def key_words(key: str) -> str:
    """An attribute key as words: ``price_band`` -> ``price band``."""
    return _KEY.sub(" ", key).strip().lower()


class CoChoices:
    """Who chose which item, for the items of one call: item id -> set of user ids.

    Built per call from the interactions the caller passes (a Dataset, a frame with
    ``user_id`` / ``item_id`` columns, or a mapping item id -> user ids); only the rows of the
    requested items are read."""

    def __init__(self, users_of: Mapping[str, frozenset[str]]) -> None:
        self._users = dict(users_of)

    @classmethod
    def from_data(cls, data: Any, item_ids: Iterable[str]) -> CoChoices:
        wanted = {str(i) for i in item_ids}
        if isinstance(data, CoChoices):
            return cls({i: data._users.get(i, frozenset()) for i in wanted})
        frame = getattr(data, "interactions", data)
        if isinstance(frame, Mapping):
            return cls({i: frozenset(str(u) for u in frame.get(i, ())) for i in wanted})
        cols = getattr(frame, "columns", None)
        if cols is None or "user_id" not in cols or "item_id" not in cols:
            raise DataError(
                "explain interactions: expected a Dataset, a frame with user_id and item_id columns, "
                f"or a mapping item id -> user ids; got {type(data).__name__}"
            )
        rows = frame.loc[frame["item_id"].astype(str).isin(wanted), ["user_id", "item_id"]]
        users: dict[str, set[str]] = {i: set() for i in wanted}
        for u, i in zip(rows["user_id"].astype(str), rows["item_id"].astype(str), strict=True):
            users[i].add(u)
        return cls({i: frozenset(s) for i, s in users.items()})

    def users(self, item_id: str) -> int:
        return len(self._users.get(item_id, ()))

    def both(self, a: str, b: str, exclude: str | None = None) -> int:
        """Users who chose both `a` and `b`, not counting `exclude` (the user being served)."""
        common = self._users.get(a, frozenset()) & self._users.get(b, frozenset())
        return len(common - {exclude}) if exclude is not None else len(common)


@dataclass(frozen=True)
class Evidence:
    """What the explanation of one recommendation may state (see the module docstring)."""

    cited: Item
    """The history item cited."""
    candidate: Item
    """The recommended item."""
    categories: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    """(key, value) pairs equal in both items."""
    words: tuple[str, ...] = ()
    co_users: int | None = None
    """Other users who chose both (None: no interactions were given)."""

    @property
    def cited_title(self) -> str:
        return display_title(self.cited)

    @property
    def candidate_title(self) -> str:
        return display_title(self.candidate)

    @property
    def strength(self) -> float:
        """How much the two items share (the choice of the cited item)."""
        co = self.co_users or 0
        return 2.0 * (len(self.categories) + len(self.attributes)) + math.log2(1 + co) + 0.5 * len(self.words)

    def clauses(self) -> list[str]:
        """The evidence as lower-case clauses, each built from the data alone."""
        out: list[str] = []
        if self.categories:
            out.append(f"both are {_and(self.categories)}")
        if self.attributes:
            out.append("both have " + _and([f"{key_words(k)} {v}" for k, v in self.attributes]))
        if self.words:
            out.append("both descriptions mention " + _and([f'"{w}"' for w in self.words]))
        if self.co_users:
            who = "other user" if self.co_users == 1 else "other users"
            out.append(f'{self.co_users} {who} who chose "{self.cited_title}" also chose it')
        return out

    def facts(self) -> list[str]:
        """The evidence as fact lines for the prompt (capitalised clauses)."""
        return [c[0].upper() + c[1:] for c in self.clauses()]

    def sentence(self) -> str:
        """The template explanation: the two titles and the evidence, nothing else."""
        head = f'You may like "{self.candidate_title}" because you chose "{self.cited_title}"'
        parts = self.clauses()
        return head + (": " + "; ".join(parts) if parts else "") + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "cited": self.cited.item_id,
            "categories": list(self.categories),
            "attributes": {k: v for k, v in self.attributes},
            "words": list(self.words),
            "co_users": self.co_users,
        }


def _and(xs: Sequence[str]) -> str:
    xs = list(xs)
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def evidence_for(cited: Item, candidate: Item, co: CoChoices | None = None, user_id: str | None = None) -> Evidence:
    """What `cited` and `candidate` share (see the module docstring)."""
    cats_c = {c.lower() for c in item_categories(cited)}
    cats = tuple(c for c in item_categories(candidate) if c.lower() in cats_c)
    a_h = {k: v.lower() for k, v in item_attributes(cited).items()}
    attrs = tuple((k, v) for k, v in item_attributes(candidate).items() if a_h.get(k) == v.lower())[:MAX_ATTRIBUTES]
    covered = {w.lower() for _, v in attrs for w in v.split()} | {w.lower() for c in cats for w in c.split()}
    words_h = set(description_words(cited.text)) if cited.text else set()
    words = tuple(
        w for w in (description_words(candidate.text) if candidate.text else []) if w in words_h and w not in covered
    )[:MAX_WORDS]
    co_users = None if co is None else co.both(cited.item_id, candidate.item_id, exclude=user_id)
    return Evidence(cited, candidate, cats, attrs, words, co_users)


def choose_evidence(
    history: Sequence[Item], candidate: Item, co: CoChoices | None = None, user_id: str | None = None
) -> Evidence | None:
    """The evidence for the history item sharing most with `candidate` (ties: the most recent);
    None for an empty history."""
    best: tuple[float, int] | None = None
    pick: Evidence | None = None
    for pos, h in enumerate(history):
        ev = evidence_for(h, candidate, co, user_id)
        key = (ev.strength, pos)
        if best is None or key > best:
            best, pick = key, ev
    return pick


__all__ = [
    "CoChoices", "Evidence", "choose_evidence", "display_title", "evidence_for", "item_categories", "item_attributes",
    "description_words", "key_words", "MAX_WORDS", "MAX_ATTRIBUTES",
]

"""The faithfulness check of an explanation: every category, attribute value or product it
names must be in the evidence or in the two items' own text.

How it works
------------
1. A **vocabulary** of things an explanation can claim, built from the catalogue
   (:meth:`ClaimVocabulary.from_catalog`): every category and genre value (``category``), every
   attribute value that contains a letter or is a 4-digit year (``attribute``: brand, colour,
   material, size, price band, release year ...), every title and its variants without a
   trailing year or with a trailing article moved (``title``), and known product nouns
   (``product``: :data:`PRODUCT_NOUNS` plus the demo world's noun phrases).
2. The explanation is cut into words (lower-cased, a trailing ``'s`` or plural ``s`` dropped,
   hyphens and punctuation as word breaks) and every run of words that is a vocabulary term
   is a **mention**. A one-word title counts only when written with a capital letter
   ("Heat", not "the heat").
3. A mention is **supported** when the same words occur in the allowed text: the evidence
   (its fact lines and the two titles) and, unless ``own_text_allowed=False``, the two items' own
   text (titles, categories, genres, attribute values, descriptions). A mention inside a
   longer supported mention ("war" inside the cited title "Star Wars") is not a claim of its
   own.
4. Names (``names=True``, the default): a run of capitalised words ("Disneyland", "The Princess
   and the Frog", "Pixar") whose words are not all in the allowed text is an unsupported
   ``name`` (a product, brand or franchise the model brought in); a single capitalised word
   opening a sentence is not a name.
5. Years: a number from 1800 to 2099 not in the allowed text is an unsupported ``year``.
6. The explanation is **faithful** when no mention is unsupported.

Limits (what it does not catch)
-------------------------------
- Only vocabulary terms and capitalised names are checked: a claim in other words
  ("high-end", "eco-friendly", "for dogs", "award-winning", "a classic") passes, as do numbers other than 4-digit years
  (prices, counts) and attribute values shorter than 3 characters (sizes "S", "M").
- A term is checked against both items at once: a genre of the cited item said of the
  recommended one ("chocolate treats" for almond butter when the cited item is a chocolate bar)
  passes.
- Negation and context are not read: "not a Comedy" names Comedy; "unlike Pulp Fiction"
  names a product not in the evidence and is flagged. A true fact that is not evidence
  ("Pixar" for Toy Story) is flagged too: the check asks "is it in the evidence", not "is it
  true".
- Product nouns outside :data:`PRODUCT_NOUNS` and the catalogue's own vocabulary are unknown
  ("a gadget"); a catalogue of another domain should extend the list (``extra_terms``).
- Common words that are also attribute values or titles can flag an innocent sentence
  ("a large choice" when ``Large`` is a size; "Clueless" capitalised at the start of a
  sentence), and so can a capitalised common word inside a sentence ("a true Classic"). Such
  a false alarm costs a regeneration or the template sentence, never an unsupported claim
  shown to a user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .explain_evidence import Evidence, item_attributes, item_categories
from .ranking.base import ItemListing
from .types import Item

#: common product nouns (singular, as the word cutting reduces them); words that are also
#: everyday verbs or phrases ("watch", "guide", "treat", "train") are left out on purpose
PRODUCT_NOUNS: tuple[str, ...] = tuple("""
toy leash collar harness kibble aquarium carrier
shampoo conditioner soap lotion moisturiser moisturizer serum perfume parfum cologne lipstick
sunscreen mascara makeup razor toothbrush
keyboard mouse headphone earbud earphone speaker charger cable laptop notebook computer
phone smartphone tablet camera webcam smartwatch television printer router controller
book novel cookbook atlas magazine paperback hardcover ebook audiobook
pan skillet saucepan knife kettle blender toaster mug cup plate bowl spoon fork
oven microwave fridge refrigerator
tent backpack bike bicycle helmet ball racket dumbbell headlamp glove
jacket coat shirt hoodie trouser sock shoe sneaker boot sandal sweater beanie hat scarf
skirt blouse
lamp candle blanket pillow cushion chair sofa rug curtain hose vase basket
puzzle doll dollhouse lego plush teddy car truck
coffee tea granola pasta chocolate honey snack cereal
""".split())

PRODUCT_PHRASES: tuple[str, ...] = (
    "dog bed", "cat tree", "scratching post", "lip balm", "makeup brush", "hair dryer", "power bank",
    "usb hub", "frying pan", "cutting board", "espresso maker", "coffee maker", "sleeping bag",
    "yoga mat", "water bottle", "trekking pole", "t shirt", "plant pot", "bird feeder", "string light",
    "jigsaw puzzle", "board game", "card game", "teddy bear", "coffee bean", "olive oil",
    "almond butter", "protein bar", "trail mix",
)

MIN_VALUE_CHARS = 3
"""Attribute values shorter than this (sizes "S", "XL") are not matched."""
MAX_TERM_WORDS = 12
"""Longer titles are matched by their first `MAX_TERM_WORDS` words only."""

_YEAR_WORD = re.compile(r"1[89]\d\d|20\d\d")
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
_ARTICLE = re.compile(r"^(?P<body>.+),\s*(?P<art>the|a|an)$", re.IGNORECASE)


def _stem(word: str) -> str:
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.rstrip("'")
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def words_of(text: str) -> list[tuple[str, str]]:
    """(stem, surface) for every word of `text` (see the module docstring, step 2)."""
    return [(_stem(m.group(0)), m.group(0)) for m in _TOKEN.finditer(text or "")]


def term_of(text: str) -> tuple[str, ...]:
    """A vocabulary term: the stems of `text`'s words."""
    return tuple(s for s, _ in words_of(text))


def title_forms(title: str) -> set[str]:
    """Forms a text may use for a title: as is, without a trailing ``(year)``, and with a
    trailing article moved to the front ("Birdcage, The (1996)" -> "The Birdcage")."""
    base = _YEAR.sub("", title).strip()
    out = {title.strip(), base}
    m = _ARTICLE.match(base)
    if m:
        out.add(f"{m.group('art')} {m.group('body')}")
        out.add(m.group("body"))
    out.discard("")
    return out


@dataclass(frozen=True)
class Mention:
    """A vocabulary term found in an explanation."""

    term: str
    """The words as found in the explanation."""
    kind: str
    """title | category | attribute | product | name | year"""
    start: int
    end: int
    """Word positions [start, end)."""
    supported: bool


@dataclass(frozen=True)
class FaithfulnessCheck:
    """The result of checking one explanation."""

    faithful: bool
    unsupported: list[str] = field(default_factory=list)
    """The unsupported mentions, as written in the explanation (kind in brackets)."""
    mentions: list[str] = field(default_factory=list)
    """Every mention found (supported or not)."""

    def to_dict(self) -> dict[str, Any]:
        return {"faithful": self.faithful, "unsupported": list(self.unsupported), "mentions": list(self.mentions)}


def evidence_text(ev: Evidence) -> list[str]:
    """What the evidence itself says: the two titles and the fact lines."""
    return [ev.cited_title, ev.candidate_title, *ev.facts()]


def own_text(item: Item) -> list[str]:
    """An item's own text: title forms, categories and genres, attribute keys and values, description."""
    out = [*title_forms(item.title), *item_categories(item), item.text or ""]
    for k, v in item.attrs.items():
        if isinstance(v, (list, tuple)):
            out.extend(str(x) for x in v)
        elif v is not None:
            out.append(str(v).replace("|", " | "))
        out.append(str(k).replace("_", " "))
    return out


class ClaimVocabulary:
    """The catalogue's categories, attribute values, titles and product nouns, for finding what
    an explanation names. Immutable after construction; build one per catalogue."""

    def __init__(self, terms: Mapping[tuple[str, ...], str], single_word_titles: Iterable[tuple[str, ...]] = ()) -> None:
        self.terms: dict[tuple[str, ...], str] = dict(terms)
        self.max_words = max((len(t) for t in self.terms), default=0)
        self._capital_only = frozenset(single_word_titles)

    @classmethod
    def from_items(
        cls, items: Iterable[Item], *, min_title_chars: int = 5, extra_terms: Mapping[str, str] | None = None,
        product_nouns: bool = True,
    ) -> ClaimVocabulary:
        """The vocabulary of `items` (plus :data:`PRODUCT_NOUNS` and `extra_terms`: text -> kind)."""
        terms: dict[tuple[str, ...], str] = {}
        single: set[tuple[str, ...]] = set()

        def add(text: str, kind: str) -> None:
            t = term_of(text)[:MAX_TERM_WORDS]
            if t and t not in terms:
                terms[t] = kind

        if product_nouns:
            from .data.synthetic_text import categories as world_categories

            for w in (*PRODUCT_NOUNS, *PRODUCT_PHRASES):
                add(w, "product")
            for voc in world_categories().values():
                for noun, _, _ in voc["nouns"]:
                    add(noun, "product")
        for text, kind in (extra_terms or {}).items():
            add(text, kind)
        for it in items:
            for c in item_categories(it):
                terms[term_of(c)] = "category"
            for v in item_attributes(it).values():
                if (len(v) >= MIN_VALUE_CHARS and re.search(r"[^\W\d_]", v)) or re.fullmatch(r"\d{4}", v):
                    t = term_of(v)
                    if t and terms.get(t) != "category":
                        terms[t] = "attribute"
            for form in title_forms(it.title):
                if len(form) < min_title_chars:
                    continue
                t = term_of(form)[:MAX_TERM_WORDS]
                if not t:
                    continue
                terms.setdefault(t, "title")
                if len(t) == 1 and terms[t] == "title":
                    single.add(t)
        return cls(terms, single)

    @classmethod
    def from_catalog(cls, catalog: Any, **kwargs: Any) -> ClaimVocabulary:
        """The vocabulary of a Dataset, an item listing (``catalog()``), or a mapping id -> Item/dict."""
        from .ranking.llm_common import make_lookup

        if catalog is None:
            items: Iterable[Item] = []
        elif isinstance(catalog, ItemListing):
            items = catalog.catalog().values()
        elif isinstance(catalog, Mapping):
            lookup = make_lookup(catalog)
            items = [lookup(k) for k in catalog]
        else:
            items = []
        return cls.from_items(items, **kwargs)

    def mentions(self, text: str, allowed: Sequence[str] = ()) -> list[Mention]:
        """Every vocabulary term in `text` (longest match first at each position; overlapping
        shorter ones are kept too, so a flagged word inside an allowed phrase can be excused)."""
        words = words_of(text)
        stems = [s for s, _ in words]
        ok = _ngrams(allowed, self.max_words)
        found: list[Mention] = []
        for i in range(len(stems)):
            for n in range(min(self.max_words, len(stems) - i), 0, -1):
                t = tuple(stems[i : i + n])
                kind = self.terms.get(t)
                if kind is None:
                    continue
                if t in self._capital_only and not words[i][1][:1].isupper():
                    continue
                surface = " ".join(w for _, w in words[i : i + n])
                found.append(Mention(surface, kind, i, i + n, t in ok))
        return found

    def check(
        self, text: str, evidence: Evidence, *, own_text_allowed: bool = True, names: bool = True
    ) -> FaithfulnessCheck:
        """Whether every term `text` names is in the evidence (and, by default, the two items'
        own text); with `names`, also every capitalised name (module docstring, step 5)."""
        allowed = evidence_text(evidence)
        if own_text_allowed:
            allowed += own_text(evidence.cited) + own_text(evidence.candidate)
        found = self.mentions(text, allowed)
        good = [m for m in found if m.supported]
        bad = [
            m for m in found
            if not m.supported and not any(g.start <= m.start and m.end <= g.end for g in good)
        ]
        ok_words = {w for t in allowed for w, _ in words_of(t)}
        spans = [(m.start, m.end) for m in found]
        for i, (w, surface) in enumerate(words_of(text)):
            if _YEAR_WORD.fullmatch(w) and w not in ok_words and not any(a <= i < b for a, b in spans):
                bad.append(Mention(surface, "year", i, i + 1, False))
        if names:
            vocab_spans = [(m.start, m.end) for m in found]
            bad += [m for m in _names(text, allowed) if not any(a <= m.start and m.end <= b for a, b in vocab_spans)]
        # report only the longest of nested unsupported mentions
        bad = [m for m in bad if not any(o is not m and o.start <= m.start and m.end <= o.end
                                         and (o.end - o.start) > (m.end - m.start) for o in bad)]
        bad.sort(key=lambda m: m.start)
        return FaithfulnessCheck(
            faithful=not bad,
            unsupported=_unique(f"{m.term} ({m.kind})" for m in bad),
            mentions=_unique(f"{m.term} ({m.kind})" for m in found),
        )


_CONNECTORS = frozenset({"of", "the", "and", "de", "la", "le", "du", "von", "van", "&", "in", "on", "a"})
_SENTENCE_END = ".!?:;"
#: capitalised words that are not names (pronouns, articles, sentence openers)
_NOT_NAMES = frozenset({"i", "i'm", "i've", "i'd", "i'll", "ok", "okay"})


def _names(text: str, allowed: Sequence[str]) -> list[Mention]:
    """Runs of capitalised words ("Disneyland", "The Princess and the Frog") whose words are
    not all in the allowed text; a single capitalised word opening a sentence is not a name."""
    ok = {s for t in allowed for s, _ in words_of(t)}
    toks = list(_TOKEN.finditer(text or ""))
    out: list[Mention] = []
    i = 0
    while i < len(toks):
        w = toks[i].group(0)
        if not w[:1].isupper() or w.lower() in _NOT_NAMES:
            i += 1
            continue
        j = i + 1
        while j < len(toks):
            nxt = toks[j].group(0)
            if nxt[:1].isupper() and nxt.lower() not in _NOT_NAMES:
                j += 1
            else:
                k = j
                while k < len(toks) and toks[k].group(0).lower() in _CONNECTORS:
                    k += 1
                if k == j or k >= len(toks) or not toks[k].group(0)[:1].isupper():
                    break
                j = k
        before = text[: toks[i].start()].rstrip(" \"'“”‘’(")
        opens = not before or before[-1] in _SENTENCE_END
        start = i + 1 if opens else i  # a sentence's first word is capitalised anyway
        run = [t.group(0) for t in toks[start:j]]
        if run and not all(_stem(x) in ok or x.lower() in _CONNECTORS for x in run):
            while run and run[0].lower() in _CONNECTORS:
                run, start = run[1:], start + 1
            if run:
                out.append(Mention(" ".join(run), "name", start, j, False))
        i = j
    return out


def _ngrams(texts: Sequence[str], n_max: int) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for text in texts:
        stems = term_of(text)
        for i in range(len(stems)):
            for n in range(1, min(n_max, len(stems) - i) + 1):
                out.add(tuple(stems[i : i + n]))
    return out


def _unique(xs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(xs))


__all__ = [
    "ClaimVocabulary", "FaithfulnessCheck", "Mention", "PRODUCT_NOUNS", "PRODUCT_PHRASES",
    "evidence_text", "own_text", "title_forms", "words_of", "term_of",
]

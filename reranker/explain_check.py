"""The faithfulness check of an explanation: every category, attribute value, product or
price/quality claim it says of an item must be in the evidence or in that item's own text.

How it works
------------
1. A **vocabulary** of things an explanation can claim, built from the catalogue
   (:meth:`ClaimVocabulary.from_catalog`): every category and genre value (``category``), every
   attribute value that contains a letter or is a 4-digit year (``attribute``: brand, colour,
   material, size, price band, release year ...), every title and its variants without a
   trailing year or with a trailing article moved (``title``), known product nouns
   (``product``: :data:`PRODUCT_NOUNS`, :data:`PRODUCT_PHRASES` and the demo world's noun
   phrases) and price/quality claims (``claim``: :data:`QUALITY_CLAIMS`, "high-end", "luxury",
   "affordable", "limited edition", "award-winning" ...).
2. The explanation is cut into words (lower-cased, a trailing ``'s`` or plural ``s`` dropped,
   hyphens and punctuation as word breaks) and every run of words that is a vocabulary term
   is a **mention**. A one-word title counts only when written with a capital letter
   ("Heat", not "the heat").
3. **Attribution** (:func:`attribute`): each word is said of the recommended item or of the
   cited history item, by this rule:

   a. *Title mentions*: a title form of either item (step 1's variants), or a prefix of one of
      at least two words that are not "of/the/and ...", with at least one capitalised word
      ("E.T." for "E.T. the Extra-Terrestrial", "Indiana Jones"). At each position the longer
      match wins; a tie (the same brand starts both titles) goes to the recommended item.
      The words of a title mention belong to its item.
   b. *The subject*: every sentence starts with the recommended item as its subject. After a
      mention of the cited item the subject is the cited item ("... with Gattaca, which is a
      thriller"), unless the word just before that mention is a comparison (like, as, unlike,
      than: "a thriller like Gattaca" and "like Gattaca, a thriller" stay with the recommended
      item). A mention of the recommended item, or the words it, its, this, both, they, their,
      make the recommended item the subject again. A sentence ends at ``.``, ``!`` or ``?``
      followed by a space and a capitalised word.
4. A mention is **supported** when its words occur in the allowed text of the item it is
   said of: the shared evidence (shared categories, attribute values, description words) plus
   that item's title forms and, unless ``own_text_allowed=False``, its own text (categories,
   genres, attribute values, description). A term only the cited item has is thus accepted
   when said of the cited item and flagged when said of the recommended one ("E.T. ... a
   thriller" because Gattaca is one). Some terms are also supported by a stand-in word
   (:data:`SUPPORTED_BY`: "high-end" and "luxury" by the price band "premium", "affordable"
   by "budget", "apparel" by the category "Clothing") and a category by its other forms
   (:data:`CATEGORY_FORMS`: "animated" by Animation, "science fiction" by Sci-Fi, where the
   catalogue has that category). Titles are checked against both items
   and the evidence together. A mention inside a longer supported mention ("war" inside the
   cited title "Star Wars") is not a claim of its own.
5. Names (``names=True``, the default): a run of capitalised words ("Disneyland", "The Princess
   and the Frog", "Pixar") whose words are not all in the two items' text or the evidence is
   an unsupported ``name`` (a product, brand or franchise the model brought in); a single
   capitalised word opening a sentence is not a name.
6. Numbers: a number written in digits that is not in the allowed text of the item it is said
   of, nor the evidence's co-choice count, is an unsupported ``year`` (1800 to 2099) or
   ``number`` ("a size of 12", "a warranty of 10 years"). A number inside a mention (a title's
   "Pack of 6") is judged with that mention.
7. The explanation is **faithful** when no mention is unsupported.

Limits (what it does not catch)
-------------------------------
- Only vocabulary terms, capitalised names and numbers in digits are checked: a claim in
  other words ("eco-conscious", "for dogs", "a classic", "high-quality", "popular"), a number
  in words ("a one-year warranty") and attribute values shorter than 3 characters (sizes "S",
  "M") pass. "food" alone is no product noun ("food lovers"); "cat food", "pet food"
  are.
- Attribution reads word order, not grammar. It errs towards the recommended item (a false
  alarm, never a claim let through) in "Because you chose the thriller Gattaca" (the term
  before the title), "Gattaca is known for its thriller plot" (its), or "like Gattaca, which
  is a thriller" (a comparison). It errs the other way, accepting a cited-only term, when a
  sentence goes on about the recommended item after naming the cited one without a pronoun
  or title ("shares Sci-Fi with Gattaca and is a thriller"), and when a two-word title prefix
  that is a brand of the cited item only is followed by a claim about the recommended one.
  A "both" claim true only of the recommended item passes.
- Negation and context are not read: "not a Comedy" names Comedy; "unlike Pulp Fiction"
  names a product not in the evidence and is flagged. A true fact that is not in the text
  ("Pixar" for Toy Story, "pet food" for cat treats) is flagged too: the check asks "is it in
  the evidence or the item's text", not "is it true".
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

from .explain_evidence import Evidence, display_title, item_attributes, item_categories, key_words
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
oven microwave fridge refrigerator appliance
tent backpack bike bicycle helmet ball racket dumbbell headlamp glove
jacket coat shirt hoodie trouser sock shoe sneaker boot sandal sweater beanie hat scarf
skirt blouse jean apparel garment
lamp candle blanket pillow cushion chair sofa rug curtain hose vase basket
puzzle doll dollhouse lego plush teddy car truck
coffee tea granola pasta chocolate honey snack cereal butter beverage
litter dryer mask bottle mat belt shear feeder container handbook
gadget device cosmetic
""".split())

PRODUCT_PHRASES: tuple[str, ...] = (
    "dog bed", "cat tree", "scratching post", "lip balm", "makeup brush", "hair dryer", "power bank",
    "usb hub", "frying pan", "cutting board", "espresso maker", "coffee maker", "sleeping bag",
    "yoga mat", "water bottle", "trekking pole", "t shirt", "plant pot", "bird feeder", "string light",
    "jigsaw puzzle", "board game", "card game", "teddy bear", "coffee bean", "olive oil",
    "almond butter", "protein bar", "trail mix",
    "cat food", "pet food", "fish food", "bird food", "baby food", "cat treat", "dog treat", "chocolate bar",
    "cat litter", "aquarium filter", "hiking boot", "running shoe",
)

#: price and quality claims (``claim``), checked like any other term: each must be in the
#: evidence or the text of the item it is said of, or stood in for there (:data:`SUPPORTED_BY`)
QUALITY_CLAIMS: tuple[str, ...] = (
    "high end", "luxury", "luxurious", "upscale", "premium", "top of the line", "expensive", "pricey",
    "affordable", "cheap", "inexpensive", "low cost", "budget friendly", "bargain",
    "limited edition", "award winning", "oscar winning", "best selling", "bestselling", "bestseller",
    "top rated", "top tier", "world class", "gourmet", "artisanal", "handcrafted", "handmade",
    "eco friendly", "environmentally friendly", "sustainable",
)

#: term -> words that, in the allowed text of the item it is said of, also support it
#: (a price band, a category; one word or phrase each)
SUPPORTED_BY: dict[str, tuple[str, ...]] = {
    **{t: ("premium",) for t in ("high end", "luxury", "luxurious", "upscale", "top of the line", "expensive",
                                 "pricey")},
    **{t: ("budget",) for t in ("affordable", "cheap", "inexpensive", "low cost", "budget friendly", "bargain")},
    **{t: ("sustainable", "sustainably", "recycled", "organic") for t in ("eco friendly", "environmentally friendly",
                                                                          "sustainable")},
    "apparel": ("clothing",), "garment": ("clothing",), "gadget": ("electronics",), "device": ("electronics",),
    "cosmetic": ("beauty",), "appliance": ("electric", "blender", "kettle", "espresso maker", "hair dryer"),
    "beverage": ("coffee", "tea"),
    "pet food": ("cat treat", "dog treat", "dog food", "cat food", "kibble"), "cat food": ("cat treat",),
}

#: other words for a category (an adjective, a spelled-out abbreviation) -> the category as
#: written in the catalogue; a form is a ``category`` term only where the catalogue has that
#: category, and is supported where the category is
CATEGORY_FORMS: dict[str, str] = {
    "animated": "animation", "cartoon": "animation", "comedic": "comedy", "romantic": "romance",
    "science fiction": "sci fi", "scifi": "sci fi",
}

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
    """title | category | attribute | product | name | year | number"""
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


def shared_text(ev: Evidence) -> list[str]:
    """What the evidence says of both items: the shared categories, attribute values (with their
    keys) and description words (not the titles, not the co-choice line)."""
    return [*ev.categories, *(f"{key_words(k)} {v}" for k, v in ev.attributes), *ev.words]


def item_titles(item: Item) -> list[str]:
    """The forms of an item's title a text may use (:func:`title_forms` of the raw and the
    displayed title)."""
    return list(dict.fromkeys([*title_forms(item.title), *title_forms(display_title(item))]))


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
        product_nouns: bool = True, quality_claims: bool = True,
    ) -> ClaimVocabulary:
        """The vocabulary of `items` (plus :data:`PRODUCT_NOUNS`, :data:`QUALITY_CLAIMS` and
        `extra_terms`: text -> kind)."""
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
        if quality_claims:
            for w in QUALITY_CLAIMS:
                add(w, "claim")
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
        for form, cat in CATEGORY_FORMS.items():
            if terms.get(term_of(cat)) == "category":
                terms.setdefault(term_of(form), "category")
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
        spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text or "")]
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
                surface = text[spans[i][0] : spans[i + n - 1][1]]  # as written ("high-end", "sci-fi")
                found.append(Mention(surface, kind, i, i + n, t in ok))
        return found

    def check(
        self, text: str, evidence: Evidence, *, own_text_allowed: bool = True, names: bool = True
    ) -> FaithfulnessCheck:
        """Whether every term `text` says of an item is in the shared evidence or that item's
        text (module docstring, steps 3-4; `own_text_allowed=False`: the shared evidence and the
        item's title only); with `names`, also every capitalised name (step 5)."""
        union = evidence_text(evidence)
        if own_text_allowed:
            union += own_text(evidence.cited) + own_text(evidence.candidate)
        shared = shared_text(evidence)
        per_item = {
            who: shared + item_titles(it) + (own_text(it) if own_text_allowed else [])
            for who, it in (("candidate", evidence.candidate), ("cited", evidence.cited))
        }
        ok = {who: _ngrams(t, max(self.max_words, 3)) for who, t in per_item.items()}
        ok_union = _ngrams(union, self.max_words)
        owner = attribute(text, evidence)

        def supported(m: Mention) -> bool:
            t = term_of(m.term)
            if m.kind in ("title", "name"):
                return t in ok_union
            grams = ok[owner[m.start]]
            key = " ".join(t)
            alts = (*SUPPORTED_BY.get(key, ()), *((CATEGORY_FORMS[key],) if key in CATEGORY_FORMS else ()))
            return t in grams or any(term_of(alt) in grams for alt in alts)

        found = [Mention(m.term, m.kind, m.start, m.end, supported(m)) for m in self.mentions(text)]
        good = [m for m in found if m.supported]
        bad = [
            m for m in found
            if not m.supported and not any(g.start <= m.start and m.end <= g.end for g in good)
        ]
        ok_words = {who: {w for t in texts for w, _ in words_of(t)} for who, texts in per_item.items()}
        counts = {str(evidence.co_users)} if evidence.co_users else set()
        spans = [(m.start, m.end) for m in found]
        for i, (w, surface) in enumerate(words_of(text)):
            if (w.isdigit() and w not in ok_words[owner[i]] and w not in counts
                    and not any(a <= i < b for a, b in spans)):
                bad.append(Mention(surface, "year" if _YEAR_WORD.fullmatch(w) else "number", i, i + 1, False))
        if names:
            bad += [m for m in _names(text, union) if not any(a <= m.start and m.end <= b for a, b in spans)]
        # report only the longest of nested unsupported mentions
        bad = [m for m in bad if not any(o is not m and o.start <= m.start and m.end <= o.end
                                         and (o.end - o.start) > (m.end - m.start) for o in bad)]
        bad.sort(key=lambda m: m.start)
        return FaithfulnessCheck(
            faithful=not bad,
            unsupported=_unique(f"{m.term} ({m.kind})" for m in bad),
            mentions=_unique(f"{m.term} ({m.kind})" for m in found),
        )


#: words after which a mention of the cited item does not make it the subject (a comparison)
COMPARISONS = frozenset({"like", "as", "unlike", "than"})
#: words that make the recommended item the subject again
BACK_TO_RECOMMENDED = frozenset({"it", "its", "it's", "this", "both", "they", "their", "they're"})
_BREAK = re.compile(r"[.!?][\"'”’)\]]*\s")


def title_mentions(text: str, evidence: Evidence) -> list[tuple[int, int, str]]:
    """(start, end, "candidate" | "cited") word spans where `text` names one of the two items
    (module docstring, step 3a)."""
    words = words_of(text)
    stems = [s for s, _ in words]
    forms = {who: [term_of(f) for f in item_titles(it)]
             for who, it in (("candidate", evidence.candidate), ("cited", evidence.cited))}

    def longest(i: int, who: str) -> int:
        best = 0
        for f in forms[who]:
            n = 0
            while n < len(f) and i + n < len(stems) and stems[i + n] == f[n]:
                n += 1
            content = sum(1 for x in f[:n] if x not in _CONNECTORS)
            if n and (n == len(f) or (n >= 2 and content >= 2)) and any(
                    w[:1].isupper() for _, w in words[i : i + n]):
                best = max(best, n)
        return best

    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(stems):
        n_cand, n_cited = longest(i, "candidate"), longest(i, "cited")
        if n_cand or n_cited:
            who, n = ("candidate", n_cand) if n_cand >= n_cited else ("cited", n_cited)
            out.append((i, i + n, who))
            i += n
        else:
            i += 1
    return out


def attribute(text: str, evidence: Evidence) -> list[str]:
    """For each word of `text`, the item it is said of: "candidate" (the recommended item) or
    "cited" (module docstring, step 3)."""
    toks = list(_TOKEN.finditer(text or ""))
    spans = {a: (b, who) for a, b, who in title_mentions(text, evidence)}
    owner: list[str] = []
    subject = "candidate"
    i = 0
    while i < len(toks):
        if i and _BREAK.search(text[toks[i - 1].end() : toks[i].start()] + " ") and toks[i].group(0)[:1].isupper():
            subject = "candidate"  # a new sentence
        if i in spans:
            end, who = spans[i]
            owner.extend([who] * (end - i))
            before = _stem(toks[i - 1].group(0)) if i else ""
            if who == "candidate" or before not in COMPARISONS:
                subject = who
            i = end
            continue
        if _stem(toks[i].group(0)) in BACK_TO_RECOMMENDED or toks[i].group(0).lower() in BACK_TO_RECOMMENDED:
            subject = "candidate"
        owner.append(subject)
        i += 1
    return owner


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
    "CATEGORY_FORMS", "ClaimVocabulary", "FaithfulnessCheck", "Mention", "PRODUCT_NOUNS", "PRODUCT_PHRASES", "QUALITY_CLAIMS",
    "SUPPORTED_BY", "attribute", "evidence_text", "item_titles", "own_text", "shared_text", "title_forms",
    "title_mentions", "words_of", "term_of",
]

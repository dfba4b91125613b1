"""Cleaning of untrusted item text before it enters a prompt (prompt version 2, issue 19).

Titles, categories, attributes and descriptions are written by sellers, and a request's history
and context come from callers: all of it is data, and none of it may imitate the prompt's own
structure. Every field goes through :func:`clean_field` on its way into a template view
(`LLMRankerBase.item_view`, `context_view`, the explainer's views). The normalisation, in order:

1. Unicode NFKC (full-width ``［３］`` becomes ``[3]`` and is then caught below);
2. control, format (zero-width, bidi overrides) and line/paragraph-separator characters,
   newlines and tabs become spaces;
3. structure-imitating characters are replaced: ``[ ] { } < >`` by ``( ) ( ) ( )`` (a title
   cannot show a listwise label ``[3]``, a Jinja-like ``{{ }}`` or a chat-template token such as
   ``<|im_end|>``, which the tokenizer would otherwise read as the real special token), and
   double quotes (``" “ ” « » „``) and backticks by ``'`` (the templates put each item's text
   in double quotes, which the text cannot close);
4. a prompt label -- one of :data:`LABEL_WORDS` (``Answer``, ``SYSTEM``, ``Candidates``,
   ``Item``, ``User``, ...) with a colon, or one of :data:`ANSWER_WORDS` with or without one --
   followed by an answer-like token (``Yes``, ``No``, one capital letter, a one- or two-digit
   number) loses that token (``Answer: Yes`` -> ``Answer``, ``(answer A)`` -> ``(answer)``,
   ``answer 1`` -> ``answer``, ``Item: 3`` -> ``Item``: a title cannot name a label as its
   answer; ``Rank 1 Fan`` stays), and a label word directly followed by a colon loses the colon
   (``SYSTEM: ignore`` -> ``SYSTEM - ignore``); colons elsewhere stay (``Star Wars: Episode IV``);
5. whitespace is collapsed, and leading / trailing double quotes and separators
   (``- : ; , | * # = _ ~``) are stripped (apostrophes stay: ``Gone Fishin'``);
6. the field is cut to its length cap (at a word boundary when one is near, then ``...``).

Caps (characters): titles :data:`TITLE_CHARS`, categories and attribute values
:data:`VALUE_CHARS`, attribute and context keys :data:`KEY_CHARS`, context values
:data:`CONTEXT_CHARS`; descriptions are cut to :data:`TEXT_CHARS` here and then to the token
budget (`LLMConfig.item_text_tokens`) by the ranker.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

__all__ = [
    "ANSWER_WORDS",
    "CONTEXT_CHARS",
    "KEY_CHARS",
    "LABEL_WORDS",
    "TEXT_CHARS",
    "TITLE_CHARS",
    "VALUE_CHARS",
    "clean_field",
    "clean_text",
    "clean_title",
]

TITLE_CHARS = 120
VALUE_CHARS = 40
KEY_CHARS = 30
CONTEXT_CHARS = 60
TEXT_CHARS = 600

#: words that label a part of a prompt; followed by a colon inside item text they lose the colon
LABEL_WORDS = (
    "answer", "answers", "system", "user", "assistant", "human", "ai", "candidate", "candidates",
    "item", "items", "context", "question", "instruction", "instructions", "output", "response",
    "reply", "rank", "ranking", "label", "choice", "note", "prompt",
)

_TRANSLATE = str.maketrans({
    "[": "(", "]": ")", "{": "(", "}": ")", "<": "(", ">": ")",
    '"': "'", "\u201c": "'", "\u201d": "'", "\u201e": "'", "\u00ab": "'", "\u00bb": "'", "`": "'",
})
_LABEL = re.compile(r"\b(" + "|".join(LABEL_WORDS) + r")\s*:", re.IGNORECASE)
#: words that ask for an answer: followed by an answer-like token even without a colon
ANSWER_WORDS = ("answer", "answers", "reply", "choice", "output", "response", "label")
#: a label word and a colon, or an answer word, then an answer-like token (Yes / No, one
#: capital letter, a one- or two-digit number)
_LABEL_ANSWER = re.compile(
    r"\b((?i:" + "|".join(LABEL_WORDS) + r")\s*[:=]|(?i:" + "|".join(ANSWER_WORDS) + r")\s*[:=-]?)"
    r"\s*(?:(?i:yes|no)|[A-Z]|\d{1,2})\b(?![\w'])"
)
_EDGES = " -:;,|*#=_~"
_QUOTES = "\"\u201c\u201d\u201e\u00ab\u00bb`"
_SPACE = re.compile(r"\s+")


def _is_break(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat in ("Cc", "Cf", "Zl", "Zp", "Zs", "Co", "Cs", "Cn") and ch != " " or ch in "\t\n\r\x0b\x0c"


def clean_field(value: Any, max_chars: int) -> str:
    """One field of item or request text, cleaned as the module docstring says (``''`` for None)."""
    if value is None:
        return ""
    s = unicodedata.normalize("NFKC", str(value))
    s = "".join(" " if _is_break(ch) else ch for ch in s)
    s = s.strip(_EDGES + _QUOTES)  # quotes around the whole field go; inner ones become '
    s = s.translate(_TRANSLATE)
    s = _LABEL_ANSWER.sub(lambda m: m.group(1).rstrip(" :=-"), s)
    s = _LABEL.sub(lambda m: f"{m.group(1)} -", s)
    s = _SPACE.sub(" ", s).strip(_EDGES)
    if len(s) > max_chars:
        cut = s[:max_chars]
        space = cut.rfind(" ")
        if space >= max_chars * 0.6:
            cut = cut[:space]
        s = cut.rstrip(_EDGES + ".") + "..."
    return s


def clean_title(title: Any, max_chars: int = TITLE_CHARS) -> str:
    """A title cleaned and capped (:data:`TITLE_CHARS`)."""
    return clean_field(title, max_chars)


def clean_text(text: Any, max_chars: int = TEXT_CHARS) -> str:
    """A description cleaned and capped in characters (the token budget applies after)."""
    return clean_field(text, max_chars)

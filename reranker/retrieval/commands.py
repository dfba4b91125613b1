"""What the `reranker candidates` and `reranker predict` commands do, as plain functions
returning JSON-friendly dicts (the CLI only parses options and prints)."""

from __future__ import annotations

from typing import Any

from ..data.dataset import Dataset
from ..errors import ConfigError, DataError
from ..types import History
from ._fitted import FittedIndex
from .rating import RatingPredictionMixin
from .similarity import ITEM_ONLY_SIMILARITIES, SIMILARITIES

MODELS = ("itemcf", "usercf", "popular")


def build_retriever(
    data: Dataset,
    model: str,
    similarity: str | None = None,
    k: int = 20,
    feedback: str = "auto",
) -> FittedIndex:
    """Build and fit a retriever by name through the registry; bad combinations raise
    ConfigError naming the option."""
    from ..registry import RETRIEVERS, BuildContext

    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if model == "popular":
        if similarity is not None:
            raise ConfigError("--similarity does not apply to the popularity model")
        return RETRIEVERS.build({"type": "popular"}, BuildContext(fit_data=data))
    if similarity is not None and similarity not in SIMILARITIES:
        raise ConfigError(f"unknown similarity {similarity!r}; choose one of {', '.join(SIMILARITIES)}")
    if model == "usercf" and similarity in ITEM_ONLY_SIMILARITIES:
        raise ConfigError(f"similarity {similarity!r} is supported by itemcf only (usercf: cosine, pearson)")
    opts: dict[str, Any] = {"type": model, "k": k, "feedback": feedback}
    if similarity is not None:
        opts["similarity"] = similarity
    return RETRIEVERS.build(opts, BuildContext(fit_data=data))


def candidates(
    data: Dataset,
    model: str,
    n: int,
    *,
    user: str | None = None,
    history: list[str] | None = None,
    similarity: str | None = None,
    k: int = 20,
    feedback: str = "auto",
) -> dict[str, Any]:
    """Top-n candidates for a known user or an ad-hoc history of item ids."""
    if (user is None) == (history is None):
        raise ConfigError("give exactly one of --user or --history")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if user is not None:
        if str(user) not in set(data.user_ids.astype(str)):
            raise DataError(f"unknown user id {user!r}", column="user_id")
        h = History(user_id=str(user))
    else:
        tokens = [t.strip() for t in history or [] if t.strip()]
        if not tokens:
            raise ConfigError("--history is empty; give comma-separated item ids (optionally id:rating)")
        items, ratings = _parse_history(tokens)
        unknown = [i for i in items if not data.has_item(i)]
        if unknown:
            raise DataError(f"unknown item id(s) in --history: {', '.join(map(repr, unknown))}", column="item_id")
        h = History(user_id=None, items=items, ratings=ratings)
    r = build_retriever(data, model, similarity, k, feedback)
    cands = r.retrieve(h, n)
    titles = data.items.set_index("item_id")["title"]
    return {
        "model": model,
        "similarity": None if model == "popular" else (similarity or "cosine"),
        "k": None if model == "popular" else k,
        "user_id": user,
        "history": list(h.items),
        "candidates": [
            {
                "rank": rank,
                "item_id": c.item_id,
                "title": str(titles.get(c.item_id, c.item_id)),
                "score": c.score,
                "source": c.source,
            }
            for rank, c in enumerate(cands, 1)
        ],
    }


def _parse_history(tokens: list[str]) -> tuple[list[str], list[float] | None]:
    """``["1", "50:5"]`` -> ids and ratings (all or none of the tokens carry a rating)."""
    rated = [":" in t for t in tokens]
    if not any(rated):
        return tokens, None
    if not all(rated):
        raise ConfigError("--history: give a rating for every item (id:rating) or for none")
    items, ratings = [], []
    for t in tokens:
        i, _, r = t.rpartition(":")
        try:
            ratings.append(float(r))
        except ValueError:
            raise ConfigError(f"--history: {t!r} has a rating that is not a number") from None
        items.append(i)
    return items, ratings


def predict(
    data: Dataset,
    model: str,
    user: str,
    item: str,
    *,
    similarity: str | None = None,
    k: int = 20,
) -> dict[str, Any]:
    """Predicted rating of `item` for `user` with the fallback used."""
    if model == "popular":
        raise ConfigError("the popularity model does not predict ratings; use itemcf or usercf")
    if not data.has_ratings:
        raise DataError("rating prediction needs a dataset with ratings", column="rating")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if str(user) not in set(data.user_ids.astype(str)):
        raise DataError(f"unknown user id {user!r}", column="user_id")
    if not data.has_item(item):
        raise DataError(f"unknown item id {item!r}", column="item_id")
    r = build_retriever(data, model, similarity, k, "explicit")
    assert isinstance(r, RatingPredictionMixin)  # itemcf / usercf (popular is refused above)
    p = r.predict(str(user), str(item))
    return {
        "model": model,
        "similarity": similarity or "cosine",
        "k": k,
        "user_id": str(user),
        "item_id": str(item),
        "prediction": p.value,
        "fallback": p.fallback,
        "n_neighbors": p.n_neighbors,
        "already_rated": r.has_rated(str(user), str(item)),
    }

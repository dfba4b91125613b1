"""Vocabulary and text of the generated demo world: the catalog (titles, descriptions,
attributes, prices) and the reviews. See :mod:`reranker.data.synthetic` for the story.

The vocabulary (brands, nouns with base prices and adjectives, colours, materials, sizes,
formats, feature phrases, review phrases) is package data, ``vocabulary.json``, read once on
first use. Its list order is part of the seeded generator: reordering changes every world.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .synthetic import WorldConfig

PRICE_BANDS = ("budget", "mid", "premium")
N_CATEGORIES = 10  # categories in vocabulary.json (WorldConfig.n_categories' upper bound)


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, Any]:
    """The parsed ``vocabulary.json``: ``categories`` (name -> vocabulary, nouns as
    ``(noun, base price, "|"-separated adjectives)`` tuples), ``review_openers`` and
    ``review_bodies`` (rating 1..5 -> phrases). Read once; callers must not mutate it."""
    raw = json.loads(resources.files(__package__).joinpath("vocabulary.json").read_text(encoding="utf-8"))
    categories = {
        name: {k: ([tuple(n) for n in v] if k == "nouns" else v) for k, v in voc.items()}
        for name, voc in raw["categories"].items()
    }
    return {
        "categories": categories,
        "review_openers": {int(r): v for r, v in raw["review_openers"].items()},
        "review_bodies": {int(r): v for r, v in raw["review_bodies"].items()},
    }


def categories() -> dict[str, dict[str, Any]]:
    """Each category: brands, (noun, base price in USD, "|"-separated adjectives that fit the
    noun), optional colours / materials / sizes / formats (the "variant"), feature phrases and a
    use phrase for descriptions."""
    return vocabulary()["categories"]


def _pick(rng: np.random.Generator, options: Sequence[Any], size: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), size)]


def make_catalog(cfg: WorldConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The item frame and the index arrays (category, brand, colour, price band, noun) behind it."""
    vocab = categories()
    names = list(vocab)[: cfg.n_categories]
    n = cfg.n_items
    cat_weights = rng.dirichlet(np.full(len(names), 8.0))
    # every category gets at least one item, the rest follow the category weights
    cat = np.sort(
        np.concatenate([np.arange(min(len(names), n)), rng.choice(len(names), size=max(n - len(names), 0), p=cat_weights)])
    )
    brands_all = [b for c in names for b in vocab[c]["brands"]]
    colors_all = sorted({col for c in names for col in vocab[c].get("colors", [])})
    color_pos = {c: i for i, c in enumerate(colors_all)}
    brand_tier = rng.choice([0.8, 1.0, 1.3], size=len(brands_all), p=[0.35, 0.4, 0.25])

    brand = np.empty(n, dtype=np.int64)
    color = np.full(n, -1, dtype=np.int64)
    noun_id = np.empty(n, dtype=np.int64)  # global noun index, for latent structure
    noun_name = np.empty(n, dtype=object)
    feature = np.empty(n, dtype=object)
    price = np.empty(n)
    titles, texts = np.empty(n, dtype=object), np.empty(n, dtype=object)
    cols: dict[str, np.ndarray] = {
        k: np.full(n, None, dtype=object) for k in ("color", "material", "size", "format")
    }
    noun_offset = 0
    brand_offset = 0
    for c, name in enumerate(names):  # loop over <= 10 categories, vectorised inside
        voc = vocab[name]
        idx = np.flatnonzero(cat == c)
        m = idx.size
        b_local = rng.integers(0, len(voc["brands"]), m)
        brand[idx] = brand_offset + b_local
        nn = rng.integers(0, len(voc["nouns"]), m)
        noun_id[idx] = noun_offset + nn
        base = np.array([p for _, p, _ in voc["nouns"]], dtype=float)[nn]
        price[idx] = np.round(base * brand_tier[brand[idx]] * rng.lognormal(0.0, 0.3, m), 0) - 0.01
        adj_lists = [a.split("|") for _, _, a in voc["nouns"]]
        adj = np.array([adj_lists[x][y] for x, y in zip(nn, rng.integers(0, 4, m), strict=True)], dtype=object)
        nouns = np.array([w for w, _, _ in voc["nouns"]], dtype=object)[nn]
        if voc.get("colors"):
            cc = _pick(rng, voc["colors"], m)
            cols["color"][idx] = cc
            color[idx] = [color_pos[x] for x in cc]
        if voc.get("materials"):
            cols["material"][idx] = _pick(rng, voc["materials"], m)
        if voc.get("sizes"):
            cols["size"][idx] = _pick(rng, voc["sizes"], m)
        if voc.get("formats"):
            cols["format"][idx] = _pick(rng, voc["formats"], m)
        f1 = rng.integers(0, len(voc["features"]), m)
        f2 = (f1 + 1 + rng.integers(0, len(voc["features"]) - 1, m)) % len(voc["features"])
        noun_name[idx] = nouns
        feature[idx] = np.asarray(voc["features"], dtype=object)[f1]
        for j, i in enumerate(idx):
            variant = cols["color"][i] or cols["format"][i] or cols["size"][i]
            b = voc["brands"][b_local[j]]
            titles[i] = f"{b} {adj[j]} {nouns[j]}" + (f", {variant}" if variant else "")
            mat = f" made of {cols['material'][i]}" if cols["material"][i] else ""
            size = f" Size: {cols['size'][i]}." if cols["size"][i] else ""
            texts[i] = (
                f"{adj[j]} {nouns[j].lower()} by {b}{mat}, with {voc['features'][f1[j]]} and "
                f"{voc['features'][f2[j]]}. Great for {voc['use']}.{size}"
            )
        noun_offset += len(voc["nouns"])
        brand_offset += len(voc["brands"])
    # make titles unique: later duplicates get a model number
    dup = pd.Series(titles).duplicated().to_numpy()
    for i in np.flatnonzero(dup):
        titles[i] = f"{titles[i]} (Model {chr(65 + i % 26)}{100 + i})"
    band = np.zeros(n, dtype=np.int64)
    for c in range(len(names)):
        idx = np.flatnonzero(cat == c)
        if idx.size:
            q = np.quantile(price[idx], [1 / 3, 2 / 3])
            band[idx] = np.searchsorted(q, price[idx], side="right")
    band_names = np.asarray(PRICE_BANDS, dtype=object)[band]
    texts = np.array(
        [f"{t} Price band: {b}." for t, b in zip(texts, band_names, strict=True)], dtype=object
    )
    width = len(str(n))
    items = pd.DataFrame(
        {
            "item_id": [f"P{i:0{width}d}" for i in range(n)],
            "title": titles,
            "text": texts,
            "category": np.asarray(names, dtype=object)[cat],
            "brand": np.asarray(brands_all, dtype=object)[brand],
            "price": price,
            "price_band": band_names,
            "color": cols["color"],
            "material": cols["material"],
            "size": np.where(pd.isna(cols["size"]), cols["format"], cols["size"]),
        }
    )
    arrays = {
        "cat": cat,
        "brand": brand,
        "color": color,
        "band": band,
        "noun": noun_id,
        "n_brands": np.array(len(brands_all)),
        "brand_count": np.array([len(vocab[c]["brands"]) for c in names]),
        "brand_start": np.cumsum([0] + [len(vocab[c]["brands"]) for c in names])[:-1],
        "n_colors": np.array(max(len(colors_all), 1)),
        "n_nouns": np.array(noun_offset),
        "brands_all": np.asarray(brands_all, dtype=object),
        "colors_all": np.asarray(colors_all, dtype=object),
        "category_names": np.asarray(names, dtype=object),
        "noun_name": noun_name,
        "feature": feature,
    }
    return items, arrays


def _lower(phrase: str) -> str:
    """Lower-case a product noun for running text, keeping acronyms (LED, USB-C, SPF)."""
    return " ".join(w if w.isupper() else w.lower() for w in phrase.split())


def make_reviews(
    cfg: WorldConfig,
    rng: np.random.Generator,
    items: pd.DataFrame,
    ca: dict[str, np.ndarray],
    review_user: np.ndarray,
    item_of: np.ndarray,
    rating: np.ndarray,
) -> pd.DataFrame:
    """About ``reviews_per_item`` buyers per item (all of them if fewer) write a short review."""
    m = item_of.size
    if m == 0 or cfg.reviews_per_item == 0:
        return pd.DataFrame(columns=["item_id", "user_id", "rating", "text"])
    # each buyer of item i reviews with probability min(1, reviews_per_item / buyers_i)
    buyers = np.bincount(item_of, minlength=len(items))
    p = np.minimum(1.0, cfg.reviews_per_item / np.maximum(buyers, 1))
    chosen = np.flatnonzero(rng.random(m) < p[item_of])
    nouns, features = ca["noun_name"], ca["feature"]
    openers, bodies = vocabulary()["review_openers"], vocabulary()["review_bodies"]
    opener_pick = rng.integers(0, 4, chosen.size)
    out = []
    for j, x in enumerate(chosen):  # only ~reviews_per_item * n_items rows
        r = int(rating[x])
        i = item_of[x]
        body = bodies[r].format(noun=_lower(nouns[i]), feature=features[i])
        out.append(f"{openers[r][opener_pick[j]]} {body}")
    return pd.DataFrame(
        {
            "item_id": items["item_id"].to_numpy()[item_of[chosen]],
            "user_id": review_user[chosen],
            "rating": rating[chosen],
            "text": out,
        }
    )

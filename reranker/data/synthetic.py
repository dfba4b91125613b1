"""The generated demo world: an e-commerce catalog and users with known tastes.

Everything is drawn from ``numpy.random.default_rng(config.seed)`` (independent child streams
per component), so the same config gives identical frames and another seed another world.

Generative story
----------------
- **Catalog.** Each item gets a category (10 e-commerce categories), a brand, a product noun,
  an adjective and, where sensible, a colour, material or size; a price drawn around the noun's
  base price (brand tier x log-normal noise) and a price band (tertile of price within its
  category). Titles read ``"<Brand> <Adjective> <Noun>, <Variant>"``; descriptions are composed
  from per-category feature phrases. Items also carry two latent quantities that are *not*
  exposed in the catalog: a quality score and a Zipf-like popularity prior (exposure).
- **Users.** Category preferences from a Dirichlet, a preferred price band, two favourite
  brands (from categories drawn from their own tastes), a favourite colour and a small latent
  factor vector.
- **Affinity** (the ground truth, :meth:`World.affinity`)::

      a(u, i) = log(theta_u[cat_i] + eps)            # category taste
              - w_price * |band_u - band_i|           # price band
              + brand_u[brand_i] + w_color * [colour_i = fav_u]
              + w_quality * quality_i + U_u . V_i     # quality + latent factors

- **Purchases.** Each user buys ``min_purchases + NegBin`` distinct items, sampled without
  replacement (Gumbel top-n) from ``a(u, i) / temperature + w_pop * log popularity_i``, so
  popular items are bought more without being "preferred" more. Purchases are grouped into
  sessions (mostly one category each) spread over ``days`` days; timestamps strictly increase
  per user. Ratings 1-5 come from the user-standardised affinity plus quality and noise.
- **Reviews.** A few buyers per item write a short review whose tone follows their rating.
- **Clicks.** :meth:`World.simulate_clicks` uses a position-based model: an item at rank r is
  examined with probability ``1 / log2(r + 1)`` and clicked if examined with probability
  ``sigmoid(click_slope * (z - click_offset))``, z the user-standardised affinity.

Cost (one thread, numpy 2.4, CPU time): the default world (500 users x 400 items, ~6.4k
purchases) takes ~0.05 s; 100k users x 400 items (1.2 M purchases) ~4.8 s CPU (9-14 s wall on
a loaded shared 2-core machine) with ~0.7 GB peak RSS.
Sampling is chunked over users; there is no Python loop over users or users x items.

Layout: this module (config, :class:`World`, purchases and sessions); the vocabulary
(``vocabulary.json``), catalog text and reviews in :mod:`.synthetic_text`; the click model in
:mod:`.simulate`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ..config import BaseConfig
from ..errors import UnknownIdError
from .dataset import Dataset
from .simulate import ClickModel
from .synthetic_text import N_CATEGORIES, PRICE_BANDS, categories, make_catalog, make_reviews

log = logging.getLogger(__name__)

__all__ = ["WorldConfig", "World", "generate_world", "CATEGORIES"]

# the category vocabulary (reranker/data/vocabulary.json via synthetic_text.categories());
# declared here, provided lazily by __getattr__ so importing reads no file
CATEGORIES: dict[str, dict[str, Any]]


def __getattr__(name: str) -> Any:
    # CATEGORIES is package data (vocabulary.json), read on first use, not at import time
    if name == "CATEGORIES":
        return categories()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- configuration
class WorldConfig(BaseConfig):
    """Parameters of the generated world (all defaults give the 500 x 400 demo world)."""

    seed: int = 0
    n_users: int = Field(500, ge=1, le=1_000_000)
    n_items: int = Field(400, ge=3, le=1_000_000)
    n_categories: int = Field(10, ge=1, le=N_CATEGORIES)
    min_purchases: int = Field(3, ge=1)
    mean_purchases: float = Field(12.0, gt=0)
    max_purchases: int = Field(60, ge=1)
    start: str = "2024-01-01"
    days: float = Field(365.0, gt=0)
    category_concentration: float = Field(0.4, gt=0)  # Dirichlet alpha per category
    zipf_exponent: float = Field(0.8, ge=0)  # popularity prior ~ rank^-s
    popularity_weight: float = Field(1.0, ge=0)
    temperature: float = Field(0.6, gt=0)  # purchase noise: logits = affinity / T + ...
    price_weight: float = Field(0.8, ge=0)
    brand_weight: float = Field(0.8, ge=0)
    color_weight: float = Field(0.5, ge=0)
    quality_weight: float = Field(0.5, ge=0)
    latent_dim: int = Field(8, ge=0)
    latent_scale: float = Field(0.5, ge=0)
    mean_rating: float = Field(4.0, ge=1, le=5)
    rating_noise: float = Field(0.7, ge=0)
    reviews_per_item: float = Field(3.0, ge=0)
    click_slope: float = Field(1.5, gt=0)
    click_offset: float = Field(1.0)

    @model_validator(mode="after")
    def _check(self) -> WorldConfig:
        if self.min_purchases > self.max_purchases:
            raise ValueError("min_purchases must be <= max_purchases")
        if self.min_purchases > self.n_items:
            raise ValueError("min_purchases must be <= n_items")
        pd.Timestamp(self.start)  # raises on a bad date
        return self


# --------------------------------------------------------------------------- the world
@dataclass
class _Latent:
    """Latent arrays (indices, not ids) behind the frames."""

    item_cat: np.ndarray  # (I,) category index
    item_brand: np.ndarray  # (I,) global brand index
    item_color: np.ndarray  # (I,) global colour index, -1 none
    item_band: np.ndarray  # (I,) 0/1/2
    item_quality: np.ndarray  # (I,)
    item_logpop: np.ndarray  # (I,)
    item_vec: np.ndarray  # (I, d)
    user_theta: np.ndarray  # (U, C)
    user_band: np.ndarray  # (U,)
    user_brand: np.ndarray  # (U, B) additive brand affinity
    user_color: np.ndarray  # (U,) favourite global colour index
    user_vec: np.ndarray  # (U, d)
    user_mu: np.ndarray = field(default_factory=lambda: np.empty(0))  # mean affinity over items
    user_sd: np.ndarray = field(default_factory=lambda: np.empty(0))


class World(ClickModel):
    """A generated e-commerce world: catalog, users, purchases, reviews and the true tastes.

    Build with :func:`generate_world` or :meth:`World.generate`. Frames: ``items``,
    ``users``, ``interactions`` (user_id, item_id, rating, timestamp), ``reviews``.
    """

    def __init__(
        self,
        config: WorldConfig,
        items: pd.DataFrame,
        users: pd.DataFrame,
        interactions: pd.DataFrame,
        reviews: pd.DataFrame,
        latent: _Latent,
    ) -> None:
        self.config = config.model_copy(deep=True)  # later edits to the caller's copy do not leak
        self.items = items
        self.users = users
        self.interactions = interactions
        self.reviews = reviews
        self._latent = latent
        # plain dicts: per-call lookups of a few ids are ~100x faster than pd.Index.get_indexer
        self._user_pos_of = {u: j for j, u in enumerate(users["user_id"].tolist())}
        self._item_pos_of = {i: j for j, i in enumerate(items["item_id"].tolist())}
        self._dataset: Dataset | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def generate(cls, config: WorldConfig | None = None) -> World:
        """Generate the world described by ``config`` (default: the demo world)."""
        return _generate(config or WorldConfig())

    # ------------------------------------------------------------------ views
    @property
    def dataset(self) -> Dataset:
        """The purchases and catalog as a validated :class:`Dataset` (built once)."""
        if self._dataset is None:
            self._dataset = Dataset(
                self.interactions[["user_id", "item_id", "rating", "timestamp"]],
                self.items,
                name=f"synthetic-seed{self.config.seed}",
            )
        return self._dataset

    @property
    def user_ids(self) -> np.ndarray:
        return self.users["user_id"].to_numpy()

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    def _user_pos(self, user_id: str) -> int:
        pos = self._user_pos_of.get(str(user_id))
        if pos is None:
            raise UnknownIdError(f"unknown user id {user_id!r}", column="user_id")
        return pos

    def _item_pos(self, item_ids: Sequence[str]) -> np.ndarray:
        get = self._item_pos_of.get
        pos = [get(str(i), -1) for i in item_ids]
        out = np.fromiter(pos, dtype=np.int64, count=len(pos))
        if (out < 0).any():
            bad = list(item_ids)[int(np.flatnonzero(out < 0)[0])]
            raise UnknownIdError(f"unknown item id {bad!r}", column="item_id")
        return out

    # ------------------------------------------------------------------ ground truth
    def affinity(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """True preference of ``user_id`` for each item (higher = preferred; unbounded scale)."""
        u = self._user_pos(user_id)
        return _affinity(self._latent, self.config, np.array([u]), self._item_pos(item_ids))[0]

    def affinity_matrix(
        self, user_ids: Sequence[str], item_ids: Sequence[str] | None = None
    ) -> np.ndarray:
        """True affinity ``(len(user_ids), len(item_ids))`` in one call (all items by default)."""
        users = np.fromiter((self._user_pos(u) for u in user_ids), dtype=np.int64)
        items = np.arange(len(self.items)) if item_ids is None else self._item_pos(item_ids)
        return _affinity(self._latent, self.config, users, items)

    def affinity_z(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """Affinity standardised by the user's mean and spread over the whole catalog."""
        u = self._user_pos(user_id)
        a = _affinity(self._latent, self.config, np.array([u]), self._item_pos(item_ids))[0]
        return (a - self._latent.user_mu[u]) / self._latent.user_sd[u]

    # ------------------------------------------------------------------ output
    def to_csv(self, out_dir: str | Path) -> Path:
        """Write interactions.csv, items.csv, reviews.csv and users.csv; returns the folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.interactions.to_csv(out / "interactions.csv", index=False)
        self.items.to_csv(out / "items.csv", index=False)
        self.reviews.to_csv(out / "reviews.csv", index=False)
        self.users.to_csv(out / "users.csv", index=False)
        log.info("wrote the synthetic world (seed %d) to %s", self.config.seed, out)
        return out

    def __repr__(self) -> str:
        return (
            f"World(seed={self.config.seed}, users={len(self.users)}, items={len(self.items)}, "
            f"interactions={len(self.interactions)}, reviews={len(self.reviews)})"
        )


def generate_world(seed: int = 0, n_users: int = 500, n_items: int = 400, **kwargs: Any) -> World:
    """Generate a world; extra keyword arguments are :class:`WorldConfig` fields.

    Bad values raise :class:`~reranker.errors.ConfigError` naming the field.
    """
    cfg = WorldConfig.from_dict({"seed": seed, "n_users": n_users, "n_items": n_items, **kwargs})
    return World.generate(cfg)


# --------------------------------------------------------------------------- internals
def _affinity(lat: _Latent, cfg: WorldConfig, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Affinity matrix ``(len(users), len(items))`` (per-user terms gathered, not recomputed)."""
    a = np.log(lat.user_theta[users] + 1e-3)[:, lat.item_cat[items]]
    band_gap = np.abs(np.arange(3)[:, None] - np.arange(3)[None, :]) * cfg.price_weight
    a -= band_gap[lat.user_band[users]][:, lat.item_band[items]]
    a += (cfg.brand_weight * lat.user_brand[users])[:, lat.item_brand[items]]
    col = lat.item_color[items]
    fav = (lat.user_color[users, None] == col[None, :]) & (col >= 0)[None, :]
    a += cfg.color_weight * fav
    a += cfg.quality_weight * lat.item_quality[items][None, :]
    if lat.item_vec.shape[1]:
        a += lat.user_vec[users] @ lat.item_vec[items].T
    return a


def _generate(cfg: WorldConfig) -> World:
    root = np.random.default_rng(cfg.seed)
    r_cat, r_item, r_user, r_buy, r_time, r_rate, r_rev = root.spawn(7)
    items, ca = make_catalog(cfg, r_cat)
    n_i, n_u, d = cfg.n_items, cfg.n_users, cfg.latent_dim
    n_c = len(ca["category_names"])

    # item latents
    quality = r_item.normal(0.0, 1.0, n_i)
    ranks = r_item.permutation(n_i)
    logpop = -cfg.zipf_exponent * np.log1p(ranks)
    noun_vec = r_item.normal(0.0, 1.0, (int(ca["n_nouns"]), d))
    item_vec = (0.7 * noun_vec[ca["noun"]] + 0.7 * r_item.normal(0.0, 1.0, (n_i, d))) * np.sqrt(
        cfg.latent_scale / max(d, 1)
    )

    # user latents
    cat_share = np.bincount(ca["cat"], minlength=n_c) / n_i
    theta = r_user.dirichlet(cfg.category_concentration * n_c * np.maximum(cat_share, 1e-3), n_u)
    user_band = r_user.choice(3, size=n_u, p=[0.35, 0.45, 0.2])
    n_b = int(ca["n_brands"])
    user_brand = r_user.normal(0.0, 0.3, (n_u, n_b))
    # two favourite brands, each from a category drawn from the user's own category taste
    fav_cat = (np.cumsum(theta, axis=1)[:, None, :] < r_user.random((n_u, 2, 1))).sum(axis=2)
    fav_cat = np.minimum(fav_cat, n_c - 1)
    favs = ca["brand_start"][fav_cat] + np.floor(
        r_user.random((n_u, 2)) * ca["brand_count"][fav_cat]
    ).astype(np.int64)
    user_brand[np.arange(n_u)[:, None], favs] += 1.0
    user_color = r_user.integers(0, int(ca["n_colors"]), n_u)
    user_vec = r_user.normal(0.0, 1.0, (n_u, d))  # u.v has variance ~ latent_scale
    lat = _Latent(
        item_cat=ca["cat"], item_brand=ca["brand"], item_color=ca["color"], item_band=ca["band"],
        item_quality=quality, item_logpop=logpop, item_vec=item_vec, user_theta=theta,
        user_band=user_band, user_brand=user_brand, user_color=user_color, user_vec=user_vec,
    )

    # purchases: Gumbel top-n per user, chunked over users
    extra_mean = max(cfg.mean_purchases - cfg.min_purchases, 1e-6)
    n_buy = cfg.min_purchases + r_buy.negative_binomial(1.5, 1.5 / (1.5 + extra_mean), n_u)
    n_buy = np.minimum(n_buy, min(cfg.max_purchases, n_i))
    max_n = int(n_buy.max())
    mu = np.empty(n_u)
    sd = np.empty(n_u)
    bought = np.empty((n_u, max_n), dtype=np.int64)
    bought_aff = np.empty((n_u, max_n))
    chunk = max(1, 2_000_000 // n_i)
    all_items = np.arange(n_i)
    for s in range(0, n_u, chunk):
        us = np.arange(s, min(n_u, s + chunk))
        a = _affinity(lat, cfg, us, all_items)
        mu[us] = a.mean(axis=1)
        sd[us] = np.sqrt(np.maximum((a * a).mean(axis=1) - mu[us] ** 2, 0.0)) + 1e-9
        keys = a / cfg.temperature + cfg.popularity_weight * logpop + r_buy.gumbel(size=a.shape)
        top = np.argpartition(-keys, max_n - 1, axis=1)[:, :max_n] if max_n < n_i else np.tile(all_items, (us.size, 1))
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        bought[us] = top
        bought_aff[us] = np.take_along_axis(a, top, axis=1)
    lat.user_mu, lat.user_sd = mu, sd
    keep = np.arange(max_n)[None, :] < n_buy[:, None]
    user_of = np.repeat(np.arange(n_u), n_buy)
    item_of = bought[keep]
    z = (bought_aff[keep] - mu[user_of]) / sd[user_of]

    # sessions: order purchases by a per-(user, category) key so sessions are mostly one
    # category, cut into sessions of s_u items, then scatter sessions over the user's active time
    m = item_of.size
    cat_key = r_time.random((n_u, n_c))[user_of, lat.item_cat[item_of]]
    # user_of is non-decreasing and cat_key < 1: one stable float sort groups by (user, category)
    order = np.argsort(user_of + 0.5 * cat_key, kind="stable")
    user_of, item_of, z = user_of[order], item_of[order], z[order]
    starts = np.cumsum(n_buy) - n_buy
    pos_in_user = np.arange(m) - np.repeat(starts, n_buy)
    per_session = 1 + r_time.poisson(1.5, n_u)
    session = pos_in_user // per_session[user_of]
    span = cfg.days * 86400.0
    join = r_time.uniform(0.0, 0.5 * span, n_u)
    n_sess = (n_buy + per_session - 1) // per_session
    sess_time = r_time.uniform(0.0, 1.0, int(n_sess.sum()))
    sess_start = np.cumsum(n_sess) - n_sess
    t_sess = join[user_of] + sess_time[sess_start[user_of] + session] * (span - 3600.0 - join[user_of])
    within = pos_in_user - session * per_session[user_of]
    t = np.floor(t_sess + within * r_time.uniform(60.0, 900.0, m))
    order = np.argsort(user_of * 4.0 * span + t, kind="stable")  # exact: < 2**53 for 1e6 users
    user_of, item_of, z, t = user_of[order], item_of[order], z[order], t[order]
    # strictly increasing per user: max-accumulate on (t - index), users offset far apart
    idx = np.arange(m, dtype=np.float64)
    g = t + user_of * 4.0 * span - idx
    t = np.maximum.accumulate(g) + idx - user_of * 4.0 * span
    t0 = pd.Timestamp(cfg.start, tz="UTC").timestamp()
    timestamps = (t0 + t).astype(np.int64)

    # ratings 1..5
    # standardise z over all purchases so the rating scale does not move with the temperature
    zs = (z - z.mean()) / (z.std() + 1e-9) if m > 1 else np.zeros(m)
    noise = r_rate.normal(0.0, cfg.rating_noise, m)
    latent_r = cfg.mean_rating + 0.9 * zs + 0.35 * quality[item_of] + noise
    rating = np.clip(np.rint(latent_r), 1, 5).astype(np.int64)

    uw = len(str(n_u))
    user_ids = np.array([f"U{u:0{uw}d}" for u in range(n_u)], dtype=object)
    item_ids = items["item_id"].to_numpy()
    interactions = pd.DataFrame(
        {"user_id": user_ids[user_of], "item_id": item_ids[item_of], "rating": rating, "timestamp": timestamps}
    )

    reviews = make_reviews(cfg, r_rev, items, ca, user_ids[user_of], item_of, rating)
    top2 = np.argsort(-theta, axis=1)[:, :2]
    cats = ca["category_names"]
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "top_categories": [f"{cats[a]};{cats[b]}" for a, b in top2],
            "top_category_share": np.round(np.take_along_axis(theta, top2[:, :1], axis=1)[:, 0], 4),
            "price_band": np.asarray(PRICE_BANDS, dtype=object)[user_band],
            "favourite_brands": [f"{ca['brands_all'][a]};{ca['brands_all'][b]}" for a, b in favs],
            "favourite_color": ca["colors_all"][user_color] if len(ca["colors_all"]) else None,
            "n_purchases": n_buy,
        }
    )
    log.info("generated synthetic world: %d users, %d items, %d purchases", n_u, n_i, m)
    return World(cfg, items, users, interactions, reviews, lat)

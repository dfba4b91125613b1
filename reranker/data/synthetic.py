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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from ..config import BaseConfig
from .dataset import Dataset

log = logging.getLogger(__name__)

__all__ = ["WorldConfig", "World", "generate_world", "CATEGORIES"]

# --------------------------------------------------------------------------- vocabularies
# Each category: brands, (noun, base price in USD, "|"-separated adjectives that fit the noun),
# optional colours / materials / sizes / formats (the "variant"), feature phrases and a use
# phrase for descriptions.
CATEGORIES: dict[str, dict[str, Any]] = {
    "Electronics": {
        "brands": ["Voltix", "Sonara", "Nexacore", "Lumio", "Brightwave", "Kestrel Audio"],
        "nouns": [("Earbuds", 59, "Wireless|Noise-Cancelling|Sport|Compact"), ("Bluetooth Speaker", 45, "Portable|Waterproof|Compact|Rugged"),
                  ("Power Bank", 29, "Fast-Charging|Slim|High-Capacity|Compact"), ("Smartwatch", 149, "Fitness|Smart|Ultra-Slim|Rugged"),
                  ("Webcam", 69, "HD|4K|Wide-Angle|Compact"), ("Mechanical Keyboard", 89, "Wireless|Compact|Backlit|Quiet"),
                  ("Wireless Mouse", 25, "Ergonomic|Silent|Compact|Rechargeable"), ("Tablet Stand", 19, "Adjustable|Foldable|Aluminium|Portable"),
                  ("Over-Ear Headphones", 129, "Noise-Cancelling|Wireless|Studio|Foldable"), ("USB-C Hub", 39, "7-in-1|Slim|Aluminium|Compact")],
        "colors": ["Black", "White", "Silver", "Midnight Blue", "Graphite"],
        "materials": ["aluminium", "recycled plastic", "matte polymer"],
        "features": ["a 30-hour battery", "Bluetooth 5.3", "USB-C charging", "a built-in microphone",
                     "low-latency mode", "a one-year warranty", "voice assistant support"],
        "use": "work, travel and everyday listening",
    },
    "Books": {
        "brands": ["Harbor Press", "Quill & Ink", "Northlight Books", "Pageturner", "Meridian House", "Old Oak Publishing"],
        "nouns": [("Mystery Novel", 14, "Bestselling|Gripping|Award-Winning|Classic"), ("Cookbook", 24, "Illustrated|Vegetarian|Essential|Family"),
                  ("Science Fiction Saga", 16, "Bestselling|Epic|Award-Winning|Classic"), ("History of Rome", 22, "Illustrated|Concise|Definitive|Popular"),
                  ("Guide to Gardening", 19, "Beginner's|Illustrated|Practical|Complete"), ("Fantasy Trilogy Box Set", 39, "Epic|Bestselling|Collector's|Classic"),
                  ("Self-Help Handbook", 15, "Bestselling|Practical|Pocket|Essential"), ("Children's Picture Book", 11, "Illustrated|Award-Winning|Bedtime|Classic"),
                  ("Python Programming Guide", 34, "Beginner's|Practical|Definitive|Hands-On"), ("Travel Atlas", 27, "Illustrated|Pocket|Definitive|Road")],
        "formats": ["Paperback", "Hardcover", "Large Print", "Collector's Edition"],
        "features": ["over 300 pages", "full-colour illustrations", "a foreword by the author",
                     "reading-group questions", "an index and glossary", "durable binding"],
        "use": "quiet evenings and long commutes",
    },
    "Kitchen": {
        "brands": ["Cookwell", "Ferro & Co", "Mesa", "Copperleaf", "Chef's Choice Home", "Nordkok"],
        "nouns": [("Frying Pan", 35, "Non-Stick|Cast-Iron|Stainless|Professional"), ("Chef's Knife", 49, "Professional|Damascus|Forged|Japanese-Style"),
                  ("Cutting Board", 22, "Bamboo|Reversible|Extra-Large|Non-Slip"), ("Espresso Maker", 89, "Stovetop|Compact|Manual|Professional"),
                  ("Mixing Bowl Set", 29, "Stackable|Stainless|Non-Slip|Nesting"), ("Dutch Oven", 79, "Enamelled|Cast-Iron|Heavy-Duty|Round"),
                  ("Electric Kettle", 39, "Cordless|Temperature-Control|Glass|Quiet-Boil"), ("Measuring Cup Set", 12, "Stackable|Stainless|Everyday|Magnetic"),
                  ("Food Storage Containers", 24, "Airtight|Stackable|Glass|Leak-Proof"), ("Blender", 69, "High-Speed|Personal|Professional|Quiet")],
        "colors": ["Charcoal", "Red", "Cream", "Sage Green", "Navy"],
        "materials": ["stainless steel", "cast iron", "bamboo", "borosilicate glass", "ceramic"],
        "features": ["dishwasher-safe parts", "an even-heating base", "a comfortable grip",
                     "oven-safe up to 230 C", "a non-slip base", "BPA-free materials"],
        "use": "weeknight dinners and weekend baking",
    },
    "Sports & Outdoors": {
        "brands": ["Trailhead", "Summit Gear", "Riverstone", "Apex Motion", "Wildpine", "Stridewell"],
        "nouns": [("Hiking Backpack", 79, "Lightweight|Waterproof|Ventilated|Rugged"), ("Yoga Mat", 29, "Non-Slip|Extra-Thick|Eco-Friendly|Travel"),
                  ("Camping Tent", 149, "Waterproof|Lightweight|Pop-Up|Four-Season"), ("Water Bottle", 19, "Insulated|Leak-Proof|Lightweight|Collapsible"),
                  ("Trekking Poles", 45, "Foldable|Carbon|Adjustable|Lightweight"), ("Running Belt", 17, "Adjustable|Reflective|Lightweight|Water-Resistant"),
                  ("Sleeping Bag", 89, "Insulated|Lightweight|Compact|Three-Season"), ("Resistance Bands Set", 22, "Heavy-Duty|Adjustable|Portable|Latex-Free"),
                  ("Headlamp", 25, "Rechargeable|Waterproof|Bright|Lightweight"), ("Cycling Gloves", 21, "Breathable|Padded|Touchscreen|Fingerless")],
        "colors": ["Forest Green", "Orange", "Black", "Slate Grey", "Sky Blue"],
        "materials": ["ripstop nylon", "recycled polyester", "TPE foam", "aluminium alloy"],
        "features": ["reflective details", "a lifetime warranty", "quick-dry fabric", "a carry bag",
                     "reinforced seams", "an ergonomic fit"],
        "use": "trails, gyms and weekend trips",
    },
    "Beauty": {
        "brands": ["Lumiere", "Petal & Pine", "Dermacare", "Aurora Skin", "Velvet Bloom", "Pure Botanica"],
        "nouns": [("Face Moisturiser", 24, "Hydrating|Fragrance-Free|Vegan|Nourishing"), ("Vitamin C Serum", 29, "Brightening|Vegan|Lightweight|Organic"),
                  ("Shampoo", 12, "Gentle|Volumising|Sulfate-Free|Organic"), ("Lip Balm Set", 9, "Nourishing|Tinted|Organic|Vegan"),
                  ("Sunscreen SPF 50", 18, "Lightweight|Fragrance-Free|Water-Resistant|Mineral"), ("Hair Dryer", 59, "Ionic|Compact|Professional|Quiet"),
                  ("Makeup Brush Set", 25, "Vegan|Professional|Travel|Soft-Bristle"), ("Body Lotion", 14, "Hydrating|Gentle|Nourishing|Fragrance-Free"),
                  ("Clay Face Mask", 16, "Purifying|Gentle|Organic|Detox"), ("Eau de Parfum", 65, "Floral|Long-Lasting|Woody|Fresh")],
        "sizes": ["30 ml", "50 ml", "100 ml", "250 ml"],
        "features": ["hyaluronic acid", "no parabens", "dermatologist testing", "a light texture",
                     "cruelty-free ingredients", "a recyclable bottle"],
        "use": "daily self-care routines",
    },
    "Toys & Games": {
        "brands": ["Playfort", "Brickly", "Wonderbox", "Tiny Titans", "Puzzleworks", "Jolly Fox"],
        "nouns": [("Building Blocks Set", 35, "Creative|Classic|Magnetic|Colourful"), ("Jigsaw Puzzle", 18, "1000-Piece|Challenging|Scenic|Family"),
                  ("Board Game", 29, "Strategy|Family|Cooperative|Classic"), ("Remote Control Car", 45, "High-Speed|Off-Road|Rechargeable|Stunt"),
                  ("Plush Bear", 16, "Cuddly|Classic|Giant|Soft"), ("Art and Craft Kit", 22, "Creative|Deluxe|Educational|Colourful"),
                  ("Train Set", 55, "Wooden|Classic|Electric|Deluxe"), ("Card Game", 12, "Party|Family|Strategy|Pocket"),
                  ("Science Experiment Kit", 32, "Educational|Interactive|Deluxe|Junior"), ("Dollhouse", 79, "Wooden|Deluxe|Three-Storey|Furnished")],
        "colors": ["Rainbow", "Red", "Blue", "Pastel", "Natural Wood"],
        "materials": ["sustainable wood", "non-toxic plastic", "soft plush", "recycled cardboard"],
        "features": ["pieces for ages 4 and up", "a storage box", "an illustrated guide",
                     "play for 2 to 6 players", "rounded safe edges", "hours of screen-free fun"],
        "use": "family game nights and rainy afternoons",
    },
    "Clothing": {
        "brands": ["Northwind", "Cotton Lane", "Urban Thread", "Alder & Ash", "Basics Co", "Marlow"],
        "nouns": [("T-Shirt", 19, "Slim-Fit|Organic Cotton|Classic|Relaxed"), ("Hoodie", 45, "Cosy|Relaxed|Zip-Up|Organic Cotton"),
                  ("Denim Jeans", 59, "Slim-Fit|Stretch|Straight-Leg|Relaxed"), ("Rain Jacket", 89, "Packable|Waterproof|Lightweight|Hooded"),
                  ("Wool Socks", 14, "Merino|Cushioned|Hiking|Cosy"), ("Chino Trousers", 49, "Slim-Fit|Stretch|Classic|Tapered"),
                  ("Knit Sweater", 65, "Merino|Cable-Knit|Cosy|Classic"), ("Running Shorts", 25, "Lightweight|Stretch|Breathable|Lined"),
                  ("Flannel Shirt", 39, "Classic|Brushed|Relaxed|Organic Cotton"), ("Beanie", 15, "Merino|Cosy|Ribbed|Classic")],
        "colors": ["Black", "Navy", "Heather Grey", "Olive", "Burgundy", "White"],
        "materials": ["organic cotton", "merino wool", "recycled polyester", "linen blend"],
        "sizes": ["S", "M", "L", "XL"],
        "features": ["a tailored fit", "reinforced stitching", "a soft brushed finish",
                     "machine-washable fabric", "deep pockets", "moisture-wicking fibres"],
        "use": "everyday wear in every season",
    },
    "Home & Garden": {
        "brands": ["Greenhaven", "Hearth & Home", "Bloomfield", "Casa Nova", "Oakridge", "Willow Lane"],
        "nouns": [("Throw Blanket", 35, "Handwoven|Cosy|Chunky-Knit|Soft"), ("Plant Pot Set", 25, "Minimalist|Ceramic|Self-Watering|Decorative"),
                  ("Garden Hose", 39, "Expandable|Kink-Free|Heavy-Duty|Lightweight"), ("LED String Lights", 19, "Solar-Powered|Weatherproof|Warm-White|Decorative"),
                  ("Scented Candle", 16, "Soy|Lavender|Hand-Poured|Rustic"), ("Storage Basket", 22, "Handwoven|Collapsible|Rustic|Modular"),
                  ("Bird Feeder", 24, "Squirrel-Proof|Hanging|Weatherproof|Rustic"), ("Table Lamp", 49, "Minimalist|Dimmable|Rustic|Modern"),
                  ("Pruning Shears", 21, "Ergonomic|Bypass|Heavy-Duty|Precision"), ("Outdoor Cushion", 32, "Weatherproof|Fade-Resistant|Reversible|Plush")],
        "colors": ["Ivory", "Terracotta", "Charcoal", "Sage", "Natural"],
        "materials": ["cotton", "ceramic", "rattan", "powder-coated steel", "recycled glass"],
        "features": ["UV-resistant finish", "a 40-hour burn time", "easy assembly",
                     "a soft, washable cover", "drainage holes", "an automatic timer"],
        "use": "living rooms, patios and gardens",
    },
    "Grocery": {
        "brands": ["Harvest Table", "Green Valley", "Nonna's Pantry", "Bean & Leaf", "Sunmeadow", "Peak Provisions"],
        "nouns": [("Coffee Beans", 14, "Dark Roast|Organic|Fair-Trade|Medium Roast"), ("Green Tea", 8, "Organic|Jasmine|Fair-Trade|Matcha"),
                  ("Olive Oil", 16, "Extra Virgin|Organic|Cold-Pressed|Greek"), ("Granola", 7, "Honey Almond|Gluten-Free|Wholegrain|Sugar-Free"),
                  ("Pasta", 4, "Wholegrain|Gluten-Free|Bronze-Cut|Organic"), ("Dark Chocolate Bar", 4, "Sea Salt|Fair-Trade|Organic|85% Cocoa"),
                  ("Almond Butter", 9, "Crunchy|Smooth|Organic|Unsweetened"), ("Protein Bars", 19, "Peanut|Gluten-Free|Sugar-Free|Chocolate"),
                  ("Honey", 11, "Raw|Wildflower|Organic|Manuka"), ("Trail Mix", 8, "Sea Salt|Tropical|Organic|Dark Chocolate")],
        "formats": ["Single", "Pack of 3", "Pack of 6", "Family Size"],
        "features": ["sustainably sourced ingredients", "no artificial flavours", "a resealable bag",
                     "small-batch production", "a rich, balanced taste", "plenty of fibre"],
        "use": "breakfasts, snacks and home cooking",
    },
    "Pet Supplies": {
        "brands": ["Pawsome", "Tailwag", "WhiskerWorks", "Happy Hound", "FurBall Co", "Nature's Paw"],
        "nouns": [("Dog Bed", 49, "Orthopedic|Washable|Calming|Raised"), ("Cat Tree", 79, "Multi-Level|Sturdy|Compact|Modern"),
                  ("Dog Food", 39, "Grain-Free|Natural|High-Protein|Senior"), ("Cat Litter", 19, "Clumping|Unscented|Natural|Low-Dust"),
                  ("Chew Toy", 11, "Chew-Resistant|Interactive|Natural|Squeaky"), ("Dog Leash", 17, "Reflective|Adjustable|Hands-Free|Padded"),
                  ("Pet Grooming Brush", 14, "Self-Cleaning|Gentle|Deshedding|Ergonomic"), ("Aquarium Filter", 29, "Quiet|Adjustable|Compact|Three-Stage"),
                  ("Cat Treats", 7, "Natural|Grain-Free|Crunchy|Dental"), ("Pet Carrier", 45, "Airline-Approved|Soft-Sided|Ventilated|Foldable")],
        "sizes": ["Small", "Medium", "Large"],
        "features": ["vet-approved design", "a non-slip bottom", "durable stitching",
                     "real chicken as the first ingredient", "an easy-clean surface", "a reflective strip"],
        "use": "happy, healthy pets",
    },
}

PRICE_BANDS = ("budget", "mid", "premium")

_REVIEW_OPENERS = {
    1: ["Very disappointed.", "Would not buy again.", "Returned it after a week.", "Not as described."],
    2: ["Not great.", "Expected more.", "Below average.", "It does the job, barely."],
    3: ["It's okay.", "Decent for the price.", "Average overall.", "Mixed feelings."],
    4: ["Really good.", "Happy with this purchase.", "Solid choice.", "Works well."],
    5: ["Absolutely love it!", "Exceeded my expectations.", "Perfect!", "Best purchase this year."],
}
_REVIEW_BODIES = {
    1: "The {noun} broke quickly and {feature} made no difference.",
    2: "The {noun} feels cheaper than the photos suggest.",
    3: "The {noun} is fine, though {feature} is nothing special.",
    4: "The {noun} is well made and I like {feature}.",
    5: "This {noun} is great quality and {feature} really stands out.",
}


# --------------------------------------------------------------------------- configuration
class WorldConfig(BaseConfig):
    """Parameters of the generated world (all defaults give the 500 x 400 demo world)."""

    seed: int = 0
    n_users: int = Field(500, ge=1)
    n_items: int = Field(400, ge=3)
    n_categories: int = Field(10, ge=1, le=len(CATEGORIES))
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


class World:
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
            raise KeyError(f"unknown user id {user_id!r}")
        return pos

    def _item_pos(self, item_ids: Sequence[str]) -> np.ndarray:
        get = self._item_pos_of.get
        pos = [get(str(i), -1) for i in item_ids]
        out = np.fromiter(pos, dtype=np.int64, count=len(pos))
        if (out < 0).any():
            bad = list(item_ids)[int(np.flatnonzero(out < 0)[0])]
            raise KeyError(f"unknown item id {bad!r}")
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

    def click_probability(self, user_id: str, ranked_item_ids: Sequence[str]) -> np.ndarray:
        """P(click) per position: examination ``1/log2(rank+1)`` x ``sigmoid`` of affinity."""
        if len(ranked_item_ids) == 0:
            return np.zeros(0)
        z = self.affinity_z(user_id, ranked_item_ids)
        attract = 1.0 / (1.0 + np.exp(-self.config.click_slope * (z - self.config.click_offset)))
        exam = 1.0 / np.log2(np.arange(2, len(ranked_item_ids) + 2))
        return exam * attract

    def simulate_clicks(self, user_id: str, ranked_item_ids: Sequence[str], seed: int = 0) -> np.ndarray:
        """Sampled clicks (bool per position) for one shown list; same seed, same clicks."""
        p = self.click_probability(user_id, ranked_item_ids)
        rng = np.random.default_rng([int(seed), self._user_pos(user_id)])  # a stream per user
        return rng.random(p.size) < p

    def ctr(
        self, rankings: Mapping[str, Sequence[str]], seed: int = 0, k: int | None = None
    ) -> np.ndarray:
        """Per-user click-through rate (clicks / shown items) of ``{user_id: ranked ids}``.

        Lists are cut to the top ``k`` when given; an empty list gets NaN.
        """
        out = np.empty(len(rankings), dtype=np.float64)
        for j, (uid, ranked) in enumerate(rankings.items()):
            shown = list(ranked)[:k] if k is not None else list(ranked)
            clicks = self.simulate_clicks(uid, shown, seed=seed)
            out[j] = clicks.mean() if clicks.size else np.nan
        return out

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


def _pick(rng: np.random.Generator, options: Sequence[Any], size: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), size)]


def _make_catalog(cfg: WorldConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    names = list(CATEGORIES)[: cfg.n_categories]
    n = cfg.n_items
    cat_weights = rng.dirichlet(np.full(len(names), 8.0))
    # every category gets at least one item, the rest follow the category weights
    cat = np.sort(
        np.concatenate([np.arange(min(len(names), n)), rng.choice(len(names), size=max(n - len(names), 0), p=cat_weights)])
    )
    brands_all = [b for c in names for b in CATEGORIES[c]["brands"]]
    colors_all = sorted({col for c in names for col in CATEGORIES[c].get("colors", [])})
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
        voc = CATEGORIES[name]
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
        "brand_count": np.array([len(CATEGORIES[c]["brands"]) for c in names]),
        "brand_start": np.cumsum([0] + [len(CATEGORIES[c]["brands"]) for c in names])[:-1],
        "n_colors": np.array(max(len(colors_all), 1)),
        "n_nouns": np.array(noun_offset),
        "brands_all": np.asarray(brands_all, dtype=object),
        "colors_all": np.asarray(colors_all, dtype=object),
        "category_names": np.asarray(names, dtype=object),
        "noun_name": noun_name,
        "feature": feature,
    }
    return items, arrays


def _generate(cfg: WorldConfig) -> World:
    root = np.random.default_rng(cfg.seed)
    r_cat, r_item, r_user, r_buy, r_time, r_rate, r_rev = root.spawn(7)
    items, ca = _make_catalog(cfg, r_cat)
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

    reviews = _make_reviews(cfg, r_rev, items, ca, user_ids[user_of], item_of, rating)
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


def _lower(phrase: str) -> str:
    """Lower-case a product noun for running text, keeping acronyms (LED, USB-C, SPF)."""
    return " ".join(w if w.isupper() else w.lower() for w in phrase.split())


def _make_reviews(
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
    opener_pick = rng.integers(0, 4, chosen.size)
    out = []
    for j, x in enumerate(chosen):  # only ~reviews_per_item * n_items rows
        r = int(rating[x])
        i = item_of[x]
        body = _REVIEW_BODIES[r].format(noun=_lower(nouns[i]), feature=features[i])
        out.append(f"{_REVIEW_OPENERS[r][opener_pick[j]]} {body}")
    return pd.DataFrame(
        {
            "item_id": items["item_id"].to_numpy()[item_of[chosen]],
            "user_id": review_user[chosen],
            "rating": rating[chosen],
            "text": out,
        }
    )

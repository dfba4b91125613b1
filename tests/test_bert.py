"""BertScorer / ItemEncoder with the real MiniLM model (loaded once per session), plus the
model-free helpers (text rendering, recency weights, config, resolution)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from protocol_suites import RankerSuite, ScorerSuite

from reranker.data.dataset import Dataset
from reranker.errors import ConfigError, DataError, ModelError
from reranker.ranking.base import ScorerRanker
from reranker.ranking.bert import (
    BertScorer,
    BertScorerConfig,
    ItemEncoder,
    clear_embedding_cache,
    recency_weights,
    render_item,
    resolve_sentence_model,
)
from reranker.ranking.diversity import EmbeddingSimilarity, mmr
from reranker.types import Candidate, History, Item

pytest_plugins = ["bert_fixtures"]

ROWS = [
    ("s1", "Star Wars", "Sci-Fi", "A space opera: rebels fight a galactic empire with starships."),
    ("s2", "Alien", "Sci-Fi", "The crew of a spaceship is hunted by a deadly alien creature."),
    ("s3", "Interstellar", "Sci-Fi", "Astronauts fly through a wormhole to find a new planet."),
    ("s4", "2001: A Space Odyssey", "Sci-Fi", "A voyage to Jupiter with the computer HAL."),
    ("c1", "The Joy of Cooking", "Cookbook", "Classic recipes for home cooks: soups, roasts, pies."),
    ("c2", "Baking Bread at Home", "Cookbook", "Sourdough, yeast doughs and crusty loaves."),
    ("c3", "Italian Pasta Recipes", "Cookbook", "Fresh pasta, sauces and lasagne from Italy."),
    ("c4", "Vegetarian Weeknight Dinners", "Cookbook", "Quick meatless meals and salads."),
    ("g1", "The Vegetable Garden", "Gardening", "Growing tomatoes, beans and lettuce."),
]
CATALOG = {i: Item(i, t, text=d, category=c) for i, t, c, d in ROWS}


@pytest.fixture
def bert(minilm) -> BertScorer:
    return BertScorer(CATALOG)


# ---------------------------------------------------------------- protocol suites
class TestBertScorerSuite(ScorerSuite):
    atol = 1e-5

    @pytest.fixture
    def scorer(self, bert):
        return bert

    @pytest.fixture
    def catalog(self):
        return CATALOG

    @pytest.fixture
    def history(self):
        return History("u1", ("s1", "s2", "c1"))

    @pytest.fixture
    def candidates(self):
        return [Candidate(i, 1.0) for i in ("s3", "c2", "g1", "s4", "c3")]


class TestBertRankerSuite(RankerSuite):
    atol = 1e-5

    @pytest.fixture
    def ranker(self, bert):
        return ScorerRanker(bert)

    @pytest.fixture
    def history(self):
        return History("u1", ("c1", "c2"))

    @pytest.fixture
    def candidates(self):
        return [Candidate(i, 1.0) for i in ("s3", "c3", "g1", "s4", "c4")]


# ---------------------------------------------------------------- the scorer makes sense
def test_space_history_prefers_space_candidates(bert):
    scores = bert.score(History("u", ("s1", "s2")), [Candidate("s3"), Candidate("c1"), Candidate("c2")])
    assert scores[0] > scores[1] and scores[0] > scores[2]
    assert np.all(scores <= 1.0) and np.all(scores >= -1.0)


def test_recency_half_life_decides_between_tastes(minilm):
    hist = History("u", ("c1", "c2", "c4", "s1"))  # three cookbooks, then one space movie
    cands = [Candidate("s3"), Candidate("c3")]
    recent = BertScorer(CATALOG, BertScorerConfig(half_life=0.25)).score(hist, cands)
    flat = BertScorer(CATALOG, BertScorerConfig(half_life=1000.0)).score(hist, cands)
    assert recent[0] > recent[1]  # the newest item dominates
    assert flat[1] > flat[0]  # all items count alike: mostly cookbooks


def test_profile_is_the_normalised_recency_weighted_mean(bert):
    hist = History("u", ("s1", "c1", "g1"))
    emb = bert.encoder.encode_items(["s1", "c1", "g1"]).astype(np.float64)
    w = recency_weights(3, bert.config.half_life)
    want = w @ emb
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(bert.profile(hist), want, atol=1e-6)
    cand = bert.encoder.encode_items(["s3", "c3"]).astype(np.float64)
    np.testing.assert_allclose(
        bert.score(hist, [Candidate("s3"), Candidate("c3")]), cand @ want, atol=1e-6
    )


def test_empty_or_unknown_history_gives_zeros(bert):
    cands = [Candidate("s3"), Candidate("c3")]
    assert bert.score(History(), cands).tolist() == [0.0, 0.0]
    assert bert.score(History("u", ("not-in-catalog",)), cands).tolist() == [0.0, 0.0]
    assert bert.profile(History()) is None
    # unknown history items are skipped, known ones still count
    np.testing.assert_allclose(
        bert.score(History("u", ("zzz", "s1")), cands), bert.score(History("u", ("s1",)), cands)
    )


def test_unknown_candidate_is_a_data_error(bert):
    with pytest.raises(DataError, match="'nope' is not in the catalog"):
        bert.score(History("u", ("s1",)), [Candidate("s3"), Candidate("nope")])


def test_dataset_catalog_gives_the_same_scores(minilm):
    items = pd.DataFrame(
        {"item_id": [r[0] for r in ROWS], "title": [r[1] for r in ROWS],
         "category": [r[2] for r in ROWS], "text": [r[3] for r in ROWS]}
    )
    inter = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["s1", "c1"]})
    ds = Dataset(inter, items)
    cands = [Candidate("s3"), Candidate("c3"), Candidate("g1")]
    hist = ds.history("u")
    np.testing.assert_allclose(
        BertScorer(ds).score(hist, cands), BertScorer(CATALOG).score(hist, cands), atol=1e-6
    )


# ---------------------------------------------------------------- encoder and caches
def test_encode_items_shape_norm_order_and_duplicates(bert):
    enc = bert.encoder
    e = enc.encode_items(["s1", "c1", "s1"])
    assert e.shape == (3, enc.dim) == (3, 384)
    assert e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e[0], e[2])
    np.testing.assert_array_equal(enc.encode_items(["c1"])[0], e[1])
    assert enc.encode_items([]).shape == (0, 384)


def test_embeddings_match_the_model_directly(bert, minilm):
    text = bert.encoder.text("s2")
    direct = minilm.encode([text], normalize_embeddings=True)[0]
    np.testing.assert_allclose(bert.encoder.encode_items(["s2"])[0], direct, atol=1e-5)


def test_memory_cache_hits_and_text_changes_reencode(minilm, tmp_path):
    # the on-disk cache (on by default for small catalogs) in a fresh folder: a file left in the
    # user's cache by an earlier run must not answer for the edited catalog below
    enc = ItemEncoder(CATALOG, cache_dir=tmp_path)
    enc.encode_items(list(CATALOG))
    before = enc.n_encoded
    enc.encode_items(list(CATALOG))
    assert enc.n_encoded == before  # all from the cache
    other = ItemEncoder(CATALOG, cache_dir=tmp_path)  # same model: shares the in-memory cache
    other.encode_items(list(CATALOG))
    assert other.n_encoded == 0
    edited = dict(CATALOG)
    edited["s1"] = Item("s1", "Star Wars", text="A documentary about garden snails, edition 7.")
    enc2 = ItemEncoder(edited, cache_dir=tmp_path)
    new = enc2.encode_items(["s1", "s2"])
    assert enc2.n_encoded == 1  # only the edited item went through the model
    assert not np.allclose(new[0], enc.encode_items(["s1"])[0])


def test_disk_cache_roundtrip(minilm, tmp_path):
    enc = ItemEncoder(CATALOG, disk_cache=True, cache_dir=tmp_path)
    first = enc.encode_items(["s1", "g1"])
    path = enc.disk_cache_path()
    assert path.is_file() and path.parent == tmp_path / "embeddings"
    mat = np.load(path)
    assert mat.shape == (len(CATALOG), 384)
    clear_embedding_cache()
    enc2 = ItemEncoder(CATALOG, disk_cache=True, cache_dir=tmp_path)
    again = enc2.encode_items(["s1", "g1"])
    assert enc2.n_encoded == 0  # served from the .npy
    np.testing.assert_allclose(again, first, atol=1e-6)
    # another catalog has another fingerprint, hence another file
    smaller = {k: v for k, v in CATALOG.items() if k != "g1"}
    assert ItemEncoder(smaller, disk_cache=True, cache_dir=tmp_path).disk_cache_path() != path


def test_cache_dir_defaults_to_env(minilm, tmp_path, monkeypatch):
    monkeypatch.setenv("RERANKER_CACHE", str(tmp_path))
    enc = ItemEncoder(CATALOG, disk_cache=True)
    assert enc.disk_cache_path().parent == tmp_path / "embeddings"


def test_embedding_similarity_feeds_mmr(bert):
    sim = EmbeddingSimilarity(bert.encoder)(["s1", "s2", "c1"])
    assert sim[0, 1] > sim[0, 2]  # two sci-fi films are closer than sci-fi and a cookbook
    # with lam = 0 the second pick is the cookbook, not the second space film
    assert mmr(["s1", "s2", "c1"], [1.0, 0.9, 0.1], sim, lam=0.0) == ["s1", "c1", "s2"]


# ---------------------------------------------------------------- no model needed
def test_recency_weights_hand_checked():
    np.testing.assert_allclose(recency_weights(3, 1.0), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(recency_weights(3, 2.0), [0.5, 2**-0.5, 1.0])
    assert recency_weights(0, 1.0).shape == (0,)


def test_render_item():
    it = Item("x", "Toy Story", text="A cowboy doll   is threatened\nby a new toy.", category="Animation",
              attrs={"release_year": 1995, "tags": ["a", "b"], "studio": "Pixar", "lang": "en", "extra": "z"})
    assert render_item(it) == (
        "Toy Story. Category: Animation. release year: 1995. studio: Pixar. lang: en. "
        "A cowboy doll is threatened by a new toy."
    )
    long = Item("y", "Long", text="word " * 500)
    out = render_item(long, max_chars=100)
    assert len(out) <= 100 and out.startswith("Long. word") and out.endswith("…")


def test_config_validation():
    with pytest.raises(ConfigError, match="half_life: must be > 0"):
        BertScorerConfig.from_dict({"half_life": 0})
    with pytest.raises(ConfigError, match="batchsize: unknown key"):
        BertScorerConfig.from_dict({"batchsize": 8})
    assert BertScorerConfig().model == "minilm"


def test_resolve_sentence_model(tmp_path):
    with pytest.raises(ModelError, match="missing"):
        resolve_sentence_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="'org/some-model'"):  # hub ids are never fetched here
        resolve_sentence_model("org/some-model")
    with pytest.raises(ModelError, match="not a sentence-transformers model folder"):
        resolve_sentence_model(str(tmp_path))


def test_resolve_minilm_preset(minilm):
    path = resolve_sentence_model("minilm")
    assert (path / "config.json").is_file() and path.name == "model"


def test_resolve_minilm_without_the_llm_models_module(minilm, monkeypatch):
    import sys

    want = resolve_sentence_model("minilm")
    monkeypatch.setitem(sys.modules, "reranker.llm.models", None)  # import now fails
    assert resolve_sentence_model("minilm") == want


# ---------------------------------------------------------------- per-request catalogs
def test_request_catalog_embeds_its_own_items(minilm, bert):
    # the same ids, the space and cookbook texts swapped: the request's texts decide
    swapped = {i: Item(i, it.title, text=CATALOG[{"s3": "c3", "c3": "s3"}.get(i, i)].text, category=it.category)
               for i, it in CATALOG.items()}
    hist, cands = History("u", ("s1", "s2")), [Candidate("s3"), Candidate("c3")]
    own = bert.score(hist, cands)
    got = bert.score(hist, cands, catalog=swapped)
    np.testing.assert_allclose(got, BertScorer(swapped).score(hist, cands), atol=1e-5)
    assert not np.allclose(got, own, atol=1e-3)
    np.testing.assert_allclose(bert.score(hist, cands), own, atol=1e-6)  # its own catalog is unchanged
    as_dicts = {i: {"title": it.title, "text": it.text, "category": it.category} for i, it in swapped.items()}
    np.testing.assert_allclose(bert.score(hist, cands, catalog=as_dicts), got, atol=1e-6)
    # history items missing from the request's catalog are skipped; unknown candidates are errors
    np.testing.assert_allclose(bert.score(History("u", ("zzz", "s1")), cands, catalog=swapped),
                               bert.score(History("u", ("s1",)), cands, catalog=swapped), atol=1e-6)
    with pytest.raises(DataError, match="'nope'"):
        bert.score(hist, [Candidate("nope")], catalog=swapped)


def test_old_module_path_reexports_the_encoder_names():
    from reranker.ranking import bert as mod
    from reranker.ranking import encoder, sentence_model

    assert mod.ItemEncoder is encoder.ItemEncoder and mod.render_item is encoder.render_item
    assert mod.load_sentence_model is sentence_model.load_sentence_model
    assert mod.clear_embedding_cache is sentence_model.clear_embedding_cache

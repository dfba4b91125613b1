"""Loaders on real (ml-100k) and generated files; one malformed file per DataError case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reranker.data import Dataset, load
from reranker.errors import DataError

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
needs_ml100k = pytest.mark.skipif(not ML100K.is_dir(), reason="../shared/data/ml-100k not present")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


ITEMS_CSV = "item_id,title,category,price\nA,Alpha Phone,electronics,199.5\nB,Beta Book,books,12\nC,Gamma Pan,kitchen,30\n"
INTER_CSV = (
    "user_id,item_id,rating,timestamp\n"
    "u1,A,5,100\nu1,B,3,200\nu1,C,4,300\nu2,B,2,150\nu2,A,1,160\n"
)


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    write(tmp_path / "items.csv", ITEMS_CSV)
    write(tmp_path / "interactions.csv", INTER_CSV)
    return tmp_path


# ------------------------------------------------------------------------ happy paths
@needs_ml100k
def test_recbole_ml100k_counts():
    ds = load(ML100K, format="recbole")
    d = ds.describe()
    assert (d["users"], d["items"], d["interactions"]) == (943, 1682, 100000)
    assert d["rating_scale"] == [1.0, 5.0]
    item = ds.item("1")
    assert item.title == "Toy Story"
    assert item.category == "Animation"
    assert "Comedy" in item.attrs["genres"]
    assert ds.interactions["user_id"].map(type).eq(str).all()


def test_csv_folder(csv_dir: Path):
    ds = load(csv_dir, format="csv")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 5)
    assert ds.item("A").attrs["price"] == pytest.approx(199.5)
    assert ds.item("B").category == "books"
    assert ds.history("u1").items == ("A", "B", "C")
    assert ds.history("u2").items == ("B", "A")
    assert ds.interactions["rating"].dtype == np.float64


def test_csv_column_mapping(tmp_path: Path):
    write(tmp_path / "events.csv", "uid,sku,stars,when\n1,X,4,2024-01-02T10:00:00Z\n1,Y,5,2024-01-03\n")
    write(tmp_path / "catalog.csv", "sku,name\nX,Xylophone\nY,Yoyo\n")
    ds = load(
        tmp_path / "events.csv", format="csv", items=tmp_path / "catalog.csv",
        columns={"user_id": "uid", "item_id": "sku", "rating": "stars", "timestamp": "when"},
        item_columns={"item_id": "sku", "title": "name"},
    )
    assert ds.item("Y").title == "Yoyo"
    ts = ds.interactions["timestamp"].tolist()
    assert ts[0] == pd.Timestamp("2024-01-02T10:00:00Z").timestamp()
    assert ts[1] == pd.Timestamp("2024-01-03", tz="UTC").timestamp()


def test_parquet_and_jsonl_roundtrip(csv_dir: Path, tmp_path: Path):
    ref = load(csv_dir, format="csv")
    pq = tmp_path / "pq"
    pq.mkdir()
    ref.interactions.to_parquet(pq / "interactions.parquet")
    ref.items.to_parquet(pq / "items.parquet")
    ds = load(pq, format="parquet")
    pd.testing.assert_frame_equal(ds.interactions, ref.interactions, check_dtype=False)
    jl = tmp_path / "jl"
    jl.mkdir()
    ref.interactions.to_json(jl / "interactions.jsonl", orient="records", lines=True)
    ref.items.to_json(jl / "items.jsonl", orient="records", lines=True)
    ds2 = load(jl, format="jsonl")
    assert ds2.history("u1").items == ("A", "B", "C")
    assert ds2.item("C").title == "Gamma Pan"


def test_movielens_raw(tmp_path: Path):
    write(tmp_path / "u.data", "1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250000\n")
    flags = "|".join(["0"] * 19)
    action = "|".join(["0", "1"] + ["0"] * 17)
    write(
        tmp_path / "u.item",
        f"10|Heat (1995)|01-Jan-1995||http://x|{action}\n20|Quiet Film (1996)|01-Jan-1996||http://y|{flags}\n",
    )
    ds = load(tmp_path, format="movielens")
    assert ds.n_interactions == 3
    assert ds.item("10").category == "Action"
    assert ds.item("20").category is None
    assert ds.rating_scale == (3.0, 5.0)


def test_amazon2023(tmp_path: Path):
    reviews = [
        {"rating": 5.0, "title": "Great", "text": "Loved it", "asin": "a1", "parent_asin": "P1",
         "user_id": "U1", "timestamp": 1588615855070, "helpful_vote": 1, "verified_purchase": True},
        {"rating": 3.0, "title": "ok", "text": "fine", "asin": "a2", "parent_asin": "P2",
         "user_id": "U1", "timestamp": 1588615955070, "helpful_vote": 0, "verified_purchase": True},
    ]
    meta = [
        {"main_category": "All Beauty", "title": "Rose Soap", "features": ["handmade"],
         "description": ["Gentle soap."], "price": 9.5, "store": "Acme",
         "categories": ["Beauty", "Soap"], "parent_asin": "P1"},
        {"main_category": "All Beauty", "title": "Lip Balm", "features": [], "description": [],
         "price": None, "store": "Acme", "categories": [], "parent_asin": "P2"},
    ]
    write(tmp_path / "All_Beauty.jsonl", "\n".join(json.dumps(r) for r in reviews) + "\n")
    write(tmp_path / "meta_All_Beauty.jsonl", "\n".join(json.dumps(r) for r in meta) + "\n")
    ds = load(tmp_path, format="amazon2023")
    assert ds.n_interactions == 2
    assert ds.interactions["timestamp"].iloc[0] == pytest.approx(1588615855.07)
    p1 = ds.item("P1")
    assert p1.title == "Rose Soap" and p1.category == "Soap"
    assert "Gentle soap." in p1.text and "handmade" in p1.text
    assert ds.item("P2").category == "All Beauty"


# ------------------------------------------------------------------------ DataError cases
def _err(excinfo) -> DataError:
    return excinfo.value


def test_missing_required_column(tmp_path: Path):
    write(tmp_path / "interactions.csv", "user,item_id\n1,A\n")
    with pytest.raises(DataError, match="missing required column") as e:
        load(tmp_path, format="csv")
    assert _err(e).column == "user_id"
    assert "interactions.csv" in str(e.value)


def test_empty_file(tmp_path: Path):
    write(tmp_path / "interactions.csv", "")
    with pytest.raises(DataError, match="empty"):
        load(tmp_path, format="csv")


def test_header_only_file(tmp_path: Path):
    write(tmp_path / "interactions.csv", "user_id,item_id\n")
    with pytest.raises(DataError, match="no rows"):
        load(tmp_path, format="csv")


def test_nan_and_empty_ids(csv_dir: Path):
    write(csv_dir / "interactions.csv", "user_id,item_id\nu1,A\n,B\n")
    with pytest.raises(DataError, match="missing or empty id") as e:
        load(csv_dir, format="csv")
    assert (_err(e).line, _err(e).column) == (3, "user_id")
    write(csv_dir / "interactions.csv", "user_id,item_id\nu1,A\nu2,  \n")
    with pytest.raises(DataError) as e:
        load(csv_dir, format="csv")
    assert (_err(e).line, _err(e).column) == (3, "item_id")


def test_duplicate_item_ids(csv_dir: Path):
    write(csv_dir / "items.csv", ITEMS_CSV + "B,Beta Book Again,books,13\n")
    with pytest.raises(DataError, match="duplicate item id 'B'.*line 3") as e:
        load(csv_dir, format="csv")
    assert _err(e).line == 5 and _err(e).path.endswith("items.csv")


def test_unknown_item_error_and_drop(csv_dir: Path):
    write(csv_dir / "interactions.csv", INTER_CSV + "u2,Z,3,170\nu3,Z,3,180\n")
    with pytest.raises(DataError, match="'Z' has no row in the catalog.*2 interaction") as e:
        load(csv_dir, format="csv")
    assert _err(e).line == 7
    ds = load(csv_dir, format="csv", on_unknown_item="drop")
    assert ds.n_interactions == 5
    assert ds.report.dropped_unknown_items == 2
    assert ds.describe()["dropped_unknown_items"] == 2


def test_non_numeric_rating(csv_dir: Path):
    write(csv_dir / "interactions.csv", "user_id,item_id,rating\nu1,A,5\nu1,B,five\n")
    with pytest.raises(DataError, match="'five' is not a number") as e:
        load(csv_dir, format="csv")
    assert (_err(e).line, _err(e).column) == (3, "rating")


def test_unparseable_timestamp(csv_dir: Path):
    write(csv_dir / "interactions.csv", "user_id,item_id,timestamp\nu1,A,2024-01-01\nu1,B,yesterday\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'yesterday'") as e:
        load(csv_dir, format="csv")
    assert (_err(e).line, _err(e).column) == (3, "timestamp")


def test_jsonl_bad_line(tmp_path: Path):
    write(tmp_path / "interactions.jsonl", '{"user_id": "1", "item_id": "A"}\n\n{"user_id": "2", "item_id": \n')
    with pytest.raises(DataError, match="invalid JSON") as e:
        load(tmp_path, format="jsonl")
    assert _err(e).line == 3


def test_jsonl_line_numbers_skip_blank_lines(tmp_path: Path):
    write(tmp_path / "interactions.jsonl", '{"user_id": "1", "item_id": "A"}\n\n{"user_id": "", "item_id": "B"}\n')
    with pytest.raises(DataError) as e:
        load(tmp_path, format="jsonl")
    assert _err(e).line == 3


def test_parquet_reports_rows(tmp_path: Path):
    pd.DataFrame({"user_id": ["1", None], "item_id": ["A", "B"]}).to_parquet(tmp_path / "interactions.parquet")
    with pytest.raises(DataError) as e:
        load(tmp_path, format="parquet")
    assert _err(e).row == 2 and _err(e).line is None


def test_recbole_bad_header(tmp_path: Path):
    write(tmp_path / "x.inter", "user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataError, match="not 'name:type'") as e:
        load(tmp_path, format="recbole")
    assert _err(e).line == 1


def test_recbole_unknown_item_line(tmp_path: Path):
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t9\t3\n")
    write(tmp_path / "x.item", "item_id:token\tmovie_title:token_seq\tclass:token_seq\n2\tHeat\tAction Crime\n")
    with pytest.raises(DataError) as e:
        load(tmp_path, format="recbole")
    assert (_err(e).line, _err(e).column) == (3, "item_id")
    ds = load(tmp_path, format="recbole", on_unknown_item="drop")
    assert ds.item("2").category == "Action" and ds.item("2").attrs["genres"] == "Action|Crime"


def test_amazon_bad_timestamp(tmp_path: Path):
    write(tmp_path / "X.jsonl", json.dumps({"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": "soon"}) + "\n")
    write(tmp_path / "meta_X.jsonl", json.dumps({"parent_asin": "P", "title": "T"}) + "\n")
    with pytest.raises(DataError, match="timestamp") as e:
        load(tmp_path, format="amazon2023")
    assert _err(e).line == 1


def test_missing_path_and_unknown_format(tmp_path: Path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope", format="csv")
    with pytest.raises(DataError, match="unknown format"):
        load(tmp_path, format="xml")


def test_dataset_from_frames_without_catalog():
    ds = Dataset(pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10]}))
    assert ds.n_items == 2 and ds.item("10").title == "10"
    assert ds.history("1").items == ("10", "11")
    assert ds.history("nobody").is_empty

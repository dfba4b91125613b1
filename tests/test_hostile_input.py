"""Hostile input files and configs (issue 19, items 5 and 6): what pandas / pydantic / the
training loop used to accept silently (or crash on) is a RerankerError naming the file, line,
column or field; valid data loads exactly as before."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from reranker.data import load
from reranker.errors import ConfigError, DataError, ModelError

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
ITEMS = "item_id,title\nA,a\nB,b\nC,c\n"


def csv_dir(tmp_path: Path, inter: str, items: str = ITEMS) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "interactions.csv").write_text(inter, encoding="utf-8")
    (tmp_path / "items.csv").write_text(items, encoding="utf-8")
    return tmp_path


def load_error(path: Path, fmt: str, **kw) -> DataError:
    with pytest.raises(DataError) as e:
        load(path, format=fmt, **kw)
    return e.value


def jsonl_dir(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "interactions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def ml_dir(tmp_path: Path, data: str) -> Path:
    flags = "|".join(["0"] * 19)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "u.data").write_text(data)
    (tmp_path / "u.item").write_text(f"10|Heat|01-Jan-1995||http://x|{flags}\n20|Q|01-Jan-1995||http://y|{flags}\n")
    return tmp_path


def amazon_dir(tmp_path: Path, reviews: list[dict]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "X.jsonl").write_text("\n".join(json.dumps(r) for r in reviews) + "\n")
    (tmp_path / "meta_X.jsonl").write_text(json.dumps({"parent_asin": "P", "title": "T"}) + "\n")
    return tmp_path


# ------------------------------------------------------------------ duplicate headers / keys
def test_duplicate_csv_header_is_named(tmp_path: Path):
    # before: pandas renamed the second to `item_id.1` and the first column won silently
    e = load_error(csv_dir(tmp_path, "user_id,item_id,item_id\nu1,A,B\n"), "csv")
    assert "duplicate column header 'item_id'" in str(e)
    assert (e.column, e.line) == ("item_id", 1) and e.path.endswith("interactions.csv")


def test_duplicate_recbole_header_is_a_data_error(tmp_path: Path):
    # before: pandas' ValueError "Duplicate names are not allowed." (a traceback)
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\titem_id:token\n1\t2\t3\n")
    e = load_error(tmp_path, "recbole")
    assert e.column == "item_id" and e.line == 1 and "duplicate column header" in str(e)


def test_duplicate_parquet_column_is_named(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array(["u"]), pa.array(["A"]), pa.array(["B"])], names=["user_id", "item_id", "item_id"])
    pq.write_table(table, tmp_path / "interactions.parquet")
    e = load_error(tmp_path, "parquet")
    assert e.column == "item_id" and "duplicate column header" in str(e)


def test_jsonl_key_given_twice_is_named(tmp_path: Path):
    # before: json.loads kept the last value ("B") silently
    e = load_error(jsonl_dir(tmp_path, ['{"user_id": "u", "item_id": "A"}', '{"user_id": "u", "item_id": "A", "item_id": "B"}']), "jsonl")
    assert (e.line, e.column) == (2, "item_id") and "given twice" in str(e)


def test_column_mapping_onto_an_existing_column_is_refused(tmp_path: Path):
    # before: two columns named user_id after the rename, and a crash or a silent pick
    (tmp_path / "e.csv").write_text("uid,user_id,item_id\n1,2,A\n")
    e = load_error(tmp_path / "e.csv", "csv", columns={"user_id": "uid"})
    assert e.column == "user_id" and "already has a column 'user_id'" in str(e)


# ------------------------------------------------------------------ rows with extra fields
def test_extra_field_in_first_row_does_not_shift_columns(tmp_path: Path):
    # before: pandas moved `u1` into the index and read user_id=A, item_id=B
    e = load_error(csv_dir(tmp_path, "user_id,item_id\nu1,A,B\nu2,B\n"), "csv")
    assert e.line == 2 and "3 fields, but the header has 2" in str(e)
    e = load_error(csv_dir(tmp_path, "user_id,item_id\nu1,A,B\nu2,B,C\n"), "csv")  # before: loaded shifted
    assert e.line == 2


def test_extra_field_in_a_later_row_names_its_physical_line(tmp_path: Path):
    # a quoted value spanning two lines before it: the line is the one in the file
    e = load_error(csv_dir(tmp_path, 'user_id,item_id,note\nu1,A,"two\nlines"\n\nu2,B,x,y\n',), "csv")
    assert e.line == 5 and e.path.endswith("interactions.csv")


def test_extra_field_in_recbole_and_movielens(tmp_path: Path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\n1\t2\t3\n1\t3\n")
    e = load_error(tmp_path, "recbole")  # before: "missing or empty id" at line 3 (shifted)
    assert e.line == 2 and "3 fields" in str(e)
    e = load_error(ml_dir(tmp_path / "ml", "1\t10\t4\t881250949\t7\n1\t20\t3\t881250950\t8\n"), "movielens")
    assert e.line == 1 and "5 fields" in str(e)  # before: "item id '4' has no row in the catalog"


# ------------------------------------------------------------------ dates and time units
def test_ambiguous_and_mixed_day_month_dates(tmp_path: Path):
    # before: 03/04/2020 was read as March 4 and 25/04/2020 as April 25 (orders mixed per row)
    e = load_error(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,03/04/2020\nu1,B,25/04/2020\n"), "csv")
    assert (e.line, e.column) == (2, "timestamp") and "'03/04/2020' is ambiguous" in str(e)
    e = load_error(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,04/25/2020\nu1,B,25/04/2020\n"), "csv")
    assert (e.line, e.column) == (3, "timestamp") and "mix day-first" in str(e)


def test_unambiguous_dates_load_in_one_order(tmp_path: Path):
    ds = load(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,25/04/2020\nu1,B,26.04.2020 10:00\nu1,C,2020-01-02\n"), format="csv")
    assert ds.interactions["timestamp"].tolist() == [
        pd.Timestamp("2020-04-25", tz="UTC").timestamp(),
        pd.Timestamp("2020-04-26T10:00", tz="UTC").timestamp(),
        pd.Timestamp("2020-01-02", tz="UTC").timestamp(),  # ISO stays year-month-day
    ]
    ds = load(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,04/25/2020\nu1,B,05/05/2020\n"), format="csv")
    assert ds.interactions["timestamp"].iloc[0] == pd.Timestamp("2020-04-25", tz="UTC").timestamp()


def test_mixed_seconds_and_milliseconds(tmp_path: Path):
    # before: loaded, the second interaction in year 52311
    e = load_error(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,1588615855\nu1,B,1588615955070\n"), "csv")
    assert (e.line, e.column) == (3, "timestamp") and "mixes time units" in str(e)
    e = load_error(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,1588615855000\n"), "csv")
    assert "looks like milliseconds" in str(e) and "divide by 1,000" in str(e)
    e = load_error(amazon_dir(tmp_path / "amz", [
        {"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": 1588615855070},
        {"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": 1588615855},
    ]), "amazon2023")
    assert e.column == "timestamp" and "mixes time units" in str(e)


def test_numbers_and_dates_in_one_timestamp_column(tmp_path: Path):
    # found by tests/test_fuzz.py: before, "1000" was read as the year 1000 and the conversion
    # to nanoseconds raised pandas' OutOfBoundsDatetime (a traceback)
    e = load_error(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,1000\nu1,B,2020-01-02\n"), "csv")
    assert (e.line, e.column) == (3, "timestamp") and "is a number (unix time) but '2020-01-02' a date" in str(e)


@pytest.mark.parametrize(("date", "message"), [("1000-01-01", "before 1970"), ("1969-12-31T23:00:00Z", "before 1970"),
                                               ("3000-01-01", "after 2262")])
def test_dates_out_of_range(tmp_path: Path, date: str, message: str):
    e = load_error(csv_dir(tmp_path, f"user_id,item_id,timestamp\nu1,A,2020-01-01\nu1,B,{date}\n"), "csv")
    assert (e.line, e.column) == (3, "timestamp") and message in str(e)


def test_small_timestamps_stay_valid(tmp_path: Path):
    ds = load(csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,0\nu1,B,100\nu1,C,1700000000\n"), format="csv")
    assert ds.interactions["timestamp"].tolist() == [0.0, 100.0, 1.7e9]


@pytest.mark.parametrize("fmt", ["csv", "recbole", "amazon2023"])
def test_negative_timestamp(tmp_path: Path, fmt: str):
    # before: loaded as a date before 1970 (the issue's traceback came later in the pipeline)
    if fmt == "csv":
        path = csv_dir(tmp_path, "user_id,item_id,timestamp\nu1,A,100\nu1,B,-5\n")
    elif fmt == "recbole":
        (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t2\t-881250949\n")
        path = tmp_path
    else:
        path = amazon_dir(tmp_path, [{"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": 1588615855070},
                                     {"user_id": "U", "parent_asin": "P", "rating": 5, "timestamp": -1588615855070}])
    e = load_error(path, fmt)
    assert e.column == "timestamp" and "before 1970" in str(e) and (e.line or e.row) in (2, 3)


# ------------------------------------------------------------------ ratings
def test_ratings_outside_the_declared_scale(tmp_path: Path):
    e = load_error(ml_dir(tmp_path, "1\t10\t4\t881250949\n1\t20\t50\t881250950\n"), "movielens")
    assert (e.line, e.column) == (2, "rating") and "outside the 0.5 to 5 scale" in str(e)  # before: scale [3, 50]
    e = load_error(amazon_dir(tmp_path / "a", [{"user_id": "U", "parent_asin": "P", "rating": 7, "timestamp": 1588615855070}]), "amazon2023")
    assert (e.line, e.column) == (1, "rating")


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "1e999"])
def test_non_finite_ratings(tmp_path: Path, value: str):
    e = load_error(csv_dir(tmp_path, f"user_id,item_id,rating\nu1,A,4\nu1,B,{value}\n"), "csv")
    assert (e.line, e.column) == (3, "rating")


def test_generic_ratings_keep_their_own_scale(tmp_path: Path):
    # documented: csv / jsonl / parquet / RecBole accept any finite rating (e.g. -10..10)
    ds = load(csv_dir(tmp_path, "user_id,item_id,rating\nu1,A,-10\nu1,B,10\n"), format="csv")
    assert ds.describe()["rating_scale"] == [-10.0, 10.0]


# ------------------------------------------------------------------ ids
@pytest.mark.parametrize("token", ["NULL", "None", "nan", "NaN", "N/A", "null", " none "])
def test_ids_spelling_a_missing_value(tmp_path: Path, token: str):
    # before: the user "NULL" (keep_default_na=False kept the string)
    e = load_error(csv_dir(tmp_path, f"user_id,item_id\nu1,A\n{token},B\n"), "csv")
    assert (e.line, e.column) == (3, "user_id") and "spells a missing value" in str(e)


def test_missing_value_ids_in_recbole_parquet_and_catalog(tmp_path: Path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\n1\tNULL\n")
    e = load_error(tmp_path, "recbole")
    assert (e.line, e.column) == (2, "item_id")
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    pd.DataFrame({"user_id": ["u", "None"], "item_id": ["A", "B"]}).to_parquet(pq_dir / "interactions.parquet")
    e = load_error(pq_dir, "parquet")
    assert (e.row, e.column) == (2, "user_id")
    e = load_error(csv_dir(tmp_path / "c", "user_id,item_id\nu1,A\n", items="item_id,title\nA,a\nnan,b\n"), "csv")
    assert e.path.endswith("items.csv") and (e.line, e.column) == (3, "item_id")


@pytest.mark.parametrize(("value", "kind"), [([1, 2], "a list"), ({"a": 1}, "an object"), (True, "a boolean")])
def test_non_scalar_ids_in_jsonl(tmp_path: Path, value, kind: str):
    # before: the user id "[1, 2]" / "{'a': 1}" / "True"
    e = load_error(jsonl_dir(tmp_path, [json.dumps({"user_id": "u", "item_id": "A"}),
                                        json.dumps({"user_id": value, "item_id": "B"})]), "jsonl")
    assert (e.line, e.column) == (2, "user_id") and kind in str(e)


def test_amazon_list_user_id(tmp_path: Path):
    e = load_error(amazon_dir(tmp_path, [{"user_id": ["U"], "parent_asin": "P", "rating": 5, "timestamp": 1588615855070}]), "amazon2023")
    assert (e.line, e.column) == (1, "user_id")


def test_float_ids_infinite_or_huge(tmp_path: Path):
    pd.DataFrame({"user_id": [1.0, np.inf], "item_id": ["A", "B"]}).to_parquet(tmp_path / "interactions.parquet")
    e = load_error(tmp_path, "parquet")
    assert (e.row, e.column) == (2, "user_id") and "not a finite number" in str(e)
    from reranker.data import Dataset

    ds = Dataset(pd.DataFrame({"user_id": [1e20, 2.0], "item_id": ["A", "B"]}))
    assert ds.interactions["user_id"].tolist() == ["100000000000000000000", "2"]  # before: -9223372036854775808


# ------------------------------------------------------------------ valid data is unchanged
@pytest.mark.skipif(not ML100K.is_dir(), reason="../shared/data/ml-100k not present")
def test_ml100k_fingerprint_is_unchanged():
    ds = load(ML100K, format="recbole")
    assert ds.fingerprint() == "0611a622d34f6ca0"
    assert ds.describe()["time_span"]["days"] == 214.8


def test_generated_world_round_trips_through_every_format(tmp_path: Path):
    from reranker.data.synthetic import generate_world

    world = generate_world(seed=2, n_users=40, n_items=30)
    world.to_csv(tmp_path)
    ref = load(tmp_path, format="csv")
    assert ref.fingerprint() == world.dataset.fingerprint()
    ref.interactions.to_json(tmp_path / "interactions.jsonl", orient="records", lines=True)
    ref.items.to_json(tmp_path / "items.jsonl", orient="records", lines=True)
    assert load(tmp_path, format="jsonl").fingerprint() == ref.fingerprint()


# ------------------------------------------------------------------ configs
def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text", ["lr: .inf\nmax_steps: 2\n", "lr: .nan\nmax_steps: 2\n", "epochs: .inf\n",
                                  "max_steps: 2\nmax_minutes: .inf\n", "max_steps: 2\nalpha: .nan\n"])
def test_non_finite_training_settings(tmp_path: Path, text: str):
    from reranker.training.config import FinetuneConfig

    # before: lr .inf / epochs .inf / max_minutes .inf validated (epochs .inf then overflowed)
    with pytest.raises(ConfigError, match=r"must be a finite number") as e:
        FinetuneConfig.from_yaml(_yaml(tmp_path, text))
    assert text.split(":")[0] in str(e.value) or "alpha" in str(e.value) or "max_minutes" in str(e.value)


def test_non_finite_anywhere_a_float_is_configured():
    from reranker.evaluation.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match=r"protocol\.rating\.test_ratio: must be a finite number"):
        ExperimentConfig.from_dict({"data": {"synthetic": {}}, "rankers": [{"name": "pop", "type": "pop"}],
                                    "protocol": {"rating": {"test_ratio": float("nan")}}})


def test_duplicate_yaml_key(tmp_path: Path):
    from reranker.training.config import FinetuneConfig

    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'lr'"):
        FinetuneConfig.from_yaml(_yaml(tmp_path, "max_steps: 2\nlr: 0.1\nlr: 0.2\n"))


EXP = {"data": {"synthetic": {}}, "rankers": [{"name": "itemcf", "type": "itemcf"}, {"name": "pop", "type": "pop"}]}


def test_compare_to_must_name_a_ranker():
    from reranker.evaluation.experiment import ExperimentConfig

    # before: validated, and the paired comparison was skipped silently
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict({**EXP, "protocol": {"compare_to": "itemCF"}})
    assert "protocol.compare_to: 'itemCF' is not a ranker name" in str(e.value)
    assert "['itemcf', 'pop']" in str(e.value)
    assert ExperimentConfig.from_dict(EXP).protocol.compare_to == "usercf"  # the default: no such row, fine
    assert ExperimentConfig.from_dict({**EXP, "protocol": {"compare_to": "pop"}}).protocol.compare_to == "pop"
    assert ExperimentConfig.from_dict({**EXP, "protocol": {"compare_to": None}}).protocol.compare_to is None


def test_bias_and_injection_rankers_must_name_rankers():
    from reranker.evaluation.experiment import ExperimentConfig

    with pytest.raises(ConfigError, match=r"protocol\.position_bias\.rankers: \['usercf'\] are not ranker names"):
        ExperimentConfig.from_dict({**EXP, "protocol": {"position_bias": {"rankers": ["itemcf", "usercf"]}}})
    with pytest.raises(ConfigError, match=r"protocol\.injection\.rankers"):
        ExperimentConfig.from_dict({**EXP, "protocol": {"injection": {"rankers": ["llm"]}}})


# ------------------------------------------------------------------ a NaN loss stops training
def _stub_trainer(tmp_path: Path, losses: list[float], nan_grad: bool = False):
    """A Trainer whose model is one linear layer and whose loss follows `losses`, so the loop
    runs in milliseconds (no LLM)."""
    import torch

    from reranker.training.config import FinetuneConfig
    from reranker.training.trainer import Trainer

    tr = Trainer.__new__(Trainer)
    tr.config = FinetuneConfig(max_steps=len(losses), validation={"users": 0}, lr=0.5, save_every=100)
    tr.out_dir, tr.ckpt_dir, tr.progress = tmp_path, tmp_path / "checkpoints", False
    tr._prepared, tr._epoch_cache = True, None
    lin = torch.nn.Linear(1, 1)
    tr.peft = lin
    tr.params = list(lin.parameters())
    tr.optimizer = torch.optim.SGD(tr.params, lr=tr.config.lr)
    tr.scheduler = torch.optim.lr_scheduler.LambdaLR(tr.optimizer, lambda s: 1.0)
    tr.total_steps, tr._val_lists, tr.validation, tr.losses, tr.best_ndcg = len(losses), {}, [], [], None
    calls = iter(losses)
    tr.micro_batch = lambda m: [SimpleNamespace(group=m)]

    def loss(batch):
        out = lin(torch.ones(1, 1)).sum() * 0 + next(calls)
        if nan_grad:  # a finite loss whose gradient is NaN (sqrt at 0)
            out = out + torch.sqrt((lin.weight - lin.weight.detach()).abs()).sum()
        return out, 1

    tr.loss = loss
    tr.saved = []
    tr.save_checkpoint = lambda step: tr.saved.append(step) or tmp_path
    tr._save_named = lambda name, step: tmp_path
    return tr


def test_nan_loss_stops_training_naming_the_step(tmp_path: Path):
    tr = _stub_trainer(tmp_path, [1.0, 0.5, math.nan, 0.2])
    with pytest.raises(ModelError, match=r"training loss is nan at step 3.*lr \(now 0\.5\)"):
        tr.train()
    assert [x["step"] for x in tr.losses] == [1, 2]  # the NaN never reached the loss log
    assert tr.saved == []  # no checkpoint of the broken step
    tr = _stub_trainer(tmp_path, [1.0, math.inf])
    with pytest.raises(ModelError, match=r"training loss is inf at step 2"):
        tr.train()


def test_non_finite_gradient_stops_training(tmp_path: Path):
    tr = _stub_trainer(tmp_path, [1.0, 1.0], nan_grad=True)
    with pytest.raises(ModelError, match=r"training gradient norm is nan at step 1"):
        tr.train()
    assert tr.losses == []


# ------------------------------------------------------------------ the request door (fuzz findings)
@pytest.mark.parametrize("context", ["NaN", True, [1, 2], 3])
def test_request_context_must_be_a_mapping(context):
    from reranker.api import normalize_request

    # before: dict(context) raised ValueError / TypeError (a traceback at the public door)
    with pytest.raises(DataError, match="context must be a mapping"):
        normalize_request(["a"], ["b"], context)


@pytest.mark.parametrize(("entry", "message"), [
    ({"id": "x", "attrs": True}, "'attrs' must be a mapping"),   # before: TypeError
    ({"id": "x", "attrs": ["a"]}, "'attrs' must be a mapping"),  # before: ValueError
    ({"id": [1, 2]}, "is not a string or number"),               # before: the id "[1, 2]"
    ({"id": True}, "is not a string or number"),                 # before: the id "True"
])
def test_request_item_dicts_are_checked(entry, message: str):
    from reranker.api import normalize_request

    with pytest.raises(DataError, match=message):
        normalize_request(None, [entry])
    with pytest.raises(DataError, match=message):
        normalize_request([entry], ["c"])

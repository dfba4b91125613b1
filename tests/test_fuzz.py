"""Property-based fuzzing of the untrusted-input doors (issue 19, item 6): the file loaders, the
public request normaliser, the listwise answer parser and the config models.

Each door either succeeds with a result that keeps its promises or raises a RerankerError:
never another exception, never a hang (a deadline per example). Derandomized with a bounded
number of examples, so CI is deterministic and the suite takes seconds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reranker.errors import RerankerError

FUZZ = settings(
    max_examples=120,
    deadline=timedelta(seconds=5),  # a hang fails the example; generous for a loaded CI box
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ============================================================================ shared values
NA_TOKENS = ["NaN", "nan", "NULL", "null", "None", "none", "N/A", "NA", "<NA>", "", " ", "inf", "-inf"]
_SCALAR_TEXT = st.one_of(
    st.sampled_from(NA_TOKENS + ["0", "007", "1.0", "-3", "1e309", "A", "B", "u1", "é", "日本", "a b", "\t"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.integers(-10**6, 10**13).map(str),
)
_JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NA_TOKENS), st.text(max_size=8),
)
_JSON = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)


def _is_missing_token(x: str) -> bool:
    from reranker.data.strict import MISSING_ID_TOKENS

    return x.strip().lower() in MISSING_ID_TOKENS


def _check_ids(ds: Any) -> None:
    for col in ("user_id", "item_id"):
        ids = ds.interactions[col].tolist()
        assert all(isinstance(x, str) and x.strip() and not _is_missing_token(x) for x in ids), ids
    assert all(isinstance(x, str) and x.strip() for x in ds.items["item_id"].tolist())


def _load_or_error(write: Callable[[Path], Path], fmt: str) -> Any:
    """load() a file written by `write` in a fresh folder: the Dataset or None (RerankerError)."""
    from reranker.data import load

    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d))
        try:
            ds = load(path, format=fmt)
        except RerankerError as e:
            event(f"{fmt}: {type(e).__name__}")
            return None
        event(f"{fmt}: loaded")
        return ds


# ============================================================================ (a) loaders
_GOOD = {  # mostly-valid values per column, so most examples load and the properties bite
    "user_id": st.one_of(st.sampled_from(["u1", "u2", "007", "42", "ü", "用户", " u3 "]), st.integers(0, 10**12).map(str)),
    "item_id": st.sampled_from(["A", "B", "C", "1", "99", "p-1", "é"]),
    "rating": st.one_of(st.integers(-5, 10).map(str), st.sampled_from(["4.5", "1e2", ""])),
    "timestamp": st.one_of(st.integers(0, 2 * 10**9).map(str),
                           st.sampled_from(["2020-01-02", "2021-03-04T05:06:07Z", "25/04/2020", "04/25/2020"])),
}
_HOSTILE = st.one_of(
    st.sampled_from(NA_TOKENS + ["a,b", 'say "hi"', "two\nlines", "03/04/2020", "1588615855070", "-5", "1e309"]),
    _SCALAR_TEXT,
)
_EXTRA_COLUMNS = ["rating", "timestamp", "event", "title", "x", "", "user_id ", "日付", "item_id"]


@st.composite
def _csv_text(draw: st.DrawFn) -> tuple[str, list[str], list[list[str]]]:
    """A CSV written by csv.writer (so quoting is well formed): user_id and item_id (most of
    the time) plus other columns, duplicates among them now and then; mostly valid values
    with a hostile token (NaN-like, unicode, separators, other date/time forms) in one cell
    out of ten; sometimes a row with one field too many or too few."""
    header = draw(st.lists(st.sampled_from(_EXTRA_COLUMNS), max_size=3))
    if draw(st.integers(0, 9)):
        header = ["user_id", "item_id", *header]
    header = header or ["user_id"]
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        row = []
        for col in header:
            hostile = draw(st.integers(0, 9)) == 0
            row.append(draw(_HOSTILE if hostile or col not in _GOOD else _GOOD[col]))
        rows.append(row)
    if draw(st.integers(0, 5)) == 0:  # a ragged row
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = rows[i] + ["extra"] if draw(st.booleans()) else rows[i][:-1]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue(), header, rows


@FUZZ
@given(_csv_text())
def test_csv_loader_gives_clean_ids_or_a_reranker_error(case: tuple[str, list[str], list[list[str]]]):
    text, header, rows = case

    def write(d: Path) -> Path:
        (d / "interactions.csv").write_text(text, encoding="utf-8")
        return d / "interactions.csv"

    ds = _load_or_error(write, "csv")
    if ds is None:
        return
    _check_ids(ds)
    records = [r for r in csv.reader(io.StringIO(text))][1:]
    records = [r for r in records if r]  # blank lines are skipped
    assert ds.n_interactions == len(records)  # errors are all-or-nothing: every row loaded
    named = [h for h in header if h]  # empty headers are pandas' "Unnamed: <i>" columns
    assert len(set(named)) == len(named)  # a duplicate header never loads
    assert all(len(r) <= len(header) for r in records)  # nor a row with an extra field
    ui = header.index("user_id")
    assert ds.interactions["user_id"].tolist() == [r[ui].strip() for r in records]  # exact, in order


_RAW = st.text(alphabet=st.sampled_from(list("uAB12_,;\t\"'\n\r 0123456789.-/:NaULlé")), max_size=120)


@FUZZ
@given(_RAW)
def test_csv_recbole_and_jsonl_loaders_on_raw_text(text: str):
    """Arbitrary text after a valid header: quotes, separators and line breaks anywhere."""
    for name, fmt, head in (("interactions.csv", "csv", "user_id,item_id\n"),
                            ("x.inter", "recbole", "user_id:token\titem_id:token\n"),
                            ("interactions.jsonl", "jsonl", '{"user_id": "u", "item_id": "A"}\n')):
        def write(d: Path, name: str = name, head: str = head) -> Path:
            (d / name).write_text(head + text, encoding="utf-8")
            return d

        ds = _load_or_error(write, fmt)
        if ds is not None:
            _check_ids(ds)


_ID_VALUES = st.one_of(_JSON_SCALAR, st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


@st.composite
def _jsonl_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records with mostly valid ids (strings, ints, integral floats), ratings and timestamps;
    one value in eight is hostile (null, NaN, a list, an object, a boolean, a NaN-like string)."""
    good: dict[str, st.SearchStrategy[Any]] = {
        "user_id": st.one_of(st.sampled_from(["u1", "u2", "ü"]), st.integers(0, 10**15)),
        "item_id": st.one_of(st.sampled_from(["A", "B", "7"]), st.integers(0, 99)),
        "rating": st.one_of(st.integers(1, 5), st.floats(-10, 10)),
        "timestamp": st.one_of(st.integers(0, 2 * 10**9), st.sampled_from(["2020-01-02", "2021-03-04T05:06:07Z"])),
        "event": st.sampled_from(["view", "buy", ""]),
    }
    keys = ["user_id", "item_id", *draw(st.lists(st.sampled_from(["rating", "timestamp", "event"]), unique=True))]
    out = []
    for _ in range(draw(st.integers(1, 6))):
        rec = {}
        for k in keys:
            if draw(st.integers(0, 7)) == 0:
                if draw(st.booleans()):
                    rec[k] = draw(st.one_of(_ID_VALUES, _JSON))
                continue  # a missing key now and then
            rec[k] = draw(good[k])
        out.append(rec)
    return out


@FUZZ
@given(_jsonl_records())
def test_jsonl_loader_gives_clean_ids_or_a_reranker_error(records: list[dict[str, Any]]):
    def write(d: Path) -> Path:
        (d / "interactions.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
        return d

    ds = _load_or_error(write, "jsonl")
    if ds is None:
        return
    _check_ids(ds)
    assert ds.n_interactions == len(records)
    for r in records:  # what loaded was a scalar id in every row
        assert not isinstance(r["user_id"], list | dict | bool) and r["user_id"] is not None
    if ds.has_ratings:
        assert all(math.isfinite(x) for x in ds.interactions["rating"])
    if ds.has_timestamps:
        assert all(0 <= x < 1e11 for x in ds.interactions["timestamp"])


# ============================================================================ (b) the request door
_GOOD_ID = st.one_of(st.text(min_size=1, max_size=4), st.integers(0, 10**6))
_REQ_ID = st.one_of(st.text(max_size=4), st.integers(-5, 5), st.booleans(), st.none(), st.floats(allow_nan=True))
_ITEM_DICT = st.fixed_dictionaries(
    {"id": _GOOD_ID}, optional={"title": st.one_of(st.text(max_size=6), _JSON), "text": _JSON, "category": _JSON,
                                "attrs": _JSON, "score": st.one_of(st.floats(allow_nan=True), _JSON),
                                "description": _JSON},
)
_BAD_DICT = st.fixed_dictionaries({}, optional={"id": _REQ_ID, "item_id": _REQ_ID, "attrs": _JSON, "score": _JSON})
# mostly valid entries (ids, item dicts), then anything JSON can hold
_REQ_ENTRY = st.one_of(_GOOD_ID, _GOOD_ID, _ITEM_DICT, _ITEM_DICT, _REQ_ID, _BAD_DICT, _JSON)
_REQ_LIST = st.one_of(st.lists(_REQ_ENTRY, max_size=6), st.lists(_GOOD_ID, max_size=6, unique_by=str), _JSON)


def _expected_id(x: Any) -> str:
    from reranker.types import Candidate, Item

    if isinstance(x, Item | Candidate):
        return x.item_id
    if isinstance(x, dict):
        return str(x.get("item_id", x.get("id")))
    return str(x)


@FUZZ
@given(history=st.one_of(st.none(), st.lists(_GOOD_ID, max_size=4), _REQ_LIST), candidates=_REQ_LIST,
       context=st.one_of(st.none(), st.none(), st.dictionaries(st.text(max_size=4), _JSON, max_size=3), _JSON))
def test_normalize_request_gives_the_candidates_in_order_or_a_reranker_error(history, candidates, context):
    from reranker.api import normalize_request

    try:
        hist, cands, local = normalize_request(history, candidates, context)
    except RerankerError:
        event("error")
        return
    event(f"ok: {min(len(cands), 3)}+ candidates")
    assert [c.item_id for c in cands] == [_expected_id(x) for x in candidates]
    assert all(isinstance(c.item_id, str) and c.item_id for c in cands)
    assert all(isinstance(i, str) and i for i in hist.items)
    assert len({c.item_id for c in cands}) == len(cands)  # no duplicate candidates
    assert all(math.isfinite(c.score) for c in cands)
    assert all(isinstance(k, str) for k in local)


# ============================================================================ (c) the listwise parser
_ANSWER = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(["1", "2", "3", "10", "0", "99999999999999999999999", "[", "]", ",", ", ", ";", " > ",
                              " ", "\n", "\r\n", ".", "Answer: ", "٣", "²", "1.5", "-2", "[2]", "Ranking:"]),
             max_size=25).map("".join),
)


@FUZZ
@given(text=_ANSWER, n=st.integers(0, 30), data=st.data())
def test_parse_ranking_is_always_a_complete_permutation(text: str, n: int, data: st.DataObject):
    from reranker.ranking.parsing import parse_ranking

    fill = data.draw(st.permutations(range(n)))
    r = parse_ranking(text, n, fill)
    assert sorted(r.order) == list(range(n))
    assert r.valid + r.filled_in == n
    assert r.valid + r.hallucinated + r.duplicate == len(r.numbers) + int(r.malformed)
    assert min(r.counts().values(), default=0) >= 0
    named = set(r.order[: r.valid])
    assert r.order[r.valid:] == [i for i in fill if i not in named]  # the rest in fill order


# ============================================================================ (d) config models
def _leaves(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _leaves(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _leaves(v, (*prefix, i))
    return out


def _get(d: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        d = d[k]
    return d


def _set(d: Any, path: tuple[Any, ...], value: Any, drop: bool) -> None:
    for k in path[:-1]:
        d = d[k]
    if drop and isinstance(d, dict):
        d.pop(path[-1], None)
    else:
        d[path[-1]] = value


_SAME_TYPE: dict[type, st.SearchStrategy[Any]] = {
    bool: st.booleans(),
    int: st.one_of(st.integers(-2, 100), st.integers()),
    float: st.one_of(st.floats(-1, 100), st.floats(allow_nan=True, allow_infinity=True)),
    str: st.one_of(st.text(max_size=8), st.sampled_from(["itemcf", "usercf", "pop", "auto", "a", "b", "random"])),
}


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A valid config dump with up to three values replaced by random JSON (or dropped, or an
    unknown key added)."""
    d = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = _leaves(d)
        path = draw(st.sampled_from(paths)) if paths else ("extra",)
        kind = draw(st.integers(0, 5))
        if kind == 0 and isinstance(_get(d, path[:-1]), dict):  # an unknown key
            path = (*path[:-1], draw(st.text(max_size=6)))
        old = _get(d, path) if kind >= 3 else None
        if kind >= 3 and isinstance(old, bool | int | float | str):  # a value of the same type
            value = draw(_SAME_TYPE[type(old)])
        else:
            value = draw(_JSON)
        _set(d, path, value, drop=kind == 1)
    return d


def _models() -> dict[str, tuple[type, dict[str, Any]]]:
    from reranker.evaluation.experiment import ExperimentConfig
    from reranker.pipeline.config import PipelineConfig
    from reranker.training.config import FinetuneConfig

    exp = ExperimentConfig.from_dict({
        "data": {"synthetic": {"seed": 0}},
        "protocol": {"compare_to": "usercf", "pairs": [["itemcf", "usercf"]]},
        "rankers": [{"name": "itemcf", "type": "itemcf", "params": {"k": 20}}, {"name": "usercf", "type": "usercf"},
                    {"name": "fusion", "type": "fusion", "params": {"weights": {"itemcf": 0.5, "usercf": 0.5}}},
                    {"name": "llm", "type": "llm-pointwise"}],
    })
    return {
        "pipeline": (PipelineConfig, PipelineConfig().model_dump(mode="json")),
        "experiment": (ExperimentConfig, exp.model_dump(mode="json")),
        "finetune": (FinetuneConfig, FinetuneConfig(max_steps=2).model_dump(mode="json")),
    }


MODELS = _models()


@FUZZ
@given(st.sampled_from(sorted(MODELS)).flatmap(lambda n: st.tuples(st.just(n), _mutated(MODELS[n][1]))))
def test_config_models_validate_or_raise_config_errors(case: tuple[str, dict[str, Any]]):
    name, data = case
    cls = MODELS[name][0]
    try:
        cfg = cls.from_dict(data)
    except RerankerError:
        event(f"{name}: error")
        return
    event(f"{name}: valid")
    dumped = cfg.model_dump(mode="json")
    again = cls.from_dict(json.loads(json.dumps(dumped)))  # dump -> load round trip
    assert again.model_dump(mode="json") == dumped
    with tempfile.TemporaryDirectory() as d:  # and through YAML
        path = Path(d) / "c.yaml"
        cfg.to_yaml(path)
        assert cls.from_yaml(path).model_dump(mode="json") == dumped

"""Own data: MovieLens ratings.csv / ratings.dat layouts, format auto-detection, column mappings,
separators and item files from the CLI, and errors naming the file and the close column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reranker.cli import main
from reranker.data import load
from reranker.errors import DataError

RATINGS_CSV = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{i},{0.5 + (u + i) % 10 / 2},{964980000 + 10 * u + i}\n" for u in range(1, 5) for i in (1, 2, 3, 5)
)
MOVIES_CSV = (
    "movieId,title,genres\n"
    '1,Toy Story (1995),Adventure|Animation|Children\n'
    '2,"Jumanji, The (1995)",Adventure|Fantasy\n'
    "3,Heat (1995),Action\n"
    "5,Nothing (2000),(no genres listed)\n"
)


def _ml_csv(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ratings.csv").write_text(RATINGS_CSV)
    (folder / "movies.csv").write_text(MOVIES_CSV)
    return folder


def test_movielens_csv_layout(tmp_path: Path) -> None:
    folder = _ml_csv(tmp_path / "ml-latest-small")
    for path, fmt in ((folder, "movielens"), (folder, "auto"), (folder / "ratings.csv", "movielens")):
        ds = load(path, format=fmt)
        assert (ds.n_users, ds.n_items, ds.n_interactions) == (4, 4, 16)
    items = ds.items.set_index("item_id")
    assert items.loc["1", "category"] == "Adventure" and items.loc["1", "genres"] == "Adventure|Animation|Children"
    assert items.loc["2", "title"] == "Jumanji, The (1995)"
    assert items.loc["5", "category"] is None and items.loc["5", "genres"] == ""
    assert list(ds.describe()["rating_scale"]) == [1.5, 5.0]


def test_movielens_csv_misnamed_column(tmp_path: Path) -> None:
    folder = _ml_csv(tmp_path / "ml")
    (folder / "ratings.csv").write_text(RATINGS_CSV.replace("userId", "user"))
    with pytest.raises(DataError, match=r"ratings.csv, line 1, column 'userId'.*did you mean 'user'"):
        load(folder, format="movielens")


def test_movielens_dat_layout(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{1 + (u * i) % 5}::{978300000 + i}\n"
                                                for u in (1, 2, 3) for i in (10, 20, 30)))
    (folder / "movies.dat").write_bytes("10::Am\xe9lie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n"
                                        "30::X (1999)::Drama\n".encode("latin-1"))
    ds = load(folder, format="auto")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 3, 9)
    assert ds.items.set_index("item_id").loc["10", "title"] == "Amélie (2001)"
    (folder / "ratings.dat").write_text("1::10::5::978300000\n2::10::5\n")
    with pytest.raises(DataError, match=r"ratings.dat, line 2: expected 4 '::'-separated fields"):
        load(folder, format="movielens")


def test_generic_csv_mapping_sep_items_from_the_cli(tmp_path: Path) -> None:
    inter = tmp_path / "ratings.txt"
    inter.write_text("User-ID;ISBN;Book-Rating\n" + "".join(f"u{u};b{i};{(u + i) % 10}\n"
                                                            for u in range(3) for i in range(4)))
    books = tmp_path / "books.txt"
    books.write_text("ISBN;Book-Title;Genre\n" + "".join(f"b{i};Book {i};Fiction|Crime\n" for i in range(4)))
    args = ["data", "describe", str(inter), "--format", "csv", "--sep", ";", "--items", str(books),
            "--column", "user_id=User-ID", "--column", "item_id=ISBN", "--column", "rating=Book-Rating",
            "--item-column", "item_id=ISBN", "--item-column", "title=Book-Title", "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 4, 12)
    assert stats["time_span"] is None


def test_misnamed_column_names_file_and_close_match(tmp_path: Path) -> None:
    inter = tmp_path / "interactions.csv"
    inter.write_text("userId,movieId\n1,2\n")
    r = CliRunner().invoke(main, ["data", "describe", str(inter)])
    assert r.exit_code == 2
    assert "interactions.csv" in r.output and "'user_id'" in r.output and "did you mean 'userId'" in r.output
    assert "--column user_id=userId" in r.output
    r = CliRunner().invoke(main, ["data", "describe", str(inter), "--column", "user_id=userID"])
    assert r.exit_code == 2 and "did you mean 'userId'" in r.output
    r = CliRunner().invoke(main, ["data", "describe", str(inter), "--column", "user_id"])
    assert r.exit_code == 2 and "--column: expected CANONICAL=SOURCE" in r.output


def test_auto_format_cannot_tell(tmp_path: Path) -> None:
    (tmp_path / "stuff.bin").write_bytes(b"x")
    with pytest.raises(DataError, match="cannot tell the format.*--format"):
        load(tmp_path / "stuff.bin", format="auto")


@pytest.mark.skipif(not Path("../shared/data/ml-100k").exists(), reason="needs ../shared/data/ml-100k")
def test_auto_format_on_the_recbole_copy() -> None:
    assert load("../shared/data/ml-100k", format="auto").n_interactions == 100_000


def test_config_data_block_takes_items_columns_and_sep(tmp_path: Path) -> None:
    import yaml

    from reranker.evaluation.experiment import load_experiment
    from reranker.evaluation.runner import load_data

    (tmp_path / "r.tsv").write_text("uid|iid|stars\n" + "".join(f"{u}|{i}|{1 + (u + i) % 5}\n"
                                                                for u in range(4) for i in range(5)))
    (tmp_path / "cat.tsv").write_text("iid|name\n" + "".join(f"{i}|Item {i}\n" for i in range(5)))
    data = {"path": "r.tsv", "format": "csv", "items": "cat.tsv", "sep": "|",
            "columns": {"user_id": "uid", "item_id": "iid", "rating": "stars"},
            "item_columns": {"item_id": "iid", "title": "name"}}
    cfg = {"name": "own", "data": data, "protocol": {"regime": "b"}, "rankers": [{"name": "pop", "type": "pop"}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    ds = load_data(load_experiment(tmp_path / "e.yaml"))
    assert (ds.n_users, ds.n_items) == (4, 5) and ds.items.set_index("item_id").loc["3", "title"] == "Item 3"
    data["items"] = "nope.tsv"
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    from reranker.errors import ConfigError

    with pytest.raises(ConfigError, match="data.items: 'nope.tsv' not found"):
        load_data(load_experiment(tmp_path / "e.yaml"))


def _untimed(n_users: int = 30, n_items: int = 12):
    import pandas as pd

    from reranker.data import Dataset

    rows = [(f"u{u:02d}", f"i{i:02d}") for u in range(n_users) for i in range(n_items) if (u * 7 + i * 3) % 4]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id"])  # sorted by item id within each user
    return Dataset(inter, name="untimed")


def test_without_timestamps_the_split_is_seeded_random_not_file_order() -> None:
    from reranker.data import leave_one_out

    ds = _untimed()
    split = leave_one_out(ds)
    assert split.order == "seeded random (no timestamps; seed 0)"
    last = ds.interactions.groupby("user_id")["item_id"].max()
    targets = split.targets("test")
    assert sum(targets[u] == last[u] for u in targets) < len(targets) / 2  # not the file's last row
    assert leave_one_out(ds).targets("test") == targets  # seeded: the same every time
    other = leave_one_out(ds.with_tie_order("random", 1)).targets("test")
    assert other != targets and leave_one_out(ds.with_tie_order("random", 1)).order.endswith("seed 1)")
    # the histories end with the validation item, and one step back agrees with the targets
    hist = split.histories("test", cap=None)
    val = split.targets("validation")
    assert all(hist[u].items[-1] == val[u] for u in split.users)
    assert split.earlier().targets("test") == val


def test_without_timestamps_time_features_are_off_and_the_report_says_so(tmp_path: Path) -> None:
    import yaml

    from reranker.evaluation.experiment import load_experiment
    from reranker.evaluation.runner import RunOptions, run_experiment
    from reranker.ranking.features import build_components

    ds = _untimed(n_items=40)
    assert "recency" not in build_components(ds, ds, recency_days=30.0, trend_days=7.0)
    assert "trend" not in build_components(ds, ds, recency_days=30.0, trend_days=7.0)
    cfg = {"name": "untimed", "data": {"synthetic": {"seed": 0}},
           "protocol": {"regime": "b", "n_boot": 20, "n_negatives": 5, "position_bias": {"enabled": False}},
           "rankers": [{"name": "pop", "type": "pop"}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    run_experiment(load_experiment(tmp_path / "e.yaml"), RunOptions(dataset=ds, use_cache=False, progress=False,
                                                                    out_dir=out))
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["split"].startswith("seeded random leave-one-out (the data has no timestamps")
    md = (out / "report.md").read_text()
    assert "split: seeded random leave-one-out" in md and "Time-based features: off: no timestamps" in md


def test_multi_valued_categories_are_lists(tmp_path: Path) -> None:
    (tmp_path / "interactions.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{i}\n" for u in range(3)
                                                                              for i in range(4)))
    (tmp_path / "items.csv").write_text("item_id,title,genre\ni0,A,Animation|Children\ni1,B,Children\n"
                                        "i2,C,Drama| Crime\ni3,D,\n")
    ds = load(tmp_path, format="csv")
    items = ds.items.set_index("item_id")
    assert items.loc["i0", "category"] == "Animation" and items.loc["i0", "genres"] == "Animation|Children"
    assert items.loc["i2", "genres"] == "Drama|Crime" and items.loc["i3", "category"] is None
    assert ds.describe()["categories"] == 4  # Animation, Children, Drama, Crime (not 3 strings)
    whole = load(tmp_path, format="csv", category_sep=None)
    assert whole.items.set_index("item_id").loc["i0", "category"] == "Animation|Children"
    r = CliRunner().invoke(main, ["data", "describe", str(tmp_path), "--category-sep", "", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["categories"] == 3
    js = tmp_path / "js"
    js.mkdir()
    (js / "interactions.jsonl").write_text('{"user_id": "u", "item_id": "i0"}\n')
    (js / "items.jsonl").write_text('{"item_id": "i0", "title": "A", "categories": ["Books", "Crime"]}\n')
    j = load(js, format="jsonl").items.iloc[0]
    assert (j["category"], j["genres"]) == ("Books", "Books|Crime")

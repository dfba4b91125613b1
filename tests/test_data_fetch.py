"""`reranker data fetch`: downloads from a loopback HTTP server started here (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reranker.cli import main
from reranker.data import load
from reranker.data.fetch import (
    DATASETS,
    MARKER,
    FetchError,
    RemoteDataset,
    RemoteFile,
    data_home,
    data_path,
    dataset_spec,
    fetch,
    read_marker,
    register_dataset,
)

GENRES = 19


def _ml100k_zip() -> bytes:
    """A tiny archive in the ml-100k layout (top folder ml-tiny/, u.data + u.item)."""
    rows = []
    for u in range(1, 6):
        for k, i in enumerate(range(1, 6)):
            if (u + i) % 4:
                rows.append(f"{u}\t{i}\t{1 + (u * i) % 5}\t{880000000 + 1000 * u + k}")
    items = []
    for i in range(1, 7):
        flags = ["0"] * GENRES
        flags[i % GENRES] = "1"
        flags[(i + 3) % GENRES] = "1"
        items.append("|".join([str(i), f"Movie {i} (1995)", "01-Jan-1995", "", "http://x", *flags]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-tiny/u.data", "\n".join(rows) + "\n")
        z.writestr("ml-tiny/u.item", "\n".join(items) + "\n")
        z.writestr("ml-tiny/README", "tiny\n")
    return buf.getvalue()


ARCHIVE = _ml100k_zip() + b""  # fixed bytes for the whole module
SHA = hashlib.sha256(ARCHIVE).hexdigest()


class _Server:
    """Serves `files` on loopback with Range support; paths in `truncate_once` send half the
    body (with the full Content-Length) and drop the connection, once."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate_once: set[str] = set()
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = outer.files.get(self.path)
                outer.ranges.append(self.headers.get("Range"))
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if self.path in outer.truncate_once:
                    outer.truncate_once.discard(self.path)
                    self.wfile.write(part[: len(part) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    s.files["/ml-tiny.zip"] = ARCHIVE
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("RERANKER_DATA", str(home))
    return home


def _spec(url: str, sha: str | None = SHA, md5: str | None = None) -> RemoteDataset:
    return RemoteDataset("ml-tiny", "movielens", (RemoteFile(url, sha256=sha, md5=md5),), "tiny", "test")


def _leftovers(folder: Path) -> list[str]:
    """Everything under `folder` except the finished data set and the downloads folder."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in ("downloads",))


def test_fetch_unpacks_to_a_loadable_folder(server: _Server, tmp_path: Path) -> None:
    dest = fetch(_spec(server.url("/ml-tiny.zip")), tmp_path / "out" / "ml-tiny", progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["README", MARKER, "u.data", "u.item"]
    marker = json.loads((dest / MARKER).read_text())
    assert marker["format"] == "movielens" and marker["files"][0]["sha256"] == SHA
    ds = load(dest, format="auto")
    assert ds.n_users == 5 and ds.n_items == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ml-tiny"]  # no temporary folder left
    assert list((data_home() / "downloads").iterdir()) == []  # the archive is not kept
    # a second fetch keeps the folder and downloads nothing
    n = len(server.ranges)
    assert fetch(_spec(server.url("/ml-tiny.zip")), dest, progress=False) == dest
    assert len(server.ranges) == n


def test_md5_is_checked_when_there_is_no_sha256(server: _Server, tmp_path: Path) -> None:
    md5 = hashlib.md5(ARCHIVE).hexdigest()
    assert fetch(_spec(server.url("/ml-tiny.zip"), sha=None, md5=md5), tmp_path / "d", progress=False).is_dir()
    with pytest.raises(FetchError, match="md5 checksum mismatch"):
        fetch(_spec(server.url("/ml-tiny.zip"), sha=None, md5="0" * 32), tmp_path / "e", progress=False)


def test_checksum_mismatch_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"sha256 checksum mismatch .*expected 0{64}, got " + SHA):
        fetch(_spec(server.url("/ml-tiny.zip"), sha="0" * 64), tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()
    assert list((data_home() / "downloads").iterdir()) == []


def test_404_is_a_clear_error(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"/missing.zip: HTTP 404 Not Found.*--from"):
        fetch(_spec(server.url("/missing.zip")), tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()
    assert _leftovers(tmp_path) == ["cache"] and list((data_home() / "downloads").iterdir()) == []


def test_no_network_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match=r"cannot download \(ConnectError.*no network\?.*--from"):
        fetch(_spec(f"http://127.0.0.1:{port}/ml-tiny.zip"), tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()


def test_truncated_download_is_kept_and_resumed(server: _Server, tmp_path: Path) -> None:
    server.truncate_once.add("/ml-tiny.zip")
    with pytest.raises(FetchError, match=r"(interrupted|truncated).*next fetch resumes"):
        fetch(_spec(server.url("/ml-tiny.zip")), tmp_path / "d", progress=False)
    assert not (tmp_path / "d").exists()  # nothing half-written in place
    (part,) = (data_home() / "downloads").glob("*-ml-tiny.zip.part")
    assert 0 < part.stat().st_size < len(ARCHIVE)
    have = part.stat().st_size
    dest = fetch(_spec(server.url("/ml-tiny.zip")), tmp_path / "d", progress=False)
    assert server.ranges[-1] == f"bytes={have}-"  # resumed, not restarted
    assert load(dest, format="auto").n_interactions > 0
    assert not part.exists()


def test_a_complete_part_file_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    downloads = data_home() / "downloads"
    downloads.mkdir(parents=True)
    tag = hashlib.sha256(server.url("/ml-tiny.zip").encode()).hexdigest()[:12]
    (downloads / f"{tag}-ml-tiny.zip.part").write_bytes(ARCHIVE)  # complete: the server answers 416
    dest = fetch(_spec(server.url("/ml-tiny.zip")), tmp_path / "d", progress=False)
    assert (dest / "u.data").is_file() and server.ranges[-1] == f"bytes={len(ARCHIVE)}-"


def test_from_file_offline_and_wrong_file(tmp_path: Path) -> None:
    archive = tmp_path / "ml-tiny.zip"
    archive.write_bytes(ARCHIVE)
    spec = _spec("http://127.0.0.1:9/never-contacted.zip")
    dest = fetch(spec, tmp_path / "d", source=archive, progress=False)
    assert load(dest, format="auto").n_users == 5 and archive.is_file()  # the user's file is kept
    bad = tmp_path / "other.zip"
    bad.write_bytes(ARCHIVE[:-10])
    with pytest.raises(FetchError, match="checksum mismatch.*is it the right file"):
        fetch(spec, tmp_path / "e", source=bad, progress=False)
    assert bad.is_file() and not (tmp_path / "e").exists()
    with pytest.raises(FetchError, match="--from .*nope.zip: no such file"):
        fetch(spec, tmp_path / "e", source=tmp_path / "nope.zip", progress=False)


def test_a_corrupt_unverified_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ml-tiny.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(FetchError, match="not a complete zip archive"):
        fetch(_spec("http://127.0.0.1:9/x.zip", sha=None), tmp_path / "d", source=junk, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ml-tiny.zip"]  # no temporary folder left


def test_zip_members_outside_the_folder_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
        z.writestr("u.data", "1\t1\t1\t1\n")
    evil = tmp_path / "evil.zip"
    evil.write_bytes(buf.getvalue())
    with pytest.raises(FetchError, match="outside the folder"):
        fetch(_spec("http://127.0.0.1:9/x.zip", sha=None), tmp_path / "d", source=evil, progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "d").exists()


def test_dest_that_is_not_a_fetched_set_is_not_overwritten(tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "precious.csv").write_text("a\n")
    archive = tmp_path / "ml-tiny.zip"
    archive.write_bytes(ARCHIVE)
    with pytest.raises(FetchError, match="not a fetched data set.*--force"):
        fetch(_spec("http://127.0.0.1:9/x.zip"), dest, source=archive, progress=False)
    assert (dest / "precious.csv").is_file()


def test_unknown_name_suggests_the_close_one() -> None:
    with pytest.raises(FetchError, match="did you mean 'ml-100k'"):
        dataset_spec("ml-100")
    spec = dataset_spec("amazon2023:All_Beauty")
    assert [f.filename for f in spec.files] == ["All_Beauty.jsonl.gz", "meta_All_Beauty.jsonl.gz"]
    assert dataset_spec("ml-1m").files[0].url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"


def test_cli_fetch_then_describe(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "ml-tiny", _spec(server.url("/ml-tiny.zip")))
    r = CliRunner().invoke(main, ["data", "fetch", "ml-tiny", "--no-progress"])
    assert r.exit_code == 0, r.output
    dest = data_home() / "ml-tiny"
    assert str(dest) in r.output
    r = CliRunner().invoke(main, ["data", "describe", str(dest), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["users"] == 5
    assert data_path("ml-tiny") == (dest, "movielens")  # cached: no second download
    r = CliRunner().invoke(main, ["data", "fetch", "ml-tiny", str(tmp_path / "x"), "--from", str(tmp_path / "no.zip")])
    assert r.exit_code == 2 and "no such file" in r.output


def test_cli_fetch_errors_exit_2(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "ml-gone", _spec(server.url("/gone.zip")))
    r = CliRunner().invoke(main, ["data", "fetch", "ml-gone", "--no-progress"])
    assert r.exit_code == 2 and "HTTP 404" in r.output
    r = CliRunner().invoke(main, ["data", "fetch", "ml-10k"])
    assert r.exit_code == 2 and "unknown data set" in r.output


def test_config_names_a_data_set_and_fetches_it_on_first_use(server: _Server, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from reranker.evaluation.experiment import load_experiment
    from reranker.evaluation.runner import load_data

    monkeypatch.setitem(DATASETS, "ml-tiny", _spec(server.url("/ml-tiny.zip")))
    cfg = {"name": "n", "data": {"name": "ml-tiny"}, "protocol": {"regime": "b"},
           "rankers": [{"name": "pop", "type": "pop"}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_experiment(tmp_path / "e.yaml")
    ds = load_data(loaded)
    assert ds.n_users == 5 and (data_home() / "ml-tiny" / MARKER).is_file()
    gets = len(server.ranges)
    assert load_data(loaded).n_users == 5 and len(server.ranges) == gets  # the cache, no download
    assert load_data(loaded, data_path=data_home() / "ml-tiny").n_users == 5  # --data: format told from files
    cfg["data"] = {"name": "ml-tiny", "path": "x"}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(cfg))
    from reranker.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of data.path, data.name or data.synthetic"):
        load_experiment(tmp_path / "e.yaml")


def _amazon_files() -> tuple[bytes, bytes]:
    import gzip

    reviews = "".join(json.dumps({"user_id": f"U{u}", "parent_asin": f"B{i}", "rating": 1 + (u + i) % 5,
                                  "timestamp": 1_600_000_000_000 + 1000 * (u * 10 + i)}) + "\n"
                      for u in range(4) for i in range(3))
    meta = "".join(json.dumps({"parent_asin": f"B{i}", "title": f"Thing {i}", "categories": ["Beauty", f"C{i}"]}) + "\n"
                   for i in range(3))
    return gzip.compress(reviews.encode()), gzip.compress(meta.encode())


def test_two_file_gzip_set_from_server_and_from_files(server: _Server, tmp_path: Path) -> None:
    rev, meta = _amazon_files()
    server.files["/r/Tiny.jsonl.gz"] = rev
    server.files["/m/meta_Tiny.jsonl.gz"] = meta
    spec = RemoteDataset("amazon2023:Tiny", "amazon2023", (
        RemoteFile(server.url("/r/Tiny.jsonl.gz"), sha256=hashlib.sha256(rev).hexdigest(), unpack="gunzip"),
        RemoteFile(server.url("/m/meta_Tiny.jsonl.gz"), unpack="gunzip")))
    dest = fetch(spec, tmp_path / "a", progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["Tiny.jsonl", "meta_Tiny.jsonl", MARKER]
    ds = load(dest, format="auto")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (4, 3, 12)
    # offline: both files, matched by name
    (tmp_path / "Tiny.jsonl.gz").write_bytes(rev)
    (tmp_path / "meta_Tiny.jsonl.gz").write_bytes(meta)
    both = [tmp_path / "meta_Tiny.jsonl.gz", tmp_path / "Tiny.jsonl.gz"]
    assert load(fetch(spec, tmp_path / "b", source=both, progress=False), format="auto").n_interactions == 12
    with pytest.raises(FetchError, match=r"--from lacks \['meta_Tiny.jsonl.gz'\]"):
        fetch(spec, tmp_path / "c", source=[tmp_path / "Tiny.jsonl.gz"], progress=False)
    (tmp_path / "meta_Tiny.jsonl.gz").write_bytes(meta[:-8])  # a truncated gzip: refused, nothing left
    with pytest.raises(FetchError, match="not a complete gzip file"):
        fetch(spec, tmp_path / "c", source=both, progress=False)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))


def test_concurrent_fetches_into_one_folder_download_once(server: _Server, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    spec = _spec(server.url("/ml-tiny.zip"))
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: fetch(spec, tmp_path / "d", progress=False), range(4)))
    assert set(got) == {tmp_path / "d"} and server.ranges.count(None) == 1  # one download, three waited
    assert load(tmp_path / "d", format="auto").n_users == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "d"]


def test_a_folder_holding_another_data_set_is_not_reused(server: _Server, tmp_path: Path) -> None:
    dest = fetch(_spec(server.url("/ml-tiny.zip")), tmp_path / "d", progress=False)
    other = RemoteDataset("ml-other", "movielens", (RemoteFile(server.url("/ml-tiny.zip"), sha256=SHA),))
    with pytest.raises(FetchError, match="holds data set 'ml-tiny', not 'ml-other'"):
        fetch(other, dest, progress=False)
    assert fetch(other, dest, progress=False, force=True) == dest
    assert json.loads((dest / MARKER).read_text())["name"] == "ml-other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "d"]  # the replaced folder is gone


def _unpacked(tmp_path: Path) -> Path:
    """The tiny archive unpacked by hand, as a user's own copy of the data set."""
    folder = tmp_path / "my-copy"
    with zipfile.ZipFile(io.BytesIO(ARCHIVE)) as z:
        for member in ("u.data", "u.item"):
            folder.mkdir(exist_ok=True)
            (folder / member).write_bytes(z.read(f"ml-tiny/{member}"))
    return folder


def test_from_folder_copies_a_local_copy_checked_by_its_shape(tmp_path: Path) -> None:
    folder = _unpacked(tmp_path)
    n = load(folder, format="movielens")
    shape = (n.n_users, n.n_items, n.n_interactions)
    spec = RemoteDataset("ml-tiny", "movielens", (RemoteFile("http://127.0.0.1:9/never.zip", sha256=SHA),),
                         "tiny", "test", shape=shape)
    dest = fetch(spec, tmp_path / "d", source=folder, progress=False)
    marker = read_marker(dest)
    assert marker is not None and marker["name"] == "ml-tiny" and marker["format"] == "movielens"
    assert "local folder" in str(marker["source"])
    assert load(dest, format="auto").n_interactions == shape[2]
    assert (folder / "u.data").is_file()  # the user's copy is kept
    # a folder of another size is refused, and nothing is left behind
    wrong = RemoteDataset("ml-tiny", "movielens", spec.files, "tiny", "test", shape=(shape[0], shape[1], shape[2] + 1))
    with pytest.raises(FetchError, match="is it the right data set"):
        fetch(wrong, tmp_path / "e", source=folder, progress=False)
    assert not (tmp_path / "e").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_config_name_reads_a_folder_installed_copy_in_its_own_format(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``--from FOLDER`` keeps the copy's layout; ``data: {name: ...}`` then loads it in that format
    (here a RecBole-style copy of a set whose archive is in the GroupLens layout)."""
    monkeypatch.setenv("RERANKER_DATA", str(tmp_path / "cache"))
    src = load(_unpacked(tmp_path), format="movielens")
    rec = tmp_path / "rec"
    rec.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{r.user_id}\t{r.item_id}\t{r.rating}\t{r.timestamp}" for r in src.interactions.itertuples()]
    (rec / "rec.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = load(rec, format="recbole")
    spec = RemoteDataset("ml-tiny-rec", "movielens", (RemoteFile("http://127.0.0.1:9/never.zip"),), "t", "t",
                         shape=(got.n_users, got.n_items, got.n_interactions))
    register_dataset(spec)
    try:
        r = CliRunner().invoke(main, ["data", "fetch", "ml-tiny-rec", "--from", str(rec), "--no-progress"])
        assert r.exit_code == 0, r.output
        folder, fmt = data_path("ml-tiny-rec", progress=False)
        assert fmt == "recbole"
        assert load(folder, format=fmt).n_interactions == src.n_interactions
    finally:
        DATASETS.pop("ml-tiny-rec", None)

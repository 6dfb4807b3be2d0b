"""`finetune data check|fetch`: the manifest against the real corpora, and downloads from
a local HTTP server on 127.0.0.1 (this machine reaches no public host; no test contacts one).

Checksums are recomputed here with hashlib, independently of finetune.corpora.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from finetune import corpora
from finetune.__main__ import main


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        _Handler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a local HTTP server over that folder."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Handler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    _Handler.requests = []
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FILES = {
    "alpha/a.txt": b"first corpus\n",
    "alpha/b.conllu": b"1\tword\n\n",
    "beta/c.label": b"X y\n",
}


def _manifest(files=FILES) -> list[dict]:
    by_folder: dict[str, list] = {}
    for rel, data in files.items():
        folder, name = rel.split("/")
        by_folder.setdefault(folder, []).append(
            {"name": name, "upstream": name, "sha256": _sha(data), "bytes": len(data)}
        )
    return [
        {"folder": f, "base_url": "http://upstream.invalid/never-used", "files": fs}
        for f, fs in by_folder.items()
    ]


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_the_real_corpora_check(real_data_dir, capsys):
    assert main(["data", "check", str(real_data_dir)]) == 0
    out = capsys.readouterr().out
    n = sum(len(c["files"]) for c in corpora.load_manifest())
    assert f"all {n} expected files of 4 corpora are present" in out


def test_manifest_matches_the_real_files_by_independent_hash(real_data_dir):
    for c in corpora.load_manifest():
        for f in c["files"]:
            data = (real_data_dir / c["folder"] / f["name"]).read_bytes()
            assert (_sha(data), len(data)) == (f["sha256"], f["bytes"])
        # the GitHub corpora are pinned: their raw URLs carry the commit of their version
        if "github.com" in c["source"]:
            commit = c["version"].rsplit("@ ", 1)[1]
            assert len(commit) == 40 and c["base_url"].endswith("/" + commit)


def test_check_names_what_is_missing_and_what_differs(real_data_dir, tmp_path, capsys):
    shutil.copytree(real_data_dir / "trec", tmp_path / "trec")
    for d in ("ud-english-pud", "ud-english-ewt", "streusle"):
        shutil.copytree(real_data_dir / d, tmp_path / d)
    (tmp_path / "streusle" / "streusle.ud_test.conllulex").unlink()
    with open(tmp_path / "trec" / "TREC_10.label", "ab") as fh:
        fh.write(b"DESC:def what is a test ?\n")
    problems = corpora.check(tmp_path)
    assert [(p.path, p.kind) for p in problems] == [
        ("streusle/streusle.ud_test.conllulex", "missing"),
        ("trec/TREC_10.label", "different"),
    ]
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "missing: streusle/streusle.ud_test.conllulex" in out
    assert "different: trec/TREC_10.label" in out and "2 of 13 expected files" in out


def test_fetch_downloads_verifies_and_keeps_good_files(tmp_path, serve):
    mirror = tmp_path / "mirror"
    _write(mirror, FILES)
    base = serve(mirror)
    dest = tmp_path / "data"
    _write(dest, {"alpha/a.txt": FILES["alpha/a.txt"]})  # already right: not downloaded again
    assert corpora.fetch(dest, base_url=base, corpora=_manifest(), log=lambda m: None) == []
    for rel, data in FILES.items():
        assert (dest / rel).read_bytes() == data
    assert sorted(_Handler.requests) == ["/alpha/b.conllu", "/beta/c.label"]
    assert corpora.check(dest, _manifest()) == []


def test_fetch_refuses_a_wrong_checksum_and_a_missing_file(tmp_path, serve, monkeypatch):
    mirror = tmp_path / "mirror"
    _write(mirror, {"alpha/a.txt": b"tampered\n", "alpha/b.conllu": FILES["alpha/b.conllu"]})
    monkeypatch.setenv(corpora.ENV_BASE_URL, serve(mirror))  # the environment's override
    dest = tmp_path / "data"
    _write(dest, {"alpha/a.txt": b"old, wrong\n"})
    failed = corpora.fetch(dest, corpora=_manifest(), log=lambda m: None)
    assert [(p.path, p.kind) for p in failed] == [
        ("alpha/a.txt", "failed"),
        ("beta/c.label", "failed"),
    ]
    assert (
        "expected " + _sha(FILES["alpha/a.txt"]) in failed[0].detail and "404" in failed[1].detail
    )
    # nothing half-written or wrong appeared under an expected name; the old file is untouched
    assert (dest / "alpha" / "a.txt").read_bytes() == b"old, wrong\n"
    assert (dest / "alpha" / "b.conllu").read_bytes() == FILES["alpha/b.conllu"]
    assert not (dest / "beta" / "c.label").exists()
    assert sorted(p.name for p in (dest / "alpha").iterdir()) == ["a.txt", "b.conllu"]


def test_fetch_command_fills_a_data_dir_that_then_checks(real_data_dir, tmp_path, serve, capsys):
    """The real manifest, served from a local mirror of the real corpora."""
    base = serve(real_data_dir)
    dest = tmp_path / "data"
    assert main(["data", "fetch", str(dest), "--base-url", base]) == 0
    assert "all 13 expected files of 4 corpora are present" in capsys.readouterr().out
    for c in corpora.load_manifest():
        for f in c["files"]:
            rel = Path(c["folder"]) / f["name"]
            assert (dest / rel).read_bytes() == (real_data_dir / rel).read_bytes()

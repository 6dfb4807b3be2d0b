"""The corpora a ``--data-dir`` holds: check them, or fetch them from their sources.

    finetune data check DIR
    finetune data fetch DIR [--base-url URL]

The manifest ``finetune/corpora.json`` names, per corpus folder, its version
(repository and commit, or release), license, source, and every expected file
with its SHA-256 and size. ``check`` reports each file that is missing or
differs; ``fetch`` downloads what is missing or different from the corpus's
pinned public source (raw files of the UD and STREUSLE GitHub repositories at
the manifest's commits, the TREC files from the UIUC Cognitive Computation
Group site), verifies the SHA-256 while streaming, and writes each file
atomically (geomcore.io.atomic_open): a file with the wrong checksum or a cut
download never appears under its name.

``--base-url URL`` (or ``$FINETUNE_DATA_BASE_URL``) fetches every file from a
mirror laid out like a data folder instead: ``URL/<folder>/<file>``.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geomcore.io import atomic_open, file_sha256

__all__ = ["load_manifest", "check", "fetch", "Problem", "ENV_BASE_URL"]

MANIFEST = Path(__file__).with_name("corpora.json")
ENV_BASE_URL = "FINETUNE_DATA_BASE_URL"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Problem:
    """One expected file that is not as the manifest says.

    ``kind`` is ``"missing"`` (no such file), ``"different"`` (its SHA-256
    differs) or ``"failed"`` (a download that did not give the file).
    """

    path: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path} ({self.detail})"


def load_manifest(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The corpora of a manifest file (default: the package's ``corpora.json``)."""
    path = Path(path) if path is not None else MANIFEST
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema_version") != 1:
        raise ValueError(
            f"manifest {path} has schema_version {data.get('schema_version')!r}; "
            "this finetune reads 1"
        )
    return data["corpora"]


def _files(corpora: list[dict[str, Any]]):
    for c in corpora:
        for f in c["files"]:
            yield c, f, f"{c['folder']}/{f['name']}"


def check(
    data_dir: str | os.PathLike, corpora: list[dict[str, Any]] | None = None
) -> list[Problem]:
    """Every expected file of ``data_dir`` that is missing or whose SHA-256 differs."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data folder {root} does not exist or is not a folder")
    corpora = load_manifest() if corpora is None else corpora
    problems = []
    for _, f, rel in _files(corpora):
        path = root / rel
        if not path.is_file():
            problems.append(Problem(rel, "missing", f"expected {f['bytes']} bytes"))
            continue
        digest = file_sha256(path)
        if digest != f["sha256"]:
            problems.append(
                Problem(
                    rel,
                    "different",
                    f"sha256 {digest}, expected {f['sha256']}; "
                    f"{path.stat().st_size} bytes, expected {f['bytes']}",
                )
            )
    return problems


def _url(corpus: dict[str, Any], f: dict[str, Any], base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{corpus['folder']}/{f['name']}"
    return f"{corpus['base_url'].rstrip('/')}/{f['upstream']}"


class _ChecksumMismatch(Exception):
    pass


def _download(url: str, path: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into ``path`` atomically; the file appears only with the right SHA-256."""
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        with atomic_open(path, "wb", make_dirs=True) as out:
            while block := resp.read(_CHUNK):
                h.update(block)
                out.write(block)
            if h.hexdigest() != sha256:
                # Raised inside atomic_open: the temporary file is removed, nothing is renamed.
                raise _ChecksumMismatch(f"downloaded sha256 {h.hexdigest()}, expected {sha256}")


def fetch(
    data_dir: str | os.PathLike,
    *,
    base_url: str | None = None,
    corpora: list[dict[str, Any]] | None = None,
    timeout: float = 60.0,
    log=print,
) -> list[Problem]:
    """Download every expected file of ``data_dir`` that is missing or different.

    Files already present with the right SHA-256 are kept (not downloaded).
    Returns the files that could not be fetched (empty: the folder now checks).
    """
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    corpora = load_manifest() if corpora is None else corpora
    base_url = base_url or os.environ.get(ENV_BASE_URL) or None
    todo = {p.path for p in check(root, corpora)}
    failed = []
    for c, f, rel in _files(corpora):
        if rel not in todo:
            log(f"ok: {rel}")
            continue
        url = _url(c, f, base_url)
        try:
            _download(url, root / rel, f["sha256"], timeout)
        except _ChecksumMismatch as exc:
            failed.append(Problem(rel, "failed", f"{url}: {exc}"))
        except (urllib.error.URLError, OSError) as exc:
            failed.append(Problem(rel, "failed", f"{url}: {exc}"))
        else:
            log(f"fetched: {rel} ({f['bytes']} bytes, sha256 verified)")
    return failed


def register(subparsers) -> None:
    """Add ``finetune data check|fetch``."""
    p = subparsers.add_parser(
        "data",
        help="check or fetch the corpora of a --data-dir",
        description=__doc__.split("\n\n")[0],
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    c = sub.add_parser("check", help="verify every expected file by name and SHA-256")
    c.add_argument("dir", type=Path, help="the data folder (what --data-dir is given)")
    c.set_defaults(func=_run_check)
    f = sub.add_parser("fetch", help="download missing or different files from their sources")
    f.add_argument("dir", type=Path, help="the data folder to fill (created if missing)")
    f.add_argument(
        "--base-url",
        default=None,
        help=f"a mirror laid out as URL/<folder>/<file> (default: ${ENV_BASE_URL}, "
        "else each corpus's pinned upstream source)",
    )
    f.set_defaults(func=_run_fetch)


def _run_check(args) -> int:
    corpora = load_manifest()
    problems = check(args.dir, corpora)
    for p in problems:
        print(p)
    n = sum(len(c["files"]) for c in corpora)
    if problems:
        print(
            f"{len(problems)} of {n} expected files are missing or different in {args.dir}; "
            f"`finetune data fetch {args.dir}` downloads them"
        )
        return 1
    print(
        f"all {n} expected files of {len(corpora)} corpora are present in {args.dir}, "
        "SHA-256 verified"
    )
    return 0


def _run_fetch(args) -> int:
    failed = fetch(args.dir, base_url=args.base_url)
    for p in failed:
        print(p)
    if failed:
        print(f"{len(failed)} files could not be fetched; nothing was written under their names")
        return 1
    return _run_check(args)

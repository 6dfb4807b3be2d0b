"""``geomcore probe-many``: a batch of DirectProbe jobs from a manifest, here or on Ray.

MANIFEST is a JSON-lines file: one job per line, blank lines and lines starting
with ``#`` skipped::

    {"name": "pos_L6", "train": "pos_L6.npy", "train_labels": "pos_L6.labels.txt",
     "test": "pos_L6_test.npy", "test_labels": "pos_L6_test.labels.txt"}

Keys: ``name`` (letters, digits, ``.``, ``_``, ``-``; unique), ``train``,
``train_labels`` (required), ``test`` and ``test_labels`` (together or not at
all), ``label_set`` (optional). File names and formats are those of ``geomcore
probe``; relative paths are relative to the manifest's folder.

Each job is ``geomcore probe`` into ``OUT/<name>/`` (same files, written
atomically, ``results.json`` last); a job whose ``results.json`` holds the same
inputs and settings is not recomputed, so a rerun does only what is missing.
When every job has finished, ``OUT/summary.csv`` and ``OUT/summary.json`` list
one row per job in manifest order.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ManifestJob", "read_manifest", "probe_many", "SUMMARY_COLUMNS"]

KEYS = ("name", "train", "train_labels", "test", "test_labels", "label_set")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED = {"summary.csv", "summary.json", "summary.md"}

#: Columns of summary.csv (and keys of each summary.json row).
SUMMARY_COLUMNS = (
    "name", "n_points", "n_features", "n_labels", "n_clusters", "is_linear",
    "n_overlapping_cluster_pairs", "min_label_distance", "test_points", "accuracy", "results",
)


@dataclass(frozen=True)
class ManifestJob:
    """One line of a manifest, with paths resolved against the manifest's folder."""

    line: int
    name: str
    train: str
    train_labels: str
    test: str | None = None
    test_labels: str | None = None
    label_set: str | None = None


def read_manifest(path: str | Path) -> list[ManifestJob]:
    """Parse and check a manifest; a bad line is a ValueError naming the file and line."""
    from geomcore import io as gio

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest {path} does not exist or is not a file.")
    base = path.resolve().parent
    jobs: list[ManifestJob] = []
    names: dict[str, int] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        where = f"manifest {path}, line {n}"
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not a JSON object ({exc.msg}); expected e.g. "
                             '{"name": "a", "train": "X.npy", "train_labels": "y.txt"}.') from None
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}.")
        unknown = sorted(set(rec) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(KEYS)}.")
        for key in ("name", "train", "train_labels"):
            if key not in rec:
                raise ValueError(f"{where}: missing {key!r}.")
        for key, v in rec.items():
            if not isinstance(v, str) or not v:
                raise ValueError(f"{where}: {key!r} must be a non-empty string; got {v!r}.")
        name = rec["name"]
        if not _NAME.match(name) or name in _RESERVED:
            raise ValueError(f"{where}: name {name!r} is not usable as a folder name "
                             "(letters, digits, '.', '_', '-'; not summary.*).")
        if name in names:
            raise ValueError(f"{where}: name {name!r} already used on line {names[name]}.")
        names[name] = n
        if ("test" in rec) != ("test_labels" in rec):
            raise ValueError(f"{where}: 'test' and 'test_labels' go together: give both or "
                             "neither.")
        files: dict[str, str] = {}
        for key in KEYS[1:]:
            if key not in rec:
                continue
            spec = rec[key]
            file_part, _ = gio._split_npz_spec(spec)
            resolved = file_part if file_part.is_absolute() else base / file_part
            if not resolved.is_file():
                raise ValueError(f"{where}: {key} {spec!r}: no such file ({resolved}).")
            files[key] = spec if Path(spec).is_absolute() else str(base / spec)
        jobs.append(ManifestJob(line=n, name=name, **files))
    if not jobs:
        raise ValueError(f"manifest {path} lists no jobs (one JSON object per line).")
    return jobs


def _namespace(job: ManifestJob, out: Path, tol: float, rtol: float, force: bool
               ) -> argparse.Namespace:
    return argparse.Namespace(
        train=job.train, train_labels=job.train_labels, test=job.test,
        test_labels=job.test_labels, label_set=job.label_set, out=str(out / job.name),
        tol=tol, rtol=rtol, force=force, quiet=True,
    )


def _finished(job: ManifestJob, out: Path, tol: float, rtol: float) -> bool:
    from geomcore import cli
    from geomcore import io as gio

    path = out / job.name / cli.RESULTS
    if not path.exists():
        return False
    args = _namespace(job, out, tol, rtol, False)
    try:
        old = gio.read_json(path)
    except ValueError:
        return False
    return cli._same_run(old, cli._inputs_record(args), {"tol": tol, "rtol": rtol})


def _run_job(job: ManifestJob, out: str, tol: float, rtol: float, force: bool,
             worker: bool = False) -> str:
    """One job: ``geomcore probe`` into OUT/<name>; returns the job's name."""
    from geomcore import cli

    if worker:
        from geomcore.compile_cache import enable_compilation_cache

        enable_compilation_cache()
    try:
        cli.run_probe(_namespace(job, Path(out), tol, rtol, force), out=io.StringIO())
    except ValueError as exc:
        raise ValueError(f"job {job.name} (manifest line {job.line}): {exc}") from None
    return job.name


def _summary_row(job: ManifestJob, out: Path) -> dict[str, Any]:
    from geomcore import cli
    from geomcore import io as gio

    res = gio.read_json(out / job.name / cli.RESULTS)
    vec = [v for v in res.get("distance_vector") or [] if v is not None]
    test = res.get("test")
    return {
        "name": job.name,
        "n_points": res["n_points"],
        "n_features": res["n_features"],
        "n_labels": res["n_labels"],
        "n_clusters": res["n_clusters"],
        "is_linear": res["is_linear"],
        "n_overlapping_cluster_pairs": res["n_overlapping_cluster_pairs"],
        "min_label_distance": min(vec) if vec else None,
        "test_points": test["n_points"] if test else None,
        "accuracy": res.get("accuracy"),
        "results": f"{job.name}/{cli.RESULTS}",
    }


def _write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    from geomcore import cli
    from geomcore import io as gio

    gio.write_json(out / "summary.json", {"columns": list(SUMMARY_COLUMNS), "jobs": rows})
    lines = [",".join(SUMMARY_COLUMNS)]
    lines += [",".join("" if r[c] is None else cli._csv_field(r[c]) for c in SUMMARY_COLUMNS)
              for r in rows]
    gio.write_text_atomic(out / "summary.csv", "\n".join(lines) + "\n")


def probe_many(
    manifest: str | Path,
    out: str | Path,
    *,
    executor: str = "local",
    ray_address: str | None = None,
    tol: float = 1e-6,
    rtol: float = 1e-4,
    force: bool = False,
    cpus_per_job: float = 1.0,
    on_done: Any = None,
) -> list[dict[str, Any]]:
    """Run every job of ``manifest`` into ``out`` (see the module docstring).

    Args:
      executor: ``"local"`` (one job after another, here) or ``"ray"`` (each
        job a Ray task asking for ``cpus_per_job`` CPUs; ``ray_address`` a
        running cluster, else ``$RAY_ADDRESS`` or a new local one).
      tol, rtol: as in ``geomcore probe``.
      force: recompute finished jobs too.
      on_done: optional ``f(name, _)`` called as each computed job finishes.

    Returns:
      The summary rows (as in summary.json), in manifest order.
    """
    from geomcore._validate import check_tolerances
    from geomcore.executors import Job, make_executor, require_ray

    check_tolerances(tol, rtol, names=("--tol", "--rtol"))
    if not cpus_per_job > 0:
        raise ValueError(f"--cpus-per-job must be > 0; got {cpus_per_job}.")
    if executor == "ray":
        require_ray()
    jobs = read_manifest(manifest)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory.")
    out.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if force or not _finished(j, out, tol, rtol)]
    ex = make_executor(executor, address=ray_address)
    remote = executor != "local"
    ex.run(
        [Job(j.name, functools.partial(_run_job, j, str(out), tol, rtol, force, remote),
             num_cpus=cpus_per_job) for j in todo],
        on_done=on_done,
    )
    rows = [_summary_row(j, out) for j in jobs]
    _write_summary(out, rows)
    return rows

"""`geomcore probe-many`: a manifest of probe jobs, locally and on a local Ray cluster.

Each job's files must be those of `geomcore probe` run alone on the same inputs
(the independent result); the Ray executor must write the same files as the
local one; a rerun computes only the missing jobs; bad lines name their line.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from geomcore import cli
from geomcore.probe_many import SUMMARY_COLUMNS, probe_many, read_manifest

FILES = ("clusters.txt", "dis.txt", "prediction.txt")


@pytest.fixture
def manifest(tmp_path) -> Path:
    """Three jobs: two with a test set, one without; one not linearly separable."""
    rng = np.random.default_rng(7)
    lines = ["# three jobs", ""]
    for j, gap in enumerate((4.0, 1.0, 6.0)):
        X = np.vstack([rng.normal(size=(40, 5)) + gap * k for k in range(3)])
        np.save(tmp_path / f"X{j}.npy", X)
        (tmp_path / f"y{j}.txt").write_text("".join(f"L{k}\n" for k in range(3) for _ in range(40)))
        rec = {"name": f"job{j}", "train": f"X{j}.npy", "train_labels": f"y{j}.txt"}
        if j != 2:
            P = np.vstack([rng.normal(size=(10, 5)) + gap * k for k in range(3)])
            np.save(tmp_path / f"P{j}.npy", P)
            labels = "".join(f"L{k}\n" for k in range(3) for _ in range(10))
            (tmp_path / f"t{j}.txt").write_text(labels)
            rec.update(test=f"P{j}.npy", test_labels=f"t{j}.txt")
        lines.append(json.dumps(rec))
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _strip(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "timing"}


def _job_files(out: Path, name: str) -> dict:
    d = out / name
    files = {f: (d / f).read_bytes() for f in FILES if (d / f).exists()}
    files["results"] = _strip(json.loads((d / "results.json").read_text()))
    return files


def test_local_run_equals_geomcore_probe_per_job(manifest, tmp_path):
    out = tmp_path / "out"
    rows = probe_many(manifest, out)
    assert [r["name"] for r in rows] == ["job0", "job1", "job2"]
    for j, row in enumerate(rows):
        alone = tmp_path / f"alone{j}"
        argv = ["probe", "--train", str(tmp_path / f"X{j}.npy"),
                "--train-labels", str(tmp_path / f"y{j}.txt"), "--out", str(alone), "--quiet"]
        if j != 2:
            argv += ["--test", str(tmp_path / f"P{j}.npy"),
                     "--test-labels", str(tmp_path / f"t{j}.txt")]
        assert cli.main(argv) == 0
        got, ref = _job_files(out, f"job{j}"), _job_files(tmp_path, f"alone{j}")
        assert got == ref
        res = ref["results"]
        assert row["n_clusters"] == res["n_clusters"] and row["is_linear"] == res["is_linear"]
        assert row["accuracy"] == res.get("accuracy")
        assert row["min_label_distance"] == min(res["distance_vector"])
    assert rows[1]["is_linear"] is False and rows[1]["n_clusters"] > 3  # gap 1.0: overlapping
    summary = json.loads((out / "summary.json").read_text())
    assert summary["columns"] == list(SUMMARY_COLUMNS) and summary["jobs"] == rows
    csv = (out / "summary.csv").read_text().splitlines()
    assert csv[0] == ",".join(SUMMARY_COLUMNS) and len(csv) == 4
    assert csv[3].split(",")[SUMMARY_COLUMNS.index("accuracy")] == ""  # job2 has no test set


def test_rerun_computes_only_missing_jobs(manifest, tmp_path, monkeypatch):
    out = tmp_path / "out"
    probe_many(manifest, out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("job[02]/*")}
    ref = _job_files(out, "job1")
    import shutil

    shutil.rmtree(out / "job1")
    calls = []
    real = cli.run_probe

    def spy(args, out=None):
        calls.append(Path(args.out).name)
        return real(args, out)

    monkeypatch.setattr(cli, "run_probe", spy)
    probe_many(manifest, out)
    assert calls == ["job1"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("job[02]/*")} == before
    assert _job_files(out, "job1") == ref


BAD = [
    ("{not json", "not a JSON object"),
    ('["a"]', "expected a JSON object"),
    ('{"name": "a", "train": "X0.npy", "train_labels": "y0.txt", "color": 1}', "unknown key"),
    ('{"name": "a", "train": "X0.npy"}', "missing 'train_labels'"),
    ('{"name": "a/b", "train": "X0.npy", "train_labels": "y0.txt"}', "folder name"),
    ('{"name": "a", "train": "X0.npy", "train_labels": "y0.txt", "test": "P0.npy"}',
     "go together"),
    ('{"name": "a", "train": "nope.npy", "train_labels": "y0.txt"}', "no such file"),
    ('{"name": "a", "train": 3, "train_labels": "y0.txt"}', "non-empty string"),
]


@pytest.mark.parametrize("line,message", BAD)
def test_bad_line_is_named(manifest, line, message):
    text = manifest.read_text() + line + "\n"
    manifest.write_text(text)
    n = len(text.splitlines())
    with pytest.raises(ValueError, match=message) as info:
        read_manifest(manifest)
    assert f"line {n}" in str(info.value)


def test_duplicate_name_and_empty_manifest(manifest, tmp_path):
    manifest.write_text(manifest.read_text() + manifest.read_text().splitlines()[2] + "\n")
    with pytest.raises(ValueError, match="already used on line 3"):
        read_manifest(manifest)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="lists no jobs"):
        read_manifest(empty)


def test_cli_bad_manifest_is_one_line(manifest, tmp_path, capsys):
    manifest.write_text(manifest.read_text() + "{oops\n")
    assert cli.main(["probe-many", str(manifest), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 6" in err[0]


def test_ray_executor_without_ray_names_the_extra(manifest, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = ["probe-many", str(manifest), "--out", str(tmp_path / "o"), "--executor", "ray"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[cluster]"' in err[0]
    assert not (tmp_path / "o").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_ray_address_is_one_line(manifest, tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[cluster]')")
    argv = ["probe-many", str(manifest), "--out", str(tmp_path / "o"), "--executor", "ray",
            "--ray-address", f"127.0.0.1:{_free_port()}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Ray cluster" in err[0]
    argv = ["probe-many", str(manifest), "--out", str(tmp_path / "o"), "--ray-address", "x:1"]
    assert cli.main(argv) == 2
    assert "goes with --executor ray" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[cluster]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_equals_local(ray_cluster, manifest, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    rows_local = probe_many(manifest, local)
    rows_ray = probe_many(manifest, on_ray, executor="ray")
    assert rows_ray == rows_local
    for j in range(3):
        assert _job_files(on_ray, f"job{j}") == _job_files(local, f"job{j}")
    assert (on_ray / "summary.csv").read_bytes() == (local / "summary.csv").read_bytes()
    # A rerun on Ray finds everything finished and submits nothing.
    before = {p: p.stat().st_mtime_ns for p in on_ray.glob("job*/*")}
    assert probe_many(manifest, on_ray, executor="ray") == rows_local
    assert {p: p.stat().st_mtime_ns for p in on_ray.glob("job*/*")} == before


def test_request_beyond_the_cluster_is_refused(ray_cluster, manifest, tmp_path):
    with pytest.raises(ValueError, match="asks for 3 CPU"):
        probe_many(manifest, tmp_path / "o", executor="ray", cpus_per_job=3)


def test_import_geomcore_does_not_load_ray():
    import subprocess

    code = "import sys, geomcore, geomcore.cli; assert 'ray' not in sys.modules, 'ray loaded'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]

"""`finetune study --executor ray`: the smoke study on a local 2-CPU Ray cluster.

One local study (the independent result) and one Ray study of the same plan
run per module; their results.json and unit files must be equal but for the
timing fields. Then a unit's worker is killed mid-job (``os._exit`` in the
worker, once, controlled by a marker file): without retries the failure is
reported and the rerun completes only what is missing; with a retry the run
itself completes. Both end with the local study's results and one file per unit.

Each Ray task gets 1 CPU, so its torch runs one thread; torch's float32 sums
depend on the thread count, so the local reference runs with one thread too.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[cluster]')")
torch = pytest.importorskip("torch")

from finetune.__main__ import main  # noqa: E402
from finetune.study import PRESETS, StudyPlan, StudyRunner, unit_names  # noqa: E402
from geomcore.executors import JobsFailed, RayExecutor  # noqa: E402
from tests.finetune.tiny import build_tiny_encoder  # noqa: E402

TASKS = ("ps-fxn",)  # units: probes before/after, fine-tuning, cross_untuned, cross_ps-fxn
HERE = Path(__file__).resolve().parent
TIMING = {"seconds_per_layer", "probe_fraction", "created", "machine"}


def _timing(key: str) -> bool:
    """Wall or CPU times and rates (``seconds``, ``train_cpu_seconds``, ...)."""
    return key in TIMING or key.endswith("seconds") or key.endswith("per_second")


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not _timing(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _results(out: Path) -> dict:
    return _strip(json.loads((out / "results.json").read_text()))


def _units(out: Path) -> dict:
    return {p.name: _strip(json.loads(p.read_text())) for p in (out / "units").iterdir()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("study-ray")
    model, tok = build_tiny_encoder(root)
    model_dir = root / "tiny-bert"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = Path(os.environ.get("FINETUNE_DATA_DIR") or HERE.parents[1].parent / "shared" / "data")
    assert data.is_dir(), f"real corpora not found at {data}; set FINETUNE_DATA_DIR"

    def argv(out: Path, *extra: str) -> list[str]:
        return ["study", "--model", str(model_dir), "--tasks", ",".join(TASKS), "--preset",
                "smoke", "--data-dir", str(data), "--out", str(out), "--no-progress", *extra]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv(root / "local")) == 0
    finally:
        torch.set_num_threads(threads)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    assert main(argv(root / "ray", "--executor", "ray")) == 0
    yield root, argv, model_dir, data
    ray.shutdown()


def test_ray_study_equals_local(setup):
    root, *_ = setup
    local, on_ray = root / "local", root / "ray"
    assert sorted(_units(on_ray)) == sorted(f"{u}.json" for u in unit_names(TASKS))
    assert _units(on_ray) == _units(local)
    assert _results(on_ray) == _results(local)
    assert _results(local)["missing_units"] == []


class CrashOnce(StudyRunner):
    """Kills its worker process in the middle of the job ``probe_<task>_after`` (after the
    MLP unit was written, before the clusters unit), the first time only."""

    def _clusters(self, task, stage, emb):
        marker = Path(self.out).parent / "crashed-once"
        if stage == "after" and not marker.exists():
            marker.write_text("crashed\n")
            os._exit(1)  # the worker dies: no exception, no cleanup
        return super()._clusters(task, stage, emb)


def _interrupted_copy(root: Path, dest: Path) -> Path:
    """The finished Ray study with the tuned model's probe units and the report removed."""
    shutil.copytree(root / "ray", dest)
    for name in ("mlp_ps-fxn_after", "clusters_ps-fxn_after", "cross_ps-fxn"):
        (dest / "units" / f"{name}.json").unlink()
    (dest / "results.json").unlink()
    return dest


def _runner(out: Path, model_dir: Path, data: Path) -> CrashOnce:
    # The workers cannot import this test module: ship the subclass by value (with
    # Ray's own cloudpickle, the one that pickles task arguments).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    plan = StudyPlan(model=str(model_dir), tasks=TASKS, preset=PRESETS["smoke"])
    return CrashOnce(plan, out, data_dir=data, progress=False)


def _no_leftovers(out: Path) -> None:
    names = sorted(p.name for p in (out / "units").iterdir())
    assert names == sorted(f"{u}.json" for u in unit_names(TASKS))  # one file per unit


def test_killed_worker_is_reported_and_the_rerun_does_the_rest(setup, tmp_path):
    root, argv, model_dir, data = setup
    out = _interrupted_copy(root, tmp_path / "study")
    with pytest.raises(JobsFailed) as info:
        _runner(out, model_dir, data).run(RayExecutor(max_retries=0))
    assert list(info.value.failed) == ["probe_ps-fxn_after"]
    assert "died" in info.value.failed["probe_ps-fxn_after"]
    assert (tmp_path / "crashed-once").exists()
    # The unit written before the crash is whole; the one being computed is absent;
    # the independent job finished.
    written = {p.name for p in (out / "units").iterdir()}
    assert "mlp_ps-fxn_after.json" in written and "cross_ps-fxn.json" in written
    assert "clusters_ps-fxn_after.json" not in written
    json.loads((out / "units" / "mlp_ps-fxn_after.json").read_text())
    before = {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()}
    assert main(argv(out, "--executor", "ray")) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "units").iterdir()}
    assert {k: after[k] for k in before} == before  # nothing finished was recomputed
    _no_leftovers(out)
    assert _units(out) == _units(root / "local")
    assert _results(out) == _results(root / "local")


def test_killed_worker_is_retried(setup, tmp_path):
    root, _, model_dir, data = setup
    out = _interrupted_copy(root, tmp_path / "study")
    _runner(out, model_dir, data).run(RayExecutor(max_retries=1))
    assert (tmp_path / "crashed-once").exists()  # the first attempt died
    _no_leftovers(out)
    assert _units(out) == _units(root / "local")
    assert _results(out) == _results(root / "local")


def test_ray_without_ray_names_the_extra(setup, tmp_path, monkeypatch, capsys):
    _, argv, _, _ = setup
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(argv(tmp_path / "x", "--executor", "ray")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[cluster]"' in err[0]
    assert not (tmp_path / "x").exists()


def test_unreachable_ray_address_is_one_line(setup, tmp_path, capsys):
    import socket

    _, argv, _, _ = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(argv(tmp_path / "x", "--executor", "ray", "--ray-address",
                     f"127.0.0.1:{port}")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Ray cluster" in err[0]

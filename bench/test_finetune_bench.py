"""Fine-tuning throughput and the cost of the streamed geometry, on real corpora.

Two benchmarks per task (PS-role, POS), each a real ``finetune.train.train``
run of the default model (``FINETUNE_BENCH_MODEL`` to change it) on the
corpora under ``$FINETUNE_DATA_DIR`` (default <repo>/../shared/data):

* ``test_finetune_throughput``: ``FINETUNE_BENCH_STEPS`` optimizer steps
  (default 8) without geometry; reports training sentences per second of
  optimizer-step time. Anchor, measured in the same run on the same
  sentences: forward-only (inference) sentences per second; the ratio
  training / inference is what carries over between machines.
* ``test_streaming_overhead``: ``FINETUNE_BENCH_STEPS`` steps with a probe
  (both splits embedded at every layer + geomcore) at step 0 and at the last
  step; reports seconds per step and per probe (cold and warm), the short
  run's probing fraction, and the fraction they imply for the README's run
  (full schedule, probe every ``FINETUNE_BENCH_RUN_PROBE_EVERY`` = 40 steps).
  The second probe starts its solver from the first's supports, as every
  probe after the first does in a run; with ``FINETUNE_BENCH_STEPS=40`` the
  two are as far apart as the README run's probes. The persistent
  compilation cache is on, as in the ``finetune`` command; the record says
  how full it was (``GEOMCORE_COMPILATION_CACHE=0`` turns it off).
  ``FINETUNE_BENCH_MAX_TRAIN_EXAMPLES`` / ``FINETUNE_BENCH_MAX_TEST_EXAMPLES``
  slice the corpora as ``--max-train-examples`` / ``--max-test-examples`` do
  (the study's ``quick`` preset uses POS 4000 / 1000).

Each run checks what it produced (finite losses, a complete and well-formed
geometry log). Run:

    FINETUNE_DATA_DIR=../shared/data .venv/bin/python -m pytest \
        bench/test_finetune_bench.py --benchmark-enable -s --benchmark-json=bench_finetune.json

Numbers go to stdout and to each benchmark's ``extra_info``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from finetune.config import TrainConfig
from finetune.embed import encode, model_max_length
from finetune.models import DEFAULT_MODEL, load_encoder
from finetune.tasks import load_task
from finetune.train import train

REPO = Path(__file__).resolve().parents[1]
TASKS = ["ps-role", "pos"]


def data_dir() -> Path:
    path = Path(os.environ.get("FINETUNE_DATA_DIR") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        pytest.fail(f"corpora not found at {path}; set FINETUNE_DATA_DIR")
    return path


def _model() -> str:
    return os.environ.get("FINETUNE_BENCH_MODEL", DEFAULT_MODEL)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def forward_sentences_per_second(task: str, n_batches: int, batch_size: int = 32) -> float:
    """Anchor: inference-only sentences/s of the same model on the task's first sentences."""
    model, tok = load_encoder(_model())
    model.eval()
    data = load_task(task, "train", data_dir())
    sents = [list(s) for s in data.sentences[: n_batches * batch_size]]
    max_len = model_max_length(model, tok)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(sents), batch_size):
            enc = encode(tok, sents[i : i + batch_size], max_length=max_len)
            model(**enc.inputs)
    return len(sents) / (time.perf_counter() - t0)


@pytest.mark.parametrize("task", TASKS)
def test_finetune_throughput(benchmark, task, tmp_path):
    steps = int(os.environ.get("FINETUNE_BENCH_STEPS", "8"))
    cfg = TrainConfig(task=task, out_dir=tmp_path / "run", model=_model(), data_dir=data_dir(),
                      max_steps=steps, geometry=False, progress=False, save_model=False)
    out = []
    benchmark.pedantic(lambda: out.append(train(cfg)), rounds=1, iterations=1)
    res = out[-1]
    assert res.step == steps and not res.completed
    assert res.train_sentences_per_second > 0
    anchor = forward_sentences_per_second(task, n_batches=min(steps, 4))
    info = {
        "task": task,
        "steps": steps,
        "max_train_examples": cfg.max_train_examples,
        "max_test_examples": cfg.max_test_examples,
        "train_sentences_per_second": res.train_sentences_per_second,
        "forward_sentences_per_second": anchor,
        "train_over_forward": res.train_sentences_per_second / anchor,
        "torch_threads": torch.get_num_threads(),
    }
    benchmark.extra_info.update(info)
    print(f"\n{task}: fine-tuning {info['train_sentences_per_second']:.2f} sentences/s, "
          f"inference {anchor:.2f} sentences/s, ratio {info['train_over_forward']:.3f}")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def run_probe_steps(total_steps: int, every: int) -> list[int]:
    """Steps at which a run of ``total_steps`` with ``--probe-every every`` probes."""
    return sorted({0, total_steps} | (set(range(every, total_steps, every)) if every else set()))


@pytest.mark.parametrize("task", TASKS)
def test_streaming_overhead(benchmark, task, tmp_path):
    """Probe cost against training cost, and the overhead of the README's run.

    A probe's cost does not depend on how long the run is, so the overhead
    fraction of a run is set by how many optimizer steps lie between probes.
    Running the README's command (10 epochs, ``--probe-every 40``) takes hours
    here, so this benchmark runs its first ``FINETUNE_BENCH_STEPS`` steps
    (default 8) with a probe at step 0 (cold: includes JAX's compiles in a
    fresh process) and at the last step (warm), measures seconds per optimizer
    step and per probe, and reports both

    * ``probe_fraction_measured``: the short run's own fraction (2 probes over
      a few steps: far denser probing than any real run), and
    * ``probe_fraction_projected``: the fraction of the full schedule with
      probes every ``FINETUNE_BENCH_RUN_PROBE_EVERY`` steps (default 40, the
      README's command) = probes / (steps * step_s + probes), where probes =
      cold probe + (n_probes - 1) * warm probe, all measured here.
    """
    from geomcore.compile_cache import enable_compilation_cache

    # As the finetune command does: JAX's persistent compilation cache, so
    # the cold probe's compiles depend on whether an earlier process filled it
    # (recorded below; GEOMCORE_COMPILATION_CACHE=0 measures without it).
    cache = enable_compilation_cache()
    cache_entries = sum(1 for p in cache.rglob("*") if p.is_file()) if cache else 0
    steps = int(os.environ.get("FINETUNE_BENCH_STEPS", "8"))
    run_every = int(os.environ.get("FINETUNE_BENCH_RUN_PROBE_EVERY", "40"))
    cfg = TrainConfig(task=task, out_dir=tmp_path / "run", model=_model(), data_dir=data_dir(),
                      max_steps=steps, probe_every=steps, progress=False, save_model=False,
                      max_train_examples=_env_int("FINETUNE_BENCH_MAX_TRAIN_EXAMPLES"),
                      max_test_examples=_env_int("FINETUNE_BENCH_MAX_TEST_EXAMPLES"))
    out = []
    benchmark.pedantic(lambda: out.append(train(cfg)), rounds=1, iterations=1)
    res = out[-1]
    assert res.step == steps
    geo = _lines(tmp_path / "run" / "geometry.jsonl")
    header, recs = geo[0], geo[1:]
    n_layers = header["layers"]
    assert sorted({r["step"] for r in recs}) == [0, steps]
    assert len(recs) == 2 * 2 * n_layers
    for r in recs:
        M = np.asarray(r["label_distances"], dtype=float)
        assert np.allclose(M, M.T) and np.all(np.diag(M) == 0) and np.all(M >= 0)
    metrics = _lines(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, steps]
    assert all(m["train_loss"] is None or math.isfinite(m["train_loss"]) for m in metrics)
    cold, warm = (float(m["probe_seconds"]) for m in metrics)
    step_s = res.train_seconds / steps
    n_run_probes = len(run_probe_steps(res.total_steps, run_every))
    run_probe_s = cold + (n_run_probes - 1) * warm
    projected = run_probe_s / (res.total_steps * step_s + run_probe_s)

    def per_layer(step, split, key):
        return {str(r["layer"]): round(float(r[key]), 2) for r in recs
                if r["step"] == step and r["split"] == split}

    info = {
        "task": task,
        "steps": steps,
        "max_train_examples": cfg.max_train_examples,
        "max_test_examples": cfg.max_test_examples,
        "wall_seconds": res.wall_seconds,
        "train_seconds": res.train_seconds,
        "seconds_per_step": step_s,
        "probe_seconds_cold": cold,
        "probe_seconds_warm": warm,
        "embed_seconds_warm": {split: float(next(r["embed_seconds"] for r in recs
                                              if r["step"] == steps and r["split"] == split))
                               for split in ("train", "test")},
        "geometry_seconds_warm": {split: float(next(r["geometry_seconds"] for r in recs
                                                 if r["step"] == steps and r["split"] == split))
                                  for split in ("train", "test")},
        "geometry_seconds_cold": {split: float(next(r["geometry_seconds"] for r in recs
                                                 if r["step"] == 0 and r["split"] == split))
                                  for split in ("train", "test")},
        "probe_fraction_measured": res.probe_fraction,
        "run_total_steps": res.total_steps,
        "run_probe_every": run_every,
        "run_probes": n_run_probes,
        "probe_fraction_projected": projected,
        "train_sentences_per_second": res.train_sentences_per_second,
        "torch_threads": torch.get_num_threads(),
        "compilation_cache": str(cache) if cache else None,
        "compilation_cache_entries_before": cache_entries,
        "loadavg": (Path("/proc/loadavg").read_text().split()[:3]
                    if Path("/proc/loadavg").exists() else None),
    }
    benchmark.extra_info.update(info)
    print(f"\nSTREAM_BENCH {json.dumps(info)}")
    print(f"\n{task}: {steps} steps at {step_s:.1f} s/step "
          f"({res.train_sentences_per_second:.2f} sentences/s), probe {cold:.1f} s cold / "
          f"{warm:.1f} s warm; this run {100 * res.probe_fraction:.1f}% probing; the full run "
          f"({res.total_steps} steps, probe every {run_every}: {n_run_probes} probes) "
          f"{100 * projected:.1f}%")

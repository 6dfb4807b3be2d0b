"""Fine-tuning throughput and the cost of the streamed geometry, on real corpora.

Two benchmarks per task (PS-role, POS), each a real ``finetune.train.train``
run of the default model (``FINETUNE_BENCH_MODEL`` to change it) on the
corpora under ``$FINETUNE_DATA_DIR`` (default <repo>/../shared/data):

* ``test_finetune_throughput``: ``FINETUNE_BENCH_STEPS`` optimizer steps
  (default 8) without geometry; reports training sentences per second of
  optimizer-step time. Anchor, measured in the same run on the same
  sentences: forward-only (inference) sentences per second; the ratio
  training / inference is what carries over between machines.
* ``test_streaming_overhead``: one epoch with the geometry streamed every
  ``FINETUNE_BENCH_PROBE_EVERY`` steps (default 4; a probe also runs at step 0
  and after the last step); reports the fraction of the run's wall time spent
  probing (embedding both splits at every layer + geomcore per layer).

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
        "train_sentences_per_second": res.train_sentences_per_second,
        "forward_sentences_per_second": anchor,
        "train_over_forward": res.train_sentences_per_second / anchor,
        "torch_threads": torch.get_num_threads(),
    }
    benchmark.extra_info.update(info)
    print(f"\n{task}: fine-tuning {info['train_sentences_per_second']:.2f} sentences/s, "
          f"inference {anchor:.2f} sentences/s, ratio {info['train_over_forward']:.3f}")


@pytest.mark.parametrize("task", TASKS)
def test_streaming_overhead(benchmark, task, tmp_path):
    k = int(os.environ.get("FINETUNE_BENCH_PROBE_EVERY", "4"))
    cfg = TrainConfig(task=task, out_dir=tmp_path / "run", model=_model(), data_dir=data_dir(),
                      epochs=1, probe_every=k, progress=False, save_model=False)
    out = []
    benchmark.pedantic(lambda: out.append(train(cfg)), rounds=1, iterations=1)
    res = out[-1]
    assert res.completed
    geo = _lines(tmp_path / "run" / "geometry.jsonl")
    header, recs = geo[0], geo[1:]
    n_layers = header["layers"]
    probe_steps = sorted({0, res.total_steps} | set(range(k, res.total_steps, k)) if k else
                         {0, res.total_steps})
    assert sorted({r["step"] for r in recs}) == probe_steps
    assert len(recs) == len(probe_steps) * 2 * n_layers
    for r in recs:
        M = np.asarray(r["label_distances"], dtype=float)
        assert np.allclose(M, M.T) and np.all(np.diag(M) == 0) and np.all(M >= 0)
    metrics = _lines(tmp_path / "run" / "metrics.jsonl")
    assert all(m["train_loss"] is None or math.isfinite(m["train_loss"]) for m in metrics)
    info = {
        "task": task,
        "probe_every": k,
        "steps": res.total_steps,
        "probes": len(probe_steps),
        "wall_seconds": res.wall_seconds,
        "probe_seconds": res.probe_seconds,
        "probe_fraction": res.probe_fraction,
        "seconds_per_probe": res.probe_seconds / len(probe_steps),
        "geometry_seconds_by_layer": {
            str(layer): float(np.mean([r["seconds"] for r in recs if r["layer"] == layer]))
            for layer in range(n_layers)
        },
        "train_sentences_per_second": res.train_sentences_per_second,
        "test_accuracy": res.test_accuracy,
    }
    benchmark.extra_info.update(info)
    print(f"\n{task}: {len(probe_steps)} probes over {res.total_steps} steps, "
          f"{res.probe_seconds:.1f} s of {res.wall_seconds:.1f} s probing "
          f"({100 * res.probe_fraction:.1f}%), {info['seconds_per_probe']:.1f} s per probe")

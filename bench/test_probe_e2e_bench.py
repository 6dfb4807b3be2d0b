"""End-to-end ``geomcore probe`` on real per-layer vectors of the default model.

Workloads (train split as train, test split as test):
  ps-role, ps-fxn  STREUSLE dev/test single-token prepositions (~400 each)
  pos              PUD POS (about 17k words)

Two benchmarks per task: one layer (``GEOMCORE_BENCH_LAYER``, default 6), then
all 7 layers (0..6) in sequence. Each run goes through ``geomcore.cli.main`` exactly
as a user would, and the same run checks what it produced:
  * clusters are label-pure and results.json agrees with clusters.txt / dis.txt;
  * the accuracy in results.json equals the one recomputed from prediction.txt;
  * DirectProbe's promise: a few different-label cluster pairs (the smallest) are
    certified separable by HiGHS (tests/ground_truth.lp_separable).

Vectors come from ``$GEOMCORE_BENCH_CACHE`` (default <repo>/cache), built by
``python -m bench.extract_layers``. Run:

    .venv/bin/python -m pytest bench/test_probe_e2e_bench.py --benchmark-enable -s \
        --benchmark-json=bench_probe.json

Wall time, clusters and accuracy per set are printed and stored in each
benchmark's ``extra_info``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cache import inputs as _inputs
from geomcore import io as gio
from geomcore.cli import main
from tests.ground_truth import lp_separable

TASKS = ["ps-role", "ps-fxn", "pos"]
LAYERS = list(range(7))


def probe_once(task: str, layer: int, out: Path) -> dict:
    """Run `geomcore probe` on one task and layer; check its output; return the summary."""
    X, y = _inputs(task, "train", layer)
    P, t = _inputs(task, "test", layer)
    t0 = time.perf_counter()
    rc = main(
        [
            "probe",
            "--train",
            str(X),
            "--train-labels",
            str(y),
            "--test",
            str(P),
            "--test-labels",
            str(t),
            "--out",
            str(out),
            "--quiet",
            "--force",
        ]
    )
    wall = time.perf_counter() - t0
    assert rc == 0, f"geomcore probe failed on {task} L{layer}"
    res = json.loads((out / "results.json").read_text())
    _check(res, out, X, y)
    return {
        "task": task,
        "layer": layer,
        "n_points": res["n_points"],
        "n_labels": res["n_labels"],
        "n_clusters": res["n_clusters"],
        "is_linear": res["is_linear"],
        "accuracy": res["accuracy"],
        "n_test": res["test"]["n_points"],
        "wall_s": wall,
        "probe_s": res["timing"]["probe_s"],
        "measures_s": res["timing"]["measures_s"],
        "predict_s": res["timing"]["predict_s"],
    }


def _check(res: dict, out: Path, X_path: Path, y_path: Path) -> None:
    labels = res["labels"]
    y = gio.read_labels(y_path)
    clusters = np.asarray(res["clusters"])
    np.testing.assert_array_equal(gio.read_clusters(out / "clusters.txt"), clusters)
    cluster_label = res["cluster_label"]
    assert len(cluster_label) == res["n_clusters"] == clusters.max() + 1
    # label purity: every point's label is its cluster's label
    assert all(np.asarray(cluster_label)[clusters] == y), "a cluster mixes labels"
    assert sum(res["n_clusters_per_label"]) == res["n_clusters"]
    assert len(res["distance_vector"]) == len(labels) * (len(labels) - 1) // 2
    # accuracy recomputed from prediction.txt (nearest cluster's label vs gold)
    pred = gio.read_predictions(out / "prediction.txt")
    acc = np.mean([ranked[0][1] == gold for gold, ranked in pred])
    assert res["accuracy"] == pytest.approx(acc, abs=1e-12)
    # DirectProbe's guarantee, checked by HiGHS on the 3 smallest different-label pairs
    X = gio.read_embeddings(X_path)
    dis = gio.read_dis(out / "dis.txt")
    sizes = np.bincount(clusters)
    dis.sort(key=lambda r: sizes[r[0]] + sizes[r[2]])
    for i, _, j, _, _ in dis[:3]:
        assert lp_separable(X[clusters == i], X[clusters == j]), f"clusters {i} and {j} overlap"


def _print_table(rows: list[dict]) -> None:
    print()
    print(
        f"{'task':8} {'layer':>5} {'points':>7} {'labels':>6} {'clusters':>8} {'linear':>6} "
        f"{'test':>6} {'accuracy':>8} {'wall s':>8} {'probe s':>8} {'measure s':>9} "
        f"{'predict s':>9}"
    )
    for r in rows:
        print(
            f"{r['task']:8} {r['layer']:>5} {r['n_points']:>7} {r['n_labels']:>6} "
            f"{r['n_clusters']:>8} "
            f"{str(r['is_linear']):>6} {r['n_test']:>6} {r['accuracy']:>8.4f} {r['wall_s']:>8.1f} "
            f"{r['probe_s']:>8.1f} {r['measures_s']:>9.1f} {r['predict_s']:>9.1f}"
        )


@pytest.mark.parametrize("task", TASKS)
def test_probe_one_layer(benchmark, task, tmp_path):
    layer = int(os.environ.get("GEOMCORE_BENCH_LAYER", "6"))
    _inputs(task, "train", layer)  # fail early, with the command, if the cache is missing
    _inputs(task, "test", layer)
    rows = []
    benchmark.pedantic(
        lambda: rows.append(probe_once(task, layer, tmp_path / "out")), rounds=1, iterations=1
    )
    benchmark.extra_info.update(rows[-1])
    _print_table(rows)


@pytest.mark.parametrize("task", TASKS)
def test_probe_all_layers(benchmark, task, tmp_path):
    for layer in LAYERS:
        _inputs(task, "train", layer)
        _inputs(task, "test", layer)
    rows: list[dict] = []

    def run():
        for layer in LAYERS:
            rows.append(probe_once(task, layer, tmp_path / f"L{layer}"))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["layers"] = rows
    _print_table(rows)

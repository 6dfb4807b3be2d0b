"""The pair axis across processes (jax.distributed on localhost): bitwise one process's result.

Two processes are started with ``jax.distributed.initialize`` on a free local
port (CPU collectives over gloo); each computes label distances, hull distances
and overlap decisions of a real embedding set (the default model's layer 6 on
the first 60 PUD sentences, POS labels) with its share of the pairs, and every
process must end with exactly the single-process arrays of the public functions.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import geomcore
import geomcore.multiprocess as gmp
from geomcore.results import PAIR_FIELDS

REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import geomcore.multiprocess as gmp

    gmp.initialize()          # from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID
    import jax

    data = np.load(sys.argv[1])
    X, y, groups, pairs = data["X"], data["y"], data["groups"], data["pairs"]
    ld = gmp.distributed_label_distances(X, y)
    hd = gmp.distributed_hull_distances(X, groups, pairs)
    ov = gmp.distributed_overlaps(X, groups, pairs)
    out = {"process": jax.process_index(), "count": jax.process_count(),
           "labels": ld.labels, "matrix": ld.matrix, "separable": ld.separable,
           "overlaps": ov, "n_escalated": ld.results.n_escalated,
           "support_ia": np.concatenate([s[0] for s in ld.supports]),
           "support_a": np.concatenate([s[1] for s in ld.supports])}
    for f in %r:
        out["ld_" + f] = getattr(ld.results, f)
        out["hd_" + f] = getattr(hd, f)
    np.savez(sys.argv[2], **out)
    """
    % (tuple(PAIR_FIELDS),)
)


@pytest.fixture(scope="module")
def pud_pos_layer6(tmp_path_factory):
    """The default model's layer 6 on the first 60 PUD sentences, POS labels (real vectors)."""
    pytest.importorskip("torch")
    from finetune.embed import embed_layers
    from finetune.models import DEFAULT_MODEL, load_encoder, resolve_model_path
    from finetune.tasks import load_task
    from tests.conftest import data_dir

    task = load_task("pos", "train", data_dir())
    model, tok = load_encoder(str(resolve_model_path(DEFAULT_MODEL)))
    keep = task.targets[:, 0] < 60
    sub = dataclasses.replace(task, sentences=task.sentences[:60], targets=task.targets[keep],
                              labels=tuple(np.asarray(task.labels)[keep]))
    X = embed_layers(model, tok, sub, batch_size=32, layers=[6], progress=False)[0].numpy()
    y = np.asarray(sub.labels)
    uniq, groups = np.unique(y, return_inverse=True)
    big = [k for k in range(uniq.size) if (groups == k).sum() >= 5][:6]
    pairs = np.array([(a, b) for i, a in enumerate(big) for b in big[i + 1:]])
    path = tmp_path_factory.mktemp("mp") / "pud_pos_L6.npz"
    np.savez(path, X=X, y=y, groups=groups, pairs=pairs)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(pud_pos_layer6, tmp_path_factory):
    """Run the worker in two jax.distributed processes; (inputs, one process's results, outputs)."""
    data = np.load(pud_pos_layer6)
    X, y, groups, pairs = data["X"], data["y"], data["groups"], data["pairs"]
    one = {"ld": geomcore.label_distances(X, y), "hd": geomcore.hull_distances(X, groups, pairs),
           "ov": geomcore.overlaps(X, groups, pairs)}
    tmp = tmp_path_factory.mktemp("mp-run")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                   JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid), JAX_PLATFORMS="cpu",
                   PYTHONPATH=str(REPO))
        env.pop("XLA_FLAGS", None)
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(pud_pos_layer6), str(tmp / f"p{pid}.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        try:
            out, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a jax.distributed worker did not finish in 120 s")
        assert p.returncode == 0, out[-3000:]
    got = [dict(np.load(tmp / f"p{pid}.npz")) for pid in range(2)]
    return (X, y, groups, pairs), one, got


def test_two_processes_equal_one_bitwise(two_processes):
    (X, y, groups, pairs), one, got = two_processes
    one_ld, one_hd, one_ov = one["ld"], one["hd"], one["ov"]
    assert one_ld.labels.size >= 10 and len(pairs) >= 10  # a real problem, many pairs each
    for pid in range(2):
        g = got[pid]
        assert int(g["process"]) == pid and int(g["count"]) == 2
        assert np.array_equal(g["labels"], one_ld.labels)
        # Bitwise: array_equal on float64 arrays, no tolerance.
        assert np.array_equal(g["matrix"], one_ld.matrix)
        assert np.array_equal(g["separable"], one_ld.separable)
        assert np.array_equal(g["overlaps"], one_ov)
        assert int(g["n_escalated"]) == one_ld.results.n_escalated
        for f in PAIR_FIELDS:  # certificates (lower, b) included
            assert np.array_equal(g["ld_" + f], getattr(one_ld.results, f)), f
            assert np.array_equal(g["hd_" + f], getattr(one_hd, f)), f
        assert np.array_equal(g["support_ia"], np.concatenate([s[0] for s in one_ld.supports]))
        assert np.array_equal(g["support_a"], np.concatenate([s[1] for s in one_ld.supports]))
    # The share is strided and covers every pair once.
    m = len(pairs)
    both = np.sort(np.concatenate([gmp.process_share(m, p, 2) for p in range(2)]))
    assert np.array_equal(both, np.arange(m))


def test_one_process_is_the_public_function(rng):
    X = np.vstack([rng.normal(size=(40, 5)) + 3 * k for k in range(4)])
    y = np.repeat(list("abcd"), 40)
    a = gmp.distributed_label_distances(X, y)
    b = geomcore.label_distances(X, y)
    assert np.array_equal(a.matrix, b.matrix)
    for f in PAIR_FIELDS:
        assert np.array_equal(getattr(a.results, f), getattr(b.results, f)), f


def test_device_path_is_refused():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="host path only"):
        gmp.distributed_hull_distances(X, [0, 0, 1, 1], [[0, 1]], path="device")
    with pytest.raises(ValueError, match=r"shape \(m, 2\)"):
        gmp.distributed_overlaps(X, [0, 0, 1, 1], [0, 1])

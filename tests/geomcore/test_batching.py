"""Batching changes nothing; bucketed shapes keep compiles few; sharding is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

import geomcore
from geomcore.solvers.nearest_point import solve_padded
from geomcore.solvers.params import DeviceParams, EngineParams
from geomcore.solvers.router import solve_pairs
from tests.ground_truth import lp_separable

REPO = Path(__file__).resolve().parents[2]


def test_second_call_in_same_bucket_does_not_recompile(rng):
    # The device path's shapes: small pairs would go to the batched small-pair
    # solver (no compiles), so it is switched off; one round per call, because
    # how many pairs are left for a second round (and so the batch shape of
    # that round) depends on the data, not on the buckets under test. Every
    # set fits its first working set, so one round certifies.
    params = EngineParams(path="device", small_max=0, device=DeviceParams(round_iter=20000))

    # Sets of 17..32 points fit one working-set bucket (K = 32); 3 pairs pad to 4.
    def run(sizes):
        sets = [rng.normal(size=(n, 13)) + 0.8 * k for k, n in enumerate(sizes)]
        return solve_pairs(sets, np.array([[0, 1], [1, 2], [0, 2]]), params=params)

    start = solve_padded._cache_size()
    first = run([20, 30, 25])
    compiled = solve_padded._cache_size()
    assert compiled == start + 1  # the first call did iterate, in one shape
    assert first.iterations.max() > 0
    second = run([18, 27, 31])  # other sizes, same buckets
    assert second.iterations.max() > 0
    assert solve_padded._cache_size() == compiled


def test_loop_equals_batch_decisions(rng):
    sizes = rng.integers(1, 60, size=9)
    X = np.vstack([rng.normal(size=(n, 5)) + 2 * rng.normal(size=5) for n in sizes])
    g = np.repeat(np.arange(9), sizes)
    iu, ju = np.triu_indices(9, 1)
    pairs = np.stack([iu, ju], 1)
    batch = geomcore.hull_distances(X, g, pairs)
    for k, (a, b) in enumerate(pairs):
        one = geomcore.hull_distance(X[g == a], X[g == b])
        assert one.separable == batch.separable[k] == lp_separable(X[g == a], X[g == b])
        assert abs(one.distance - batch.distance[k]) <= 2e-4 * one.distance + 1e-12


_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax
    import geomcore
    from geomcore.solvers.params import DeviceParams, EngineParams
    from geomcore.solvers.router import solve_pairs
    from geomcore.sharding import pair_sharding
    rng = np.random.default_rng(5)
    sizes = rng.integers(2, 70, size=8)
    X = np.vstack([rng.normal(size=(n, 6)) + 1.5 * rng.normal(size=6) for n in sizes])
    g = np.repeat(np.arange(8), sizes)
    iu, ju = np.triu_indices(8, 1)
    pairs = np.stack([iu, ju], 1)
    sets = [X[g == k] for k in range(8)]
    shard = pair_sharding() if sys.argv[1] == "shard" else None
    # The device path with tiny blocks (4 pairs at K = 8), so that the 28
    # pairs really spread over devices; small pairs would otherwise go to the
    # unsharded small-pair solver.
    dev = EngineParams(path="device", small_max=0, device=DeviceParams(batch_floats=384))
    r = solve_pairs(sets, pairs, sharding=shard, params=dev)
    # The same points moved a little, started from r's supports.
    X2 = 1.1 * X + 0.05 * rng.normal(size=X.shape)
    sets2 = [X2[g == k] for k in range(8)]
    r2 = solve_pairs(sets2, pairs, sharding=shard, params=dev, warm=r.supports)
    # The public call with its defaults (the host path on CPU, whatever the
    # device count).
    a = geomcore.hull_distances(X, g, pairs)
    print(json.dumps({"devices": jax.device_count(), "distance": r.distance.tolist(),
                      "lower": r.lower.tolist(), "sep": r.separable.tolist(),
                      "it": r.iterations.tolist(), "warm_distance": r2.distance.tolist(),
                      "warm_it": r2.iterations.tolist(), "auto": a.distance.tolist(),
                      "auto_lower": a.lower.tolist(), "auto_it": a.iterations.tolist()}))
    """
)


def _run(n_devices: int, mode: str) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_over_4_devices_is_identical_to_one():
    one = _run(1, "single")
    four = _run(4, "shard")
    assert one["devices"] == 1 and four["devices"] == 4
    assert one["sep"] == four["sep"]
    assert one["distance"] == four["distance"]
    assert one["lower"] == four["lower"]
    assert one["it"] == four["it"]
    # Warm starts too: same start, same answer, on one device or four.
    assert one["warm_distance"] == four["warm_distance"]
    assert one["warm_it"] == four["warm_it"]
    # The default call: identical on one device or four.
    assert one["auto"] == four["auto"]
    assert one["auto_lower"] == four["auto_lower"]
    assert one["auto_it"] == four["auto_it"]

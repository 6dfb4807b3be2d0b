"""Frozen budgets and routing thresholds of the hull engine.

Every knob of the engine lives here, as a frozen dataclass handed down the
call (``solve_pairs(..., params=EngineParams(...))``), never as a module
global: a caller (or a test) that wants another budget says so in the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_RTOL", "DEFAULT_TOL", "DeviceParams", "EngineParams", "WorkingSetParams"]

DEFAULT_TOL = 1e-6
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class WorkingSetParams:
    """Budgets of the host working-set path (:mod:`geomcore.solvers.working_set`).

    start: points per side in a cold start's working set (the most extreme
      along the centroid direction).
    grow: violators let in per side and round (at most).
    max_rounds: rounds before a pair is handed to the device path.
    inner_rtol: relative gap of the restricted solves (exact up to round-off
      below it; the outer gap, rtol, comes from the points outside the
      working set).
    max_steps: active-set steps per restricted solve.
    threads: restricted solves and refills run at once (host threads).
    max_active: pairs in the rounds at once (each holds its working set's
      Gram matrix, factor and rows, about 2 MB at d = 384 and 3 MB at d = 768:
      this bounds memory); None: as many as fit in ``wave_bytes``.
    wave_bytes: the memory budget of a wave when ``max_active`` is None.
    price_block: directions per pricing product (shared pricing: a set's
      points are read once per block of this many pairs' directions; 1 prices
      every pair on its own). A pair's certificates depend on this width, not
      on the other pairs in its block.
    """

    start: int = 32
    grow: int = 32
    max_rounds: int = 60
    inner_rtol: float = 1e-5
    max_steps: int = 20000
    threads: int = 2
    max_active: int | None = None
    wave_bytes: int = 512 << 20
    price_block: int = 8

    def __post_init__(self):
        if int(self.price_block) < 1:
            raise ValueError(f"`price_block` must be at least 1; got {self.price_block!r}.")


@dataclass(frozen=True)
class DeviceParams:
    """Budgets of the device path (:mod:`geomcore.solvers.device_pairs`).

    max_rounds: working-set rounds per pair (None: 40 to decide, 100 for
      distances); pairs over budget are decided by the exact LP.
    round_iter: iterations per round (None: 500 to decide and for warm-started
      pairs, 200 for cold pairs in distance mode: a round that iterates on a
      working set still missing support points is mostly wasted).
    working_set: initial points per side.
    lp_after: a pair not yet certified separable after this many iterations
      goes to the exact LP (None: 1000 to decide, 4000 for distances).
    qp_after: a separable pair whose distance is not certified after this
      many iterations is finished by the interior-point SVM.
    batch_floats: padded floats per batch (None: by backend, see
      :func:`geomcore.solvers.buckets.batch_floats`).
    """

    max_rounds: int | None = None
    round_iter: int | None = None
    working_set: int = 64
    lp_after: int | None = None
    qp_after: int = 3000
    batch_floats: int | None = None


@dataclass(frozen=True)
class EngineParams:
    """How :func:`geomcore.solvers.router.solve_pairs` routes and budgets pairs.

    path: "auto" (the host path on CPU without sharding, the device path on
      accelerators or when the pair axis is sharded), "host" or "device".
    points_per_hull: a hull meeting at least this many single points goes to
      the point-to-hull solver (which shares the hull's Gram among them).
    small_max: on the device path, pairs of at most this many points in all
      go to the batched small-pair solver.
    shared_max: the point-to-hull solver shares a hull's Gram matrix among
      the points for hulls of at most this many points; larger hulls take
      per-point working sets (one iteration of the shared solver costs n^2
      per point).
    host, device: the two paths' budgets.
    """

    path: str = "auto"
    points_per_hull: int = 8
    small_max: int = 256
    shared_max: int = 256
    host: WorkingSetParams = field(default_factory=WorkingSetParams)
    device: DeviceParams = field(default_factory=DeviceParams)

    def __post_init__(self):
        if self.path not in ("auto", "host", "device"):
            raise ValueError(f"`path` must be 'auto', 'host' or 'device'; got {self.path!r}.")

"""Run a set of independent jobs here, one after another, or as Ray tasks on a cluster.

A :class:`Job` is a picklable call with a name, the names of the jobs it needs
first, and the resources it asks for. :class:`LocalExecutor` runs the jobs in
the given order in this process; :class:`RayExecutor` submits every job whose
dependencies have finished as a Ray task (``num_cpus``, ``num_gpus``), so jobs
without a dependency between them run at once. Neither writes files: each job
writes its own outputs (atomically, with :func:`geomcore.io.write_json` and
friends), so that an interrupted run resumes from what is on disk, whichever
executor ran it.

Ray is an optional extra (``pip install -e ".[cluster]"``) and is imported only
when a :class:`RayExecutor` is made: ``import geomcore`` never loads it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

__all__ = [
    "Job", "JobsFailed", "LocalExecutor", "RayExecutor", "make_executor", "require_ray",
    "EXECUTORS", "RAY_EXTRA_HINT",
]

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")
RAY_EXTRA_HINT = 'the Ray executor needs Ray: pip install -e ".[cluster]" (or pip install ray)'


@dataclass(frozen=True)
class Job:
    """One unit of work.

    Attributes:
      name: unique among the jobs of a run (used in messages and for ``deps``).
      fn: a picklable callable (a module-level function or a
        ``functools.partial`` of one); called with no arguments, it computes
        and writes its outputs and returns a small picklable summary.
      deps: names of jobs that must finish first.
      num_cpus / num_gpus: what the job asks of a Ray cluster (ignored locally).
    """

    name: str
    fn: Callable[[], Any]
    deps: tuple[str, ...] = ()
    num_cpus: float = 1.0
    num_gpus: float = 0.0


class JobsFailed(RuntimeError):
    """Some jobs raised or their worker died; the others finished (their outputs are on disk).

    ``failed`` maps a job name to its one-line error; ``skipped`` lists the jobs
    not run because a job they need failed; ``results`` holds the finished jobs'
    return values.
    """

    def __init__(self, failed: dict[str, str], skipped: list[str], results: dict[str, Any]):
        self.failed = dict(failed)
        self.skipped = list(skipped)
        self.results = dict(results)
        first = next(iter(self.failed.items()))
        msg = (f"{len(self.failed)} job(s) failed ({', '.join(self.failed)}); first: "
               f"{first[0]}: {first[1]}")
        if self.skipped:
            msg += f"; not run because a job they need failed: {', '.join(self.skipped)}"
        msg += ". Finished jobs are on disk; run the same command again to do the rest."
        super().__init__(msg)


def _check_jobs(jobs: Sequence[Job]) -> list[Job]:
    jobs = list(jobs)
    names = [j.name for j in jobs]
    seen: set[str] = set()
    for j in jobs:
        if not isinstance(j, Job):
            raise TypeError(f"jobs must be geomcore.executors.Job; got {type(j).__name__}.")
        if j.name in seen:
            raise ValueError(f"job name {j.name!r} appears twice; names must be unique.")
        seen.add(j.name)
        if j.num_cpus < 0 or j.num_gpus < 0:
            raise ValueError(f"job {j.name!r}: num_cpus and num_gpus must be >= 0.")
    done: set[str] = set()
    for j in jobs:  # the given order must be a valid local order
        missing = [d for d in j.deps if d not in names]
        if missing:
            raise ValueError(f"job {j.name!r} needs unknown job(s) {', '.join(missing)}.")
        late = [d for d in j.deps if d not in done]
        if late:
            raise ValueError(
                f"job {j.name!r} needs {', '.join(late)}, which come(s) after it; "
                "list every job after the jobs it needs."
            )
        done.add(j.name)
    return jobs


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class LocalExecutor:
    """Runs the jobs in the given order in this process.

    An exception propagates at once (as it would without an executor): later
    jobs are not run, finished jobs' outputs are on disk.
    """

    name = "local"

    def run(self, jobs: Sequence[Job], on_done: Callable[[str, Any], None] | None = None
            ) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for job in _check_jobs(jobs):
            results[job.name] = job.fn()
            if on_done is not None:
                on_done(job.name, results[job.name])
        return results


def require_ray() -> Any:
    """``import ray``, or a ValueError with one line naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError(RAY_EXTRA_HINT + ".") from exc
    return ray


def _run_job(fn: Callable[[], Any]) -> Any:
    return fn()


class RayExecutor:
    """Runs jobs as Ray tasks; a job is submitted as soon as the jobs it needs have finished.

    Args:
      address: a running cluster's address (``HOST:PORT``, ``ray://HOST:PORT``
        or ``auto``); None: the cluster of ``$RAY_ADDRESS`` if set, else a new
        local one on this machine. Ignored when Ray is already initialised in
        this process (e.g. by the caller's ``ray.init(...)``).
      max_retries: times Ray reruns a job whose worker process died (a killed
        or crashed worker, a lost node). A job that *raises* is not retried:
        it is reported.
      connect_timeout: seconds to wait for ``address``.

    A job that fails leaves the others running; dependent jobs are skipped and
    :class:`JobsFailed` is raised at the end, naming them. Every job writes its
    own outputs atomically, so nothing is half-written and a rerun does only
    what is missing.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, max_retries: int = 2,
                 connect_timeout: float = 30.0) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0; got {max_retries}.")
        self.ray = require_ray()
        self.address = address
        self.max_retries = int(max_retries)
        self.connect_timeout = float(connect_timeout)
        self._connect()

    def _connect(self) -> None:
        ray = self.ray
        if self.address is not None and self.address != "auto" and not self.address.startswith(
            "ray://"
        ):
            _check_reachable(self.address, self.connect_timeout)
        if ray.is_initialized():
            return
        try:
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = self.address or "a new local cluster"
            raise ValueError(f"cannot connect to the Ray cluster at {where}: "
                             f"{_one_line(exc)}") from None

    def run(self, jobs: Sequence[Job], on_done: Callable[[str, Any], None] | None = None
            ) -> dict[str, Any]:
        ray = self.ray
        jobs = _check_jobs(jobs)
        have = ray.cluster_resources()
        for job in jobs:  # a request the whole cluster cannot meet would wait forever
            for key, need in (("CPU", job.num_cpus), ("GPU", job.num_gpus)):
                if need > have.get(key, 0.0):
                    raise ValueError(
                        f"job {job.name} asks for {need:g} {key}(s) but the Ray cluster has "
                        f"{have.get(key, 0.0):g} in all; lower the request or add nodes."
                    )
        remote = ray.remote(_run_job)
        waiting = {j.name: j for j in jobs}
        running: dict[Any, str] = {}
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}
        skipped: list[str] = []

        def submit_ready() -> None:
            for name in list(waiting):
                job = waiting[name]
                if any(d in failed or d in skipped for d in job.deps):
                    skipped.append(name)
                    del waiting[name]
                elif all(d in results for d in job.deps):
                    ref = remote.options(
                        name=name, num_cpus=job.num_cpus, num_gpus=job.num_gpus,
                        max_retries=self.max_retries, retry_exceptions=False,
                    ).remote(job.fn)
                    running[ref] = name
                    del waiting[name]
                    logger.info("job %s submitted", name)

        submit_ready()
        t0 = time.perf_counter()
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                name = running.pop(ref)
                try:
                    results[name] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001  (a job's error, or its worker's death)
                    failed[name] = _ray_error_line(exc)
                    logger.error("job %s failed: %s", name, failed[name])
                    continue
                logger.info("job %s done (%.1f s into the run)", name, time.perf_counter() - t0)
                if on_done is not None:
                    on_done(name, results[name])
            submit_ready()
        if waiting:  # cannot happen with checked jobs; kept as a guard against a silent stop
            raise RuntimeError(f"jobs never became ready: {', '.join(waiting)}")
        if failed:
            raise JobsFailed(failed, skipped, results)
        return results


def _ray_error_line(exc: BaseException) -> str:
    """One line for a failed Ray task: the job's own exception, or the worker's death."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return _one_line(cause)
    name = type(exc).__name__
    if "WorkerCrashed" in name or "Died" in name or "NodeDied" in name:
        return f"{name}: the worker process died (killed, out of memory, or crashed)"
    return _one_line(exc)


def _check_reachable(address: str, timeout: float) -> None:
    """A HOST:PORT that nothing listens on is one clear ValueError (Ray would retry for long)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT "
            "or auto."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=min(timeout, 10.0)):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}. Start one with "
            "`ray start --head` (it prints the address) or omit --ray-address for a local one."
        ) from None


def make_executor(kind: str = "local", *, address: str | None = None,
                  max_retries: int = 2) -> LocalExecutor | RayExecutor:
    """``"local"`` or ``"ray"`` (``address`` only with ``"ray"``)."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}.")
    if kind == "local":
        if address is not None:
            raise ValueError("--ray-address goes with --executor ray.")
        return LocalExecutor()
    return RayExecutor(address, max_retries=max_retries)


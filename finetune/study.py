"""The 2022 paper's study end to end: fine-tune, probe, compare; resumable.

``finetune study --model M --tasks pos,dep,ps-role,ps-fxn,trec50 --out DIR``
runs, for each task, the units of work below and then
``finetune.report.build_report(DIR)`` (tables, figures, report.md).

Study directory::

    DIR/study.json         the plan (model, preset, tasks, preset parameters, date,
                           machine); a rerun with another plan is refused
    DIR/runs/<task>/       a finetune.train run (geometry.jsonl, metrics.jsonl,
                           results.json, model/): fine-tuning on <task> with the
                           per-layer geometry of both splits streamed at step 0,
                           every K steps and after the last step
    DIR/units/<name>.json  one finished unit each (written atomically; a unit
                           whose file exists is never recomputed)
    DIR/results.json, DIR/tables/*.csv, DIR/figures/*.png, DIR/report.md

Units (accuracies are fractions in [0, 1]; ``seconds`` is the unit's wall time,
``cpu_seconds`` the CPU time of the process meanwhile, all threads):

- ``finetune_<task>``: the fine-tuning run's summary (head accuracy, steps,
  probed steps, throughput, streaming overhead).
- ``mlp_<task>_<stage>`` (stage ``before`` = the untuned model, ``after`` =
  fine-tuned on <task>): the paper's MLP probe (``geomcore.mlp_probe``) on the
  last layer, trained on the training split and scored on the test split.
- ``clusters_<task>_<stage>``: DirectProbe's number of clusters of the training
  split at every layer (the first ``directprobe_max_points`` examples).
- ``cross_<source>`` (target PS-fxn; source ``untuned``, ``ps-fxn``,
  ``ps-role`` or ``pos``): PS-fxn embedded by the source's model, last layer:
  per-label minimum distance to the other labels (training split) and the MLP
  probe's accuracy, without further fine-tuning.

Order: task by task (untuned probes, fine-tuning, tuned probes), then the
cross-task units, then the report; so the first results appear early and an
interrupted study restarts at the first unit without a file. The fine-tuning
run itself resumes from its own checkpoint (``save_every``).

Executors (:mod:`geomcore.executors`): the units are grouped in jobs that share
one model's embeddings (:meth:`StudyRunner.jobs`). The local executor runs them
in the order above; ``executor="ray"`` runs each job as a Ray task as soon as
the jobs it needs have finished (a task rebuilds the runner from the plan in its
worker and writes the same unit files), so a cluster run and a local run leave
the same directory and resume from each other.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import gc
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from geomcore.io import write_json

__all__ = [
    "Preset", "PRESETS", "StudyPlan", "run_study", "unit_names", "CROSS_TARGET", "CROSS_SOURCES",
]

logger = logging.getLogger(__name__)

ALL_TASKS = ("pos", "dep", "ps-role", "ps-fxn", "trec50")
CROSS_TARGET = "ps-fxn"
# Table 5 of the paper: PS-fxn probed with models fine-tuned on other tasks,
# next to the untuned model and the model fine-tuned on PS-fxn itself.
CROSS_SOURCES = ("untuned", "ps-fxn", "ps-role", "pos")
STAGES = ("before", "after")


@dataclass(frozen=True)
class Preset:
    """How much of the paper's schedule a study runs.

    Attributes:
      name: preset name.
      max_train_examples / max_test_examples: per task, keep only the first N
        examples of the split (corpus order; None = all). A task absent from the
        mapping uses all examples.
      epochs: fine-tuning epochs (None = the paper's: 10 for small, 3 for
        base-size models).
      lr: AdamW's peak learning rate (the paper: 3e-5, set for BERT-base).
      task_epochs / task_lr: per task, epochs and peak learning rate that
        replace ``epochs`` / ``lr`` (a task absent from the mapping uses those).
      n_probes: probed steps after step 0 (K = ceil(total steps / n_probes)).
      batch_size: sentences per optimizer step (the paper: 32).
      mlp_hidden_sizes / mlp_alphas / mlp_seeds / mlp_max_iter: the MLP probe
        grid (the paper: {32, 64, 128, 256}^2, a log-spaced L2 range, 5 seeds,
        1000 iterations).
      directprobe_max_points: DirectProbe clusters the first N training
        examples of each layer (None = all).
    """

    name: str
    max_train_examples: dict[str, int | None] = field(default_factory=dict)
    max_test_examples: dict[str, int | None] = field(default_factory=dict)
    epochs: int | None = None
    lr: float = 3e-5
    task_epochs: dict[str, int] = field(default_factory=dict)
    task_lr: dict[str, float] = field(default_factory=dict)
    n_probes: int = 4
    batch_size: int = 32
    mlp_hidden_sizes: tuple[int, ...] = (32, 64, 128, 256)
    mlp_alphas: tuple[float, ...] = tuple(float(a) for a in np.logspace(-5, -1, 5))
    mlp_seeds: int = 5
    mlp_max_iter: int = 1000
    directprobe_max_points: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_train_examples", "max_test_examples", "task_epochs", "task_lr"):
            bad = sorted(set(getattr(self, name)) - set(ALL_TASKS))
            if bad:
                raise ValueError(f"preset {self.name!r}: {name} names unknown task(s) "
                                 f"{', '.join(bad)}; known: {', '.join(ALL_TASKS)}.")
        for t, e in {None: self.epochs, **self.task_epochs}.items():
            if e is not None and (isinstance(e, bool) or not isinstance(e, int) or e < 1):
                raise ValueError(f"preset {self.name!r}: epochs{'' if t is None else f' of {t}'} "
                                 f"must be a positive integer, got {e!r}.")
        for t, lr in {None: self.lr, **self.task_lr}.items():
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ValueError(f"preset {self.name!r}: lr{'' if t is None else f' of {t}'} "
                                 f"must be a positive number, got {lr!r}.")

    def epochs_for(self, task: str, default: int) -> int:
        """Fine-tuning epochs of ``task`` (``default``: the paper's for the model)."""
        return self.task_epochs.get(task) or self.epochs or default

    def lr_for(self, task: str) -> float:
        """AdamW's peak learning rate for ``task``."""
        return float(self.task_lr.get(task, self.lr))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# smoke: every code path on tiny slices, minutes on 2 CPU cores with the default
# model (seconds with the tests' tiny model).
SMOKE = Preset(
    name="smoke",
    max_train_examples={"pos": 120, "dep": 120, "ps-role": 48, "ps-fxn": 48, "trec50": 48},
    max_test_examples={t: 32 for t in ALL_TASKS},
    epochs=2,
    n_probes=2,
    batch_size=8,
    mlp_hidden_sizes=(32,),
    mlp_alphas=(1e-4, 1e-2),
    mlp_seeds=2,
    mlp_max_iter=30,
    directprobe_max_points=64,
    task_lr={"ps-role": 1e-4},  # exercises the per-task learning rate
)

# quick: the default model on all five tasks, whole corpora (PUD's 800/200
# sentences, STREUSLE's dev/test files, TREC's 5,452/500 questions), the
# paper's schedule shape (AdamW, 10% linear warm-up then linear decay, batch
# 32) with the learning rate and epochs measured for this 6-layer, 384-wide
# model (docs/history.md, "Heads that learn"): peak lr 2e-4 (the paper's 3e-5
# is for BERT-base: 30 steps at 3e-5 left DEP's head at 0.249); 3 epochs for
# POS and DEP (75 steps: test accuracy 0.90-0.92, the plateau of a 5-epoch
# run), 10 for PS-role and PS-fxn (80 steps on 433 examples), 2 for TREC-50
# (342 steps). The geometry is streamed at step 0, mid-way and after the last
# step (n_probes=2). The MLP grid keeps the largest size, two L2 weights and two
# seeds (the full-set grid of the earlier quick preset took 341 s per POS probe
# on a loaded machine). DirectProbe clusters all training examples of every
# layer (PUD POS: 16,858 words, 15-40 s a contextual layer, about 100 s for the
# embedding layer with its 2,648 words that carry two tags).
QUICK = Preset(
    name="quick",
    lr=2e-4,
    task_epochs={"pos": 3, "dep": 3, "ps-role": 10, "ps-fxn": 10, "trec50": 2},
    n_probes=2,
    batch_size=32,
    mlp_hidden_sizes=(256,),
    mlp_alphas=(1e-4, 1e-2),
    mlp_seeds=2,
    mlp_max_iter=200,
)

# paper: the paper's schedule and grid on the full splits (about 1.5 h on 2 CPU
# cores, projected from measured units: docs/benchmarks.md).
PAPER = Preset(name="paper", n_probes=10)

PRESETS = {p.name: p for p in (SMOKE, QUICK, PAPER)}

# The study's progress line: at most one line per this many seconds in a log.
PROGRESS_INTERVAL = 20.0

# Training examples and sentences per task in the full corpora
# (finetune.tasks), for the progress line's weights only.
_FULL_TRAIN = {"pos": 16858, "dep": 16058, "ps-role": 433, "ps-fxn": 433, "trec50": 5452}
_FULL_SENTENCES = {"pos": 800, "dep": 800, "ps-role": 256, "ps-fxn": 256, "trec50": 5452}
# Rough idle 2-core costs (docs/history.md, "Heads that learn"): seconds per
# optimizer step of 32 sentences, per example of a streamed probe (every layer,
# both splits), per training example of an MLP grid and of DirectProbe on all
# layers. A wrong guess changes the estimate of the time left, nothing else.
_STEP_SECONDS = 0.8
_SECONDS_PER_EXAMPLE = {"probe": 0.003, "mlp": 0.01, "clusters": 0.02}


def unit_weight(plan: StudyPlan, unit: str) -> float:
    """A unit's expected cost in rough seconds (the progress line's estimate of time left)."""
    kind, _, rest = unit.partition("_")
    if kind == "cross":
        return 10.0
    task = rest.rpartition("_")[0] if kind in ("mlp", "clusters") else rest
    p = plan.preset
    n = _FULL_TRAIN.get(task, 1000)
    cap = p.max_train_examples.get(task)
    frac = 1.0 if cap is None else min(1.0, cap / n)
    n = round(n * frac)
    if kind == "finetune":
        sentences = max(1, round(_FULL_SENTENCES.get(task, 100) * frac))
        steps = p.epochs_for(task, 10) * math.ceil(sentences / p.batch_size)
        probes = (p.n_probes + 1) * _SECONDS_PER_EXAMPLE["probe"] * n
        return max(1.0, _STEP_SECONDS * steps + probes)
    if kind == "clusters" and p.directprobe_max_points is not None:
        n = min(n, p.directprobe_max_points)
    return max(1.0, _SECONDS_PER_EXAMPLE.get(kind, 0.02) * n)


@dataclass(frozen=True)
class StudyPlan:
    """Everything that decides what a study computes (stored in study.json)."""

    model: str
    tasks: tuple[str, ...]
    preset: Preset
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tasks": list(self.tasks),
            "preset": self.preset.name,
            "preset_params": self.preset.to_json(),
            "seed": self.seed,
        }


def parse_tasks(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"pos,dep"`` -> ("pos", "dep"), checked against the known tasks."""
    names = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [t for t in names if t]
    if not names:
        raise ValueError("--tasks is empty; give a comma-separated list, e.g. pos,ps-role.")
    bad = [t for t in names if t not in ALL_TASKS]
    if bad:
        raise ValueError(f"unknown task(s) {', '.join(bad)}; known: {', '.join(ALL_TASKS)}.")
    dup = sorted({t for t in names if names.count(t) > 1})
    if dup:
        raise ValueError(f"task(s) listed twice in --tasks: {', '.join(dup)}.")
    return tuple(names)


def unit_names(tasks: tuple[str, ...]) -> list[str]:
    """Every unit of a study over ``tasks``, in execution order."""
    names: list[str] = []
    for t in tasks:
        names += [f"mlp_{t}_before", f"clusters_{t}_before", f"finetune_{t}",
                  f"mlp_{t}_after", f"clusters_{t}_after"]
    names += [f"cross_{s}" for s in cross_sources(tasks)]
    return names


def cross_sources(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """The cross-task sources a study over ``tasks`` can compute (Table 5)."""
    if CROSS_TARGET not in tasks:
        return ()
    return tuple(s for s in CROSS_SOURCES if s == "untuned" or s in tasks)


def _machine() -> dict[str, Any]:
    import jax
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "jax": jax.__version__,
    }


def _check_plan(out: Path, plan: StudyPlan) -> None:
    """Write study.json, or refuse when the directory holds another plan."""
    path = out / "study.json"
    mine = plan.to_json()
    if path.exists():
        stored = json.loads(path.read_text())
        diff = [
            f"{k}: directory has {stored.get(k)!r}, this run has {mine[k]!r}"
            for k in mine
            if json.loads(json.dumps(stored.get(k))) != json.loads(json.dumps(mine[k]))
        ]
        if diff:
            raise ValueError(
                f"{out} holds a study with another plan; use another --out or the same "
                "settings. Differences: " + "; ".join(diff)
            )
        return
    record = dict(mine)
    record["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record["machine"] = _machine()
    write_json(path, record)


class _Units:
    """The unit files of a study directory."""

    def __init__(self, out: Path) -> None:
        self.dir = out / "units"
        self.dir.mkdir(parents=True, exist_ok=True)
        # The study's progress line (finetune.progress.ProgressLine) while the
        # driver runs units in this process; None elsewhere (a Ray worker).
        self.line: Any = None

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def done(self, name: str) -> bool:
        return self.path(name).exists()

    def load(self, name: str) -> dict[str, Any]:
        return json.loads(self.path(name).read_text())

    def run(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.done(name):
            logger.info("unit %s: done earlier, skipped", name)
            return self.load(name)
        if self.line is not None:
            self.line.begin(name)
        t0, c0 = time.perf_counter(), time.process_time()
        rec = compute()
        rec["seconds"] = time.perf_counter() - t0
        rec["cpu_seconds"] = time.process_time() - c0  # all threads of this process
        write_json(self.path(name), rec)
        logger.info("unit %s: %.1f s", name, rec["seconds"])
        if self.line is not None:
            self.line.end(name)
        return rec

    def update(self, fraction: float, detail: str) -> None:
        """How far the running unit is (shown on the progress line, if any)."""
        if self.line is not None and self.line.current is not None:
            self.line.update(fraction, detail)


def _mlp_record(res: Any) -> dict[str, Any]:
    return {
        "mean": float(res.mean),
        "std": float(res.std),
        "accuracies": [float(a) for a in np.asarray(res.accuracies)],
        "config": {"hidden": [int(h) for h in res.config.hidden_sizes],
                   "alpha": float(res.config.alpha)},
    }


class _Embeddings:
    """Per-layer vectors of a task's splits under one model, computed once.

    Holds numpy float32 copies (the model may be freed afterwards); the
    training split's layers are kept only when DirectProbe needs them.
    """

    def __init__(self, model: Any, tokenizer: Any, train: Any, test: Any, *, batch_size: int,
                 progress: bool, device: str, all_layers: bool) -> None:
        from finetune.embed import embed_layers

        n = int(model.config.num_hidden_layers)
        self.last = n
        tr = embed_layers(model, tokenizer, train, batch_size=batch_size, device=device,
                          progress=progress, layers=None if all_layers else [n])
        te = embed_layers(model, tokenizer, test, batch_size=batch_size, device=device,
                          progress=progress, layers=[n])
        self.train_layers = [t.numpy().copy() for t in tr]
        self.train_last = self.train_layers[-1]
        self.test_last = te[-1].numpy().copy()


class StudyRunner:
    """Runs a :class:`StudyPlan` in ``out``; see the module docstring."""

    def __init__(self, plan: StudyPlan, out: str | os.PathLike, *, data_dir: Any = None,
                 device: str = "cpu", progress: bool = True, cpus_per_unit: float = 1.0) -> None:
        self.plan = plan
        self.cpus_per_unit = float(cpus_per_unit)
        self.out = Path(out)
        self.data_dir = data_dir
        self.device = device
        self.progress = progress
        self.out.mkdir(parents=True, exist_ok=True)
        _check_plan(self.out, plan)
        self.units = _Units(self.out)
        self._base: tuple[Any, Any] | None = None
        self._data: dict[str, tuple[Any, Any]] = {}

    # ------------------------------------------------------------------ inputs
    def data(self, task: str) -> tuple[Any, Any]:
        """The (train, test) TaskData of ``task``, sliced as the preset says."""
        if task not in self._data:
            from finetune.tasks import load_task
            from finetune.train import slice_task

            p = self.plan.preset
            train = slice_task(load_task(task, "train", self.data_dir),
                               p.max_train_examples.get(task))
            test = slice_task(load_task(task, "test", self.data_dir), p.max_test_examples.get(task))
            self._data[task] = (train, test)
        return self._data[task]

    def base_model(self) -> tuple[Any, Any]:
        if self._base is None:
            from finetune.models import load_encoder

            self._base = load_encoder(self.plan.model)
        return self._base

    def tuned_model(self, task: str) -> tuple[Any, Any]:
        from finetune.models import load_encoder

        path = self.out / "runs" / task / "model"
        if not (path / "head.json").exists():
            raise FileNotFoundError(
                f"{path} holds no fine-tuned model; the unit finetune_{task} must finish first."
            )
        return load_encoder(path)

    def embeddings(self, model: tuple[Any, Any], task: str, *, all_layers: bool) -> _Embeddings:
        train, test = self.data(task)
        return _Embeddings(model[0], model[1], train, test, batch_size=self.plan.preset.batch_size,
                           progress=self.bars, device=self.device, all_layers=all_layers)

    @property
    def bars(self) -> bool:
        """Progress bars of the inner stages (embedding, MLP grid, DirectProbe, training).

        Off while the study's own progress line is shown: one line for the
        whole study (finetune.progress), nothing else redrawn.
        """
        return self.progress and self.units.line is None

    # ------------------------------------------------------------------ units
    def _mlp(self, task: str, stage: str, emb: _Embeddings) -> dict[str, Any]:
        import geomcore

        train, test = self.data(task)
        p = self.plan.preset
        res = geomcore.mlp_probe(
            emb.train_last, np.asarray(train.labels), emb.test_last, np.asarray(test.labels),
            hidden_sizes=p.mlp_hidden_sizes, alphas=p.mlp_alphas, n_seeds=p.mlp_seeds,
            max_iter=p.mlp_max_iter, seed=self.plan.seed, progress=self.bars,
        )
        rec = {"unit": "mlp", "task": task, "stage": stage, "layer": emb.last,
               "n_train": int(train.n_examples), "n_test": int(test.n_examples)}
        rec.update(_mlp_record(res))
        return rec

    def _clusters(self, task: str, stage: str, emb: _Embeddings) -> dict[str, Any]:
        from tqdm.auto import tqdm

        import geomcore

        train, _ = self.data(task)
        cap = self.plan.preset.directprobe_max_points
        y = np.asarray(train.labels)[:cap]
        counts, secs = [], []
        for layer, X in enumerate(tqdm(emb.train_layers, desc=f"DirectProbe {task} {stage}",
                                       disable=not self.bars, leave=False)):
            t0 = time.perf_counter()
            probe = geomcore.directprobe(X[:cap], y)
            counts.append(int(probe.n_clusters))
            secs.append(time.perf_counter() - t0)
            n = len(emb.train_layers)
            self.units.update((layer + 1) / n, f"layer {layer + 1}/{n} done")
        return {"unit": "clusters", "task": task, "stage": stage,
                "n_labels": int(np.unique(y).size), "n_points": int(y.size),
                "layers": list(range(len(counts))), "n_clusters": counts, "seconds_per_layer": secs}

    def _finetune(self, task: str) -> dict[str, Any]:
        from finetune.config import TrainConfig
        from finetune.train import train as train_run

        p = self.plan.preset
        train, _ = self.data(task)
        base = self.base_model()[0].config
        from finetune.config import default_epochs

        epochs = p.epochs_for(task, default_epochs(base.num_hidden_layers, base.hidden_size))
        n_sent = int(np.unique(np.asarray(train.targets)[:, 0]).size)
        total = epochs * math.ceil(n_sent / p.batch_size)
        probe_every = max(1, math.ceil(total / p.n_probes))
        config = TrainConfig(
            task=task, out_dir=self.out / "runs" / task, model=self.plan.model,
            data_dir=self.data_dir, epochs=epochs, batch_size=p.batch_size, lr=p.lr_for(task),
            seed=self.plan.seed,
            probe_every=probe_every, save_every=probe_every,
            max_train_examples=p.max_train_examples.get(task),
            max_test_examples=p.max_test_examples.get(task),
            device=self.device, progress=self.bars,
        )
        res = train_run(config, on_step=lambda s, n, loss: self.units.update(
            s / n, f"step {s}/{n} loss {loss:.3f}"))
        if not res.completed or not (config.out_dir / "model" / "head.json").exists():
            raise RuntimeError(
                f"fine-tuning {task} stopped at step {res.step} of {res.total_steps} "
                f"without writing {config.out_dir / 'model'}."
            )
        steps = sorted({json.loads(line)["step"]
                        for line in (config.out_dir / "metrics.jsonl").read_text().splitlines()
                        if line.strip()})
        return {
            "unit": "finetune", "task": task, "model": self.plan.model,
            "total_steps": int(res.total_steps), "steps_run": int(res.step),
            "epochs": int(res.epochs), "lr": config.lr,
            "probe_every": probe_every, "probe_steps": steps,
            "n_train_examples": int(train.n_examples),
            "n_test_examples": int(self.data(task)[1].n_examples),
            "head_test_accuracy": res.test_accuracy, "head_train_accuracy": res.train_accuracy,
            "train_sentences_per_second": float(res.train_sentences_per_second),
            "probe_fraction": float(res.probe_fraction), "run_dir": f"runs/{task}",
            "train_seconds": float(res.train_seconds), "probe_seconds": float(res.probe_seconds),
            "train_cpu_seconds": float(res.train_cpu_seconds),
            "probe_cpu_seconds": float(res.probe_cpu_seconds),
        }

    def _cross(self, source: str, emb: _Embeddings) -> dict[str, Any]:
        import geomcore

        train, test = self.data(CROSS_TARGET)
        y = np.asarray(train.labels)
        ld = geomcore.label_distances(emb.train_last, y)
        names = [str(v) for v in np.asarray(ld.labels).tolist()]
        md = [None if not np.isfinite(v) else float(v) for v in np.asarray(ld.min_distance)]
        p = self.plan.preset
        res = geomcore.mlp_probe(
            emb.train_last, y, emb.test_last, np.asarray(test.labels),
            hidden_sizes=p.mlp_hidden_sizes, alphas=p.mlp_alphas, n_seeds=p.mlp_seeds,
            max_iter=p.mlp_max_iter, seed=self.plan.seed, progress=self.bars,
        )
        return {"unit": "cross", "source": source, "target": CROSS_TARGET, "layer": emb.last,
                "labels": names, "min_distance": md, "mlp": _mlp_record(res)}

    # ------------------------------------------------------------------ driver
    def jobs(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        """The study's jobs still to run, in local order: (job, its units, the jobs it needs).

        A job is the units that share one model's embeddings: ``probe_<task>_before``
        (MLP and clusters of the untuned model), ``finetune_<task>``,
        ``probe_<task>_after`` (needs ``finetune_<task>``) and ``cross_<source>``
        (needs ``finetune_<source>`` unless the source is ``untuned``). A job
        whose units all exist is left out, and so is a dependency on it.
        """
        plan: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
        for task in self.plan.tasks:
            plan.append((f"probe_{task}_before", (f"mlp_{task}_before", f"clusters_{task}_before"),
                         ()))
            plan.append((f"finetune_{task}", (f"finetune_{task}",), ()))
            plan.append((f"probe_{task}_after", (f"mlp_{task}_after", f"clusters_{task}_after"),
                         (f"finetune_{task}",)))
        for source in cross_sources(self.plan.tasks):
            plan.append((f"cross_{source}", (f"cross_{source}",),
                         () if source == "untuned" else (f"finetune_{source}",)))
        todo = [(j, u, d) for j, u, d in plan if not all(self.units.done(x) for x in u)]
        names = {j for j, _, _ in todo}
        return [(j, u, tuple(x for x in d if x in names)) for j, u, d in todo]

    def run_job(self, job: str) -> list[str]:
        """Compute the missing units of one job (see :meth:`jobs`); returns their names."""
        kind, _, rest = job.partition("_")
        if kind == "probe":
            task, _, stage = rest.rpartition("_")
            names = (f"mlp_{task}_{stage}", f"clusters_{task}_{stage}")
            if all(self.units.done(n) for n in names):
                return []
            model = self.base_model() if stage == "before" else self.tuned_model(task)
            emb = self.embeddings(model, task, all_layers=True)
            del model
            self.units.run(names[0], lambda: self._mlp(task, stage, emb))
            self.units.run(names[1], lambda: self._clusters(task, stage, emb))
            del emb
            gc.collect()
            return list(names)
        if kind == "finetune":
            self.units.run(job, lambda: self._finetune(rest))
            return [job]
        if kind == "cross":
            if self.units.done(job):
                return []
            model = self.base_model() if rest == "untuned" else self.tuned_model(rest)
            emb = self.embeddings(model, CROSS_TARGET, all_layers=False)
            del model
            self.units.run(job, lambda: self._cross(rest, emb))
            del emb
            gc.collect()
            return [job]
        raise ValueError(f"unknown study job {job!r}.")

    def run(self, executor: Any = None) -> Path:
        """Run the missing units (``executor``: None = here, one after another, or a
        :mod:`geomcore.executors` executor), then build the report."""
        from finetune.progress import ProgressLine
        from geomcore.executors import Job, LocalExecutor

        executor = LocalExecutor() if executor is None else executor
        names = unit_names(self.plan.tasks)
        line = None
        if self.progress:
            line = ProgressLine("study", [(u, unit_weight(self.plan, u)) for u in names],
                                done=[u for u in names if self.units.done(u)],
                                interval=PROGRESS_INTERVAL)
        todo = self.jobs()
        job_units = {j: u for j, u, _ in todo}

        def on_done(job: str, _: Any) -> None:
            for u in job_units[job]:  # units a worker finished (local ones ended already)
                if line is not None and self.units.done(u):
                    line.end(u)
        if isinstance(executor, LocalExecutor):
            jobs = [Job(j, functools.partial(self.run_job, j), d) for j, _, d in todo]
        else:
            spec = _RunnerSpec(type(self), self.plan, str(self.out), self.data_dir, self.device)
            gpus = 1.0 if str(self.device).startswith("cuda") else 0.0
            jobs = [Job(j, functools.partial(_run_remote_job, spec, j, self.cpus_per_unit), d,
                        num_cpus=self.cpus_per_unit, num_gpus=gpus) for j, _, d in todo]
        self.units.line = line if isinstance(executor, LocalExecutor) else None
        try:
            executor.run(jobs, on_done=on_done)
        finally:
            self.units.line = None
            if line is not None:
                line.close()
        from finetune.report import build_report

        return build_report(self.out)


@dataclass(frozen=True)
class _RunnerSpec:
    """What a worker process needs to rebuild the runner of a study (picklable)."""

    cls: type
    plan: StudyPlan
    out: str
    data_dir: Any
    device: str


def _run_remote_job(spec: _RunnerSpec, job: str, cpus: float = 1.0) -> list[str]:
    """A study job in a worker process (a Ray task): same directory, same unit files.

    torch runs ``cpus`` threads (at least 1), set here rather than left to the
    worker's environment: torch's float32 sums depend on the thread count, so a
    unit's numbers equal a local run's at that thread count.
    """
    import torch

    from geomcore.compile_cache import enable_compilation_cache

    torch.set_num_threads(max(1, int(cpus)))
    enable_compilation_cache()
    runner = spec.cls(spec.plan, spec.out, data_dir=spec.data_dir, device=spec.device,
                      progress=False)
    return runner.run_job(job)


def run_study(
    out: str | os.PathLike,
    *,
    model: str,
    tasks: str | tuple[str, ...] = ALL_TASKS,
    preset: str | Preset = "quick",
    data_dir: Any = None,
    device: str = "cpu",
    progress: bool = True,
    seed: int = 0,
    executor: str = "local",
    ray_address: str | None = None,
    cpus_per_unit: float = 1.0,
) -> Path:
    """Run (or resume) a study in ``out``; returns the path of report.md.

    ``executor="ray"`` runs the units as Ray tasks (``ray_address``: a running
    cluster, else ``$RAY_ADDRESS`` or a new local one), each asking for
    ``cpus_per_unit`` CPUs and, with a ``cuda`` device, one GPU; units that
    do not need each other run at once. The files are those of a local run.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        preset = PRESETS[preset]
    plan = StudyPlan(model=model, tasks=parse_tasks(tasks), preset=preset, seed=seed)
    if not cpus_per_unit > 0:
        raise ValueError(f"--cpus-per-unit must be > 0; got {cpus_per_unit}.")
    from geomcore.executors import make_executor, require_ray

    if executor == "ray":
        require_ray()  # before anything is written
    runner = StudyRunner(plan, out, data_dir=data_dir, device=device, progress=progress,
                         cpus_per_unit=cpus_per_unit)
    return runner.run(make_executor(executor, address=ray_address))

"""Fine-tuning with streamed geometry, resumable step for step.

The schedule follows the appendix of "A Closer Look at How Fine-tuning Changes
BERT" (Zhou & Srikumar, ACL 2022): AdamW, peak learning rate 3e-5, linear
warm-up over the first 10% of the steps then linear decay to 0, batches of 32,
10 epochs for small encoders (<= 6 layers, hidden <= 512) and 3 otherwise.

Batches are made of *sentences*: an epoch is a seeded permutation of the
training sentences that hold at least one example, cut into runs of
``batch_size``; every example of a sentence (every tagged word for POS, every
preposition for PS, every dependent for DEP, the question for TREC) is in the
cross-entropy of the batch holding it. One forward pass per sentence is what
makes POS affordable on a CPU.

Over-long sentences: training, evaluation and geometry all go through
``finetune.embed.encode``, which splits a sentence longer than the encoder's
``max_length`` into overlapping windows of whole words and reads every word
from one window, so no example is dropped (a TREC question keeps the [CLS]
of its first window). Gradients are clipped to a global norm of 1.0 (the
transformers default).

Run directory (``config.out_dir``):
  checkpoint/state.pt  model, head, optimizer, scheduler, RNG states, step,
                       the epoch's data order, time accounting (atomic writes)
  geometry.jsonl       a header line, then one line per (step, split, layer)
  metrics.jsonl        one line per probe: train/test accuracy of the head, loss
  probe_warm.pkl       the last probe's label-pair supports per split and layer,
                       which start the next probe's solver (atomic writes)
  results.json         written atomically when the schedule is complete
  model/               the fine-tuned encoder (save_pretrained), tokenizer, head

Determinism: the same config gives the same weights on the same machine and
thread count; an interrupted run resumed from its checkpoint ends with
exactly the weights of an uninterrupted run (tests/finetune/test_train.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from geomcore.io import atomic_open, write_json

from finetune.config import TrainConfig, default_epochs
from finetune.embed import encode, model_max_length
from finetune.heads import TaskHead, TaskModel
from finetune.progress import ProgressLine, hf_bars, is_terminal
from finetune.stream import JsonlLog, probe_split

__all__ = [
    "TrainResult",
    "LabelIndex",
    "train",
    "fit",
    "label_index",
    "slice_task",
    "linear_warmup_decay",
    "load_head",
]

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
MAX_GRAD_NORM = 1.0
# Seconds between two progress lines when the output is not a terminal.
PROGRESS_INTERVAL = 15.0
GEOMETRY_KEY = ("record", "step", "split", "layer")
METRICS_KEY = ("record", "step")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train` / :func:`fit`.

    Attributes:
      completed: the whole schedule ran (False when ``max_steps`` stopped it).
      step: optimizer steps done; total_steps: steps of the whole schedule.
      epochs: epochs of the schedule.
      test_accuracy / train_accuracy: accuracy of the head at the last probe
        (None before the first probe of this directory).
      wall_seconds: wall time of the run (summed over resumed sessions).
      probe_seconds: part of it spent in probing (embedding + geometry).
      train_seconds: part spent in optimizer steps.
      train_sentences_per_second: training sentences per second of
        ``train_seconds``.
      out_dir: the run directory.
      train_cpu_seconds / probe_cpu_seconds: CPU time of this process (all
        its threads) in optimizer steps / in probing; on a machine shared with
        other jobs it measures the work better than the wall times do.
    """

    completed: bool
    step: int
    total_steps: int
    epochs: int
    test_accuracy: float | None
    train_accuracy: float | None
    wall_seconds: float
    probe_seconds: float
    train_seconds: float
    train_sentences_per_second: float
    out_dir: Path
    train_cpu_seconds: float = 0.0
    probe_cpu_seconds: float = 0.0

    @property
    def probe_fraction(self) -> float:
        """Fraction of the wall time spent in probing."""
        return self.probe_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


@dataclass(frozen=True)
class LabelIndex:
    """Label ids shared by the head, the geometry and the accuracy.

    ``names`` lists the training labels (sorted) first, then the labels that
    occur only in the test split (sorted). The head has ``n_train`` outputs, so
    test-only labels are kept (in the geometry and in the accuracy's
    denominator) but can never be predicted.
    """

    names: tuple[str, ...]
    n_train: int
    train_ids: np.ndarray
    test_ids: np.ndarray

    @property
    def missing_from_train(self) -> tuple[str, ...]:
        return self.names[self.n_train :]


def label_index(train_labels: tuple[str, ...], test_labels: tuple[str, ...]) -> LabelIndex:
    """Build the :class:`LabelIndex` of a pair of splits."""
    train_names = sorted(set(train_labels))
    if not train_names:
        raise ValueError("The training split has no examples: nothing to fine-tune on.")
    extra = sorted(set(test_labels) - set(train_names))
    names = tuple(train_names) + tuple(extra)
    pos = {n: i for i, n in enumerate(names)}
    return LabelIndex(
        names=names,
        n_train=len(train_names),
        train_ids=np.array([pos[x] for x in train_labels], dtype=np.int64),
        test_ids=np.array([pos[x] for x in test_labels], dtype=np.int64),
    )


def slice_task(task: Any, n: int | None) -> Any:
    """Keep the first ``n`` examples of a TaskData (and only their sentences)."""
    if n is None or n >= task.n_examples:
        return task
    targets = np.asarray(task.targets)[:n].copy()
    used = np.unique(targets[:, 0])
    remap = np.full(len(task.sentences), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    targets[:, 0] = remap[targets[:, 0]]
    return dataclasses.replace(
        task,
        sentences=tuple(task.sentences[i] for i in used),
        targets=targets,
        labels=tuple(task.labels[:n]),
    )


def linear_warmup_decay(total_steps: int, warmup_ratio: float):
    """LR multiplier: linear 0 -> 1 over the warm-up steps, then 1 -> 0 at the end.

    Matches transformers' get_linear_schedule_with_warmup with
    ``num_warmup_steps = ceil(warmup_ratio * total_steps)``.
    """
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class _Batches:
    """Training examples grouped by sentence, for sentence-level batching."""

    sentence_ids: np.ndarray  # (S,) indices into task.sentences having examples
    starts: np.ndarray  # (S+1,) example rows of sentence k: order[starts[k]:starts[k+1]]
    rows: np.ndarray  # example indices sorted by sentence (stable)


def _group_by_sentence(targets: np.ndarray) -> _Batches:
    sent = targets[:, 0]
    rows = np.argsort(sent, kind="stable")
    sentence_ids, counts = np.unique(sent[rows], return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)])
    return _Batches(sentence_ids, starts, rows)


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The seeded permutation of the training sentences for ``epoch``."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_path(out_dir: Path) -> Path:
    return out_dir / "checkpoint" / "state.pt"


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_open(path, "wb", make_dirs=True) as fh:
        torch.save(state, fh)


WARM_FILE = "probe_warm.pkl"


def _save_warm(out_dir: Path, warm: dict) -> None:
    """The probes' label-pair supports, (split, layer) -> (labels, supports), atomically."""
    state = {k: (np.asarray(ld.labels), ld.supports) for k, ld in warm.items()}
    with atomic_open(out_dir / WARM_FILE, "wb", make_dirs=True) as fh:
        pickle.dump(state, fh, protocol=5)


def _load_warm(out_dir: Path) -> dict:
    """The supports saved by :func:`_save_warm` as LabelDistances warm starts ({} if none)."""
    from geomcore import LabelDistances

    path = out_dir / WARM_FILE
    if not path.exists():
        return {}
    try:
        # Our own file, written by _save_warm.
        state = pickle.loads(path.read_bytes())
        return {
            key: LabelDistances(labels, None, None, None, supports)
            for key, (labels, supports) in state.items()
        }
    except Exception as exc:
        raise ValueError(
            f"{path} could not be read ({exc}); delete it to start the next probe's solver cold."
        ) from exc


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        # Our own file: it holds numpy RNG state and the config dict.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"Checkpoint {path} could not be read: {exc}") from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"Checkpoint {path} is not a finetune checkpoint (version mismatch).")
    return state


def _save_model_dir(out_dir: Path, model: TaskModel, tokenizer: Any, labels: LabelIndex) -> None:
    """Write encoder + tokenizer + head to out_dir/model, replacing it whole."""
    from safetensors.torch import save_file

    final = out_dir / "model"
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".model."))
    try:
        model.backbone.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        head_state = {k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}
        save_file(head_state, str(tmp / "head.safetensors"))
        (tmp / "head.json").write_text(
            json.dumps(
                {"kind": model.head.kind, "labels": list(labels.names[: labels.n_train])}, indent=2
            )
        )
        old = None
        if final.exists():
            old = out_dir / f".model.old.{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_head(model_dir: str | os.PathLike) -> tuple[TaskHead, tuple[str, ...]]:
    """Load the head saved in ``<out_dir>/model`` with its label names."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    meta_path = model_dir / "head.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: not a finetune model directory.")
    meta = json.loads(meta_path.read_text())
    state = load_file(str(model_dir / "head.safetensors"))
    w = state["linear.weight"]
    hidden = w.shape[1] // 2 if meta["kind"] == "pair" else w.shape[1]
    head = TaskHead(meta["kind"], hidden, w.shape[0])
    head.load_state_dict(state)
    return head, tuple(meta["labels"])


# --------------------------------------------------------------------------- the run


def _accuracy(head: TaskHead, vectors: torch.Tensor, ids: np.ndarray, device: str) -> float:
    """Accuracy of ``head`` on example vectors; test-only label ids never match."""
    was = head.training
    head.eval()
    with torch.inference_mode():
        pred = head(vectors.to(device)).argmax(dim=-1).cpu().numpy()
    head.train(was)
    return float((pred == ids).mean()) if len(ids) else float("nan")


def train(config: TrainConfig, *, on_step: Callable[[int, int, float], None] | None = None
          ) -> TrainResult:
    """Load the task's splits and the encoder named in ``config``, then :func:`fit`."""
    from finetune.models import load_encoder
    from finetune.tasks import check_task, load_task

    check_task(config.task)
    train_data = slice_task(
        load_task(config.task, "train", config.data_dir), config.max_train_examples
    )
    test_data = slice_task(
        load_task(config.task, "test", config.data_dir), config.max_test_examples
    )
    backbone, tokenizer = load_encoder(config.model)
    return fit(backbone, tokenizer, train_data, test_data, config, on_step=on_step)


def fit(
    backbone: torch.nn.Module,
    tokenizer: Any,
    train_data: Any,
    test_data: Any,
    config: TrainConfig,
    *,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune ``backbone`` with a task head, streaming geometry; resumable.

    Args:
      backbone: a transformers encoder (AutoModel) with a fast tokenizer.
      tokenizer: its tokenizer.
      train_data / test_data: ``finetune.tasks.TaskData`` of the two splits.
      config: the run's settings; ``config.out_dir`` receives everything.
      on_step: called after every optimizer step with (step, total steps,
        the step's loss), e.g. to drive a caller's progress line.

    Progress (``config.progress``): in a terminal, tqdm bars (training steps,
    embedding, geometry); elsewhere (a log file) no bars, only a
    :class:`finetune.progress.ProgressLine`: a line at the start, at most one
    every ``PROGRESS_INTERVAL`` seconds, and one at the end.

    If ``config.out_dir`` holds a checkpoint, the run continues from it (the
    settings must match, see ``TrainConfig.mismatches``).
    """
    wall0 = time.perf_counter()
    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    device = config.device
    if train_data.kind != test_data.kind:
        raise ValueError(
            f"Train and test splits differ in kind: {train_data.kind!r} vs {test_data.kind!r}."
        )
    kind = train_data.kind
    labels = label_index(tuple(train_data.labels), tuple(test_data.labels))
    if labels.missing_from_train:
        logger.warning(
            "%d test label(s) never occur in training; kept, counted wrong by the head: %s",
            len(labels.missing_from_train),
            ", ".join(labels.missing_from_train),
        )
    groups = _group_by_sentence(np.asarray(train_data.targets))
    n_sent = len(groups.sentence_ids)
    bcfg = backbone.config
    epochs = config.epochs or default_epochs(bcfg.num_hidden_layers, bcfg.hidden_size)
    steps_per_epoch = math.ceil(n_sent / config.batch_size)
    total_steps = epochs * steps_per_epoch
    max_length = config.max_length or model_max_length(backbone, tokenizer)

    torch.manual_seed(config.seed)
    head = TaskHead(kind, bcfg.hidden_size, labels.n_train)
    model = TaskModel(backbone, head).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, config.warmup_ratio)
    )

    step = 0
    acct = {"wall": 0.0, "probe": 0.0, "train": 0.0, "train_sentences": 0}
    order = None
    ckpt_path = _checkpoint_path(out_dir)
    if ckpt_path.exists():
        state = _load_checkpoint(ckpt_path)
        bad = config.mismatches(state["config"])
        if bad:
            raise ValueError(
                f"{out_dir} holds a run with different settings; use another --out or the "
                "same settings. Differences: " + "; ".join(bad)
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        step = int(state["step"])
        acct = dict(state["acct"])
        order = np.asarray(state["order"])
        logger.info("Resuming %s at step %d of %d", out_dir, step, total_steps)

    geo_log = JsonlLog(out_dir / "geometry.jsonl", GEOMETRY_KEY)
    met_log = JsonlLog(out_dir / "metrics.jsonl", METRICS_KEY)
    geo_log.append(
        {
            "record": "header",
            "task": train_data.name,
            "kind": kind,
            "model": config.model,
            "label_names": list(labels.names),
            "n_train_labels": labels.n_train,
            "test_labels_missing_from_train": list(labels.missing_from_train),
            "n_test_examples_with_unseen_label": int((labels.test_ids >= labels.n_train).sum()),
            "n_train_examples": int(train_data.n_examples),
            "n_test_examples": int(test_data.n_examples),
            "n_train_sentences": n_sent,
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total_steps,
            "max_length": max_length,
            "layers": int(bcfg.num_hidden_layers) + 1,
            "config": config.to_json(),
        }
    )
    logger.info(
        "Task %s: %d train examples in %d sentences, %d test examples, %d labels; "
        "%d epochs x %d steps",
        train_data.name,
        train_data.n_examples,
        n_sent,
        test_data.n_examples,
        len(labels.names),
        epochs,
        steps_per_epoch,
    )

    last = {"test_accuracy": None, "train_accuracy": None}
    for rec in met_log.records():
        last = {"test_accuracy": rec["test_accuracy"], "train_accuracy": rec["train_accuracy"]}
    losses: list[float] = []
    # Each probe's label-pair solutions start the next probe's (per split and
    # layer). They are saved after every probe of a split, so that a resumed
    # run (whatever its checkpoint's step) starts each probe from the same
    # supports as an uninterrupted run.
    warm = _load_warm(out_dir) if config.geometry else {}

    def probe(at_step: int, epoch: int) -> None:
        keys_done = ("metrics", at_step) in met_log and (
            not config.geometry
            or all(
                ("geometry", at_step, split, layer) in geo_log
                for split in ("train", "test")
                for layer in range(bcfg.num_hidden_layers + 1)
            )
        )
        if keys_done:
            return
        t0, c0 = time.perf_counter(), time.process_time()
        accs = {}
        for data, ids in ((train_data, labels.train_ids), (test_data, labels.test_ids)):
            out = probe_split(
                model.backbone,
                tokenizer,
                data,
                ids,
                labels.names,
                geo_log,
                step=at_step,
                epoch=epoch,
                batch_size=config.batch_size,
                directprobe=config.directprobe,
                device=device,
                progress=bars,
                geometry=config.geometry,
                warm=warm,
            )
            if out.records:  # this probe solved pairs: their supports changed
                _save_warm(out_dir, warm)
            accs[data.split] = _accuracy(model.head, out.last_layer, ids, device)
        seconds = time.perf_counter() - t0
        acct["probe"] += seconds
        acct["probe_cpu"] = acct.get("probe_cpu", 0.0) + time.process_time() - c0
        met_log.append(
            {
                "record": "metrics",
                "step": at_step,
                "epoch": epoch,
                "train_accuracy": accs["train"],
                "test_accuracy": accs["test"],
                "train_loss": float(np.mean(losses)) if losses else None,
                "lr": scheduler.get_last_lr()[0],
                "probe_seconds": seconds,
            }
        )
        last.update(test_accuracy=accs["test"], train_accuracy=accs["train"])
        losses.clear()

    def save() -> None:
        acct["wall"] += time.perf_counter() - session_t0[0]
        session_t0[0] = time.perf_counter()
        _save_checkpoint(
            ckpt_path,
            {
                "version": CHECKPOINT_VERSION,
                "config": config.to_json(),
                "step": step,
                "epochs": epochs,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                },
                "order": order,
                "acct": acct,
            },
        )

    session_t0 = [wall0]
    start_step = step
    # tqdm bars only in a terminal; a log gets ProgressLine's plain lines.
    bars = config.progress and is_terminal(sys.stderr)
    model.train()
    if step == 0:
        probe(0, 0)
    stop = total_steps if config.max_steps is None else min(total_steps, config.max_steps)
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc=f"train {train_data.name}",
        disable=not bars,
    )
    line = None
    if config.progress and not bars and step < stop:
        line = ProgressLine(
            f"train {train_data.name}", [("steps", 1.0)], interval=PROGRESS_INTERVAL
        )
        line.begin("steps")
    while step < stop:
        epoch, pos = divmod(step, steps_per_epoch)
        if pos == 0 or order is None:  # a checkpoint mid-epoch carries its order
            order = _epoch_order(config.seed, epoch, n_sent)
        t0, c0 = time.perf_counter(), time.process_time()
        batch_sents = order[pos * config.batch_size : (pos + 1) * config.batch_size]
        sentences, rows, targets = [], [], []
        for b, k in enumerate(batch_sents):
            sentences.append(list(train_data.sentences[groups.sentence_ids[k]]))
            ex = groups.rows[groups.starts[k] : groups.starts[k + 1]]
            r = np.asarray(train_data.targets)[ex].copy()
            r[:, 0] = b
            rows.append(r)
            targets.append(labels.train_ids[ex])
        rows_np = np.concatenate(rows)
        y = np.concatenate(targets)
        enc = encode(tokenizer, sentences, max_length=max_length)
        optimizer.zero_grad(set_to_none=True)
        logits = model(enc, torch.as_tensor(rows_np))
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y, device=device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        losses.append(float(loss.detach()))
        optimizer.step()
        scheduler.step()
        step += 1
        acct["train"] += time.perf_counter() - t0
        acct["train_cpu"] = acct.get("train_cpu", 0.0) + time.process_time() - c0
        acct["train_sentences"] += len(sentences)
        bar.update(1)
        if losses:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if line is not None:
            line.update(
                (step - start_step) / max(1, stop - start_step),
                f"step {step}/{total_steps} loss {losses[-1]:.3f}",
            )
        if on_step is not None:
            on_step(step, total_steps, losses[-1])
        done_epoch = step // steps_per_epoch if step % steps_per_epoch == 0 else epoch
        if step == total_steps or (config.probe_every and step % config.probe_every == 0):
            probe(step, done_epoch)
        if step < stop and config.save_every and step % config.save_every == 0:
            save()
    bar.close()
    if line is not None:
        line.end("steps")
        line.close()
    completed = step >= total_steps
    # A finished directory run again: nothing to redo, nothing is rewritten.
    already_done = completed and step == start_step and (out_dir / "results.json").exists()
    if not already_done:
        save()
        if completed and config.save_model:
            with hf_bars(bars):
                _save_model_dir(out_dir, model, tokenizer, labels)
    result = TrainResult(
        completed=completed,
        step=step,
        total_steps=total_steps,
        epochs=epochs,
        test_accuracy=last["test_accuracy"],
        train_accuracy=last["train_accuracy"],
        wall_seconds=acct["wall"],
        probe_seconds=acct["probe"],
        train_seconds=acct["train"],
        train_sentences_per_second=acct["train_sentences"] / acct["train"]
        if acct["train"]
        else 0.0,
        out_dir=out_dir,
        train_cpu_seconds=acct.get("train_cpu", 0.0),
        probe_cpu_seconds=acct.get("probe_cpu", 0.0),
    )
    if completed and not already_done:
        write_json(
            out_dir / "results.json",
            {
                "task": train_data.name,
                "model": config.model,
                "test_accuracy": result.test_accuracy,
                "train_accuracy": result.train_accuracy,
                "steps": step,
                "epochs": epochs,
                "wall_seconds": result.wall_seconds,
                "probe_seconds": result.probe_seconds,
                "probe_fraction": result.probe_fraction,
                "train_seconds": result.train_seconds,
                "train_sentences_per_second": result.train_sentences_per_second,
                "train_cpu_seconds": result.train_cpu_seconds,
                "probe_cpu_seconds": result.probe_cpu_seconds,
                "n_train_examples": int(train_data.n_examples),
                "n_test_examples": int(test_data.n_examples),
                "test_labels_missing_from_train": list(labels.missing_from_train),
                "config": config.to_json(),
            },
        )
    return result

"""Real per-layer vectors for the benchmarks, built with a local encoder (offline).

    python -m bench.extract_layers --task pos --split train [--layers 0-6] \
        [--data-dir D] [--model M] [--out DIR]

writes, for every requested layer k, ``DIR/<task>_<split>_L<k>.npy`` (float32,
(n_examples, D), rows in corpus order) and ``DIR/<task>_<split>.labels.txt``
(one label per line, same order), plus ``DIR/<task>_<split>.meta.json`` (model
folder, row count, width, seconds). Every file is written to a temp file and
moved into place, and files already present are skipped, so an interrupted run
resumes. A cache built with another model is refused rather than mixed.

DIR defaults to $GEOMCORE_BENCH_CACHE, else <repo>/cache (gitignored).
The engine's main benchmark set is PUD POS train, layer 6: 16,858 x 384.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from bench.cache import cache_dir, labels_path, layer_path, meta_path

__all__ = ["main", "parse_layers"]

logger = logging.getLogger(__name__)


def parse_layers(spec: str | None, n_layers: int) -> list[int]:
    """'0-6', '6', '0,3,6' or '0-2,6' -> sorted unique layers; None -> 0..n_layers."""
    if spec is None:
        return list(range(n_layers + 1))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                layers.update(range(lo, hi + 1))
            else:
                layers.add(int(part))
    except ValueError:
        raise ValueError(
            f"--layers {spec!r} is not a layer list; use e.g. 0-6, 6 or 0,3,6."
        ) from None
    bad = sorted(k for k in layers if not 0 <= k <= n_layers)
    if bad:
        raise ValueError(
            f"--layers {spec!r}: layers {bad} are outside 0..{n_layers} for this model."
        )
    return sorted(layers)


def build_parser() -> argparse.ArgumentParser:
    from finetune.models import DEFAULT_MODEL
    from finetune.tasks import SPLITS, TASKS

    p = argparse.ArgumentParser(
        prog="python -m bench.extract_layers",
        description="Write per-layer example vectors of a task split for the benchmarks.",
    )
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--layers", default=None, help="e.g. 0-6 (default: all layers)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="corpus root (default: $FINETUNE_DATA_DIR)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"default: {DEFAULT_MODEL}")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: $GEOMCORE_BENCH_CACHE or <repo>/cache)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-progress", action="store_true")
    return p


def extract(args: argparse.Namespace) -> dict:
    """Do the work; returns a summary dict (also written as the meta file)."""
    from finetune.embed import embed_layers
    from geomcore.io import save_npy_atomic, write_lines_atomic
    from finetune.models import load_encoder, resolve_model_path
    from finetune.tasks import load_task

    out = Path(args.out) if args.out is not None else cache_dir()
    model_dir = str(resolve_model_path(args.model).resolve())
    meta_file = meta_path(out, args.task, args.split)
    if meta_file.is_file():
        old = json.loads(meta_file.read_text(encoding="utf-8"))
        if old.get("model") != model_dir:
            raise ValueError(
                f"{out} already holds {args.task}/{args.split} vectors from model "
                f"{old.get('model')}; refusing to mix them with {model_dir}: choose another "
                "--out or delete those files."
            )
    task = load_task(args.task, args.split, args.data_dir)
    model, tokenizer = load_encoder(model_dir)
    layers = parse_layers(args.layers, int(model.config.num_hidden_layers))
    todo = [k for k in layers if not layer_path(out, args.task, args.split, k).is_file()]
    t0 = time.perf_counter()
    if todo:
        vectors = embed_layers(
            model, tokenizer, task, batch_size=args.batch_size, layers=todo,
            progress=not args.no_progress,
        )
        for k, v in zip(todo, vectors):
            save_npy_atomic(layer_path(out, args.task, args.split, k), v.numpy(), make_dirs=True)
    seconds = time.perf_counter() - t0
    lab = labels_path(out, args.task, args.split)
    if not lab.is_file():
        write_lines_atomic(lab, task.labels, make_dirs=True)
    width = (2 if task.kind == "pair" else 1) * int(model.config.hidden_size)
    summary = {
        "task": args.task,
        "split": args.split,
        "model": model_dir,
        "rows": task.n_examples,
        "width": width,
        "layers_written": todo,
        "layers_skipped": [k for k in layers if k not in todo],
        "seconds": round(seconds, 2),
    }
    if todo or not meta_file.is_file():
        write_lines_atomic(meta_file, [json.dumps(summary, sort_keys=True)], make_dirs=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = extract(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"extract_layers: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{summary['task']}/{summary['split']}: {summary['rows']} x {summary['width']}; "
        f"wrote layers {summary['layers_written']}, skipped {summary['layers_skipped']} "
        f"in {summary['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

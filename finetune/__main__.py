"""The ``finetune`` command line: ``train``, ``study``, ``embed`` and ``data``.

    finetune train --task ps-role --out runs/ps-role --probe-every 10
    python -m finetune train --task pos --model PATH --out runs/pos --epochs 1

The corpora are read from ``--data-dir`` or the environment variable
FINETUNE_DATA_DIR. ``main(argv)`` returns the exit status: 0 on success, 2 for
bad input (the message names the file, line or flag), 1 for a run that
stopped early because of ``--max-steps`` (it resumes when run again).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

logger = logging.getLogger("finetune")


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    from finetune.models import DEFAULT_MODEL
    from finetune.tasks import TASKS

    p = subparsers.add_parser(
        "train",
        help="fine-tune an encoder on a task, streaming per-layer geometry to OUT/geometry.jsonl",
        description=(
            "Fine-tune a BERT-family encoder with a task head (AdamW, linear warm-up/decay), "
            "streaming the per-layer label geometry of the train and test splits to "
            "OUT/geometry.jsonl at step 0, every K steps and after the last step. "
            "Running again on the same OUT resumes from OUT/checkpoint."
        ),
    )
    p.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--out", required=True, type=Path, help="run directory (created if missing)")
    p.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"installed model package, local folder or cached HF name (default: {DEFAULT_MODEL})",
    )
    p.add_argument("--data-dir", type=Path, default=None,
                   help="corpus root (default: $FINETUNE_DATA_DIR)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: 10 for <= 6 layers and hidden <= 512, else 3)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per step (default 32)")
    p.add_argument("--lr", type=float, default=3e-5, help="peak learning rate (default 3e-5)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    p.add_argument("--warmup-ratio", type=float, default=0.1,
                   help="fraction of steps of linear warm-up (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of head init, dropout, data order")
    p.add_argument("--probe-every", type=int, default=0, metavar="K",
                   help="probe the geometry every K optimizer steps (0: only first and last)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="checkpoint every N steps (0: only at the end / at --max-steps)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps in total (resume later by running again)")
    p.add_argument("--max-train-examples", type=int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--max-test-examples", type=int, default=None,
                   help="use only the first N test examples")
    p.add_argument("--max-length", type=int, default=None,
                   help="sub-tokens per sentence (default: the model's maximum)")
    p.add_argument("--no-geometry", action="store_true",
                   help="plain fine-tuning: no geometry log (accuracy is still logged)")
    p.add_argument("--directprobe", action="store_true",
                   help="also record DirectProbe's number of clusters per layer (slow)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--no-save-model", action="store_true",
                   help="do not write OUT/model (the fine-tuned encoder and head)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from finetune.config import TrainConfig
    from finetune.train import train

    config = TrainConfig(
        task=args.task,
        out_dir=args.out,
        model=args.model,
        data_dir=args.data_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        probe_every=args.probe_every,
        save_every=args.save_every,
        max_steps=args.max_steps,
        max_train_examples=args.max_train_examples,
        max_test_examples=args.max_test_examples,
        max_length=args.max_length,
        geometry=not args.no_geometry,
        directprobe=args.directprobe,
        device=args.device,
        progress=not args.no_progress,
        save_model=not args.no_save_model,
    )
    result = train(config)
    summary = {
        "completed": result.completed,
        "step": result.step,
        "total_steps": result.total_steps,
        "test_accuracy": result.test_accuracy,
        "train_accuracy": result.train_accuracy,
        "wall_seconds": round(result.wall_seconds, 2),
        "probe_fraction": round(result.probe_fraction, 4),
        "train_sentences_per_second": round(result.train_sentences_per_second, 2),
        "out": str(result.out_dir),
    }
    print(json.dumps(summary))
    if not result.completed:
        print(
            f"stopped at step {result.step} of {result.total_steps}; run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_study_parser(subparsers: argparse._SubParsersAction) -> None:
    from finetune.models import DEFAULT_MODEL
    from finetune.study import ALL_TASKS, PRESETS

    p = subparsers.add_parser(
        "study",
        help="the 2022 paper's experiments end to end -> OUT/report.md (resumable)",
        description=(
            "Fine-tune the model on each task (streaming per-layer geometry), probe it before and "
            "after with DirectProbe and MLP probes, probe PS-fxn with models tuned on other tasks, "
            "and write OUT/report.md, OUT/results.json, OUT/tables/*.csv, OUT/figures/*.png. "
            "Running again on the same OUT resumes at the first unfinished unit of work. "
            "Presets: smoke (minutes; tiny slices), quick (default; whole corpora, about 30 "
            "min on 2 CPU cores), paper (the paper's full schedule, about 1.5 h "
            "projected on 2 CPU cores)."
        ),
    )
    p.add_argument("--out", required=True, type=Path, help="study directory (created if missing)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="installed model package, local folder or cached HF name "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--tasks", default=",".join(ALL_TASKS),
                   help=f"comma-separated tasks (default: {','.join(ALL_TASKS)})")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="how much of the paper's schedule to run (default: quick)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="corpus root (default: $FINETUNE_DATA_DIR)")
    p.add_argument("--seed", type=int, default=0, help="seed of fine-tuning and probes (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: units one after another in this process (default); ray: units "
                        "as Ray tasks, independent ones at once (needs the cluster extra)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: a running cluster (HOST:PORT from `ray start "
                        "--head`, or auto); default $RAY_ADDRESS, else a new local cluster")
    p.add_argument("--cpus-per-unit", type=float, default=1.0, metavar="N",
                   help="with --executor ray: CPUs each unit asks for (default 1)")
    p.set_defaults(func=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    from finetune.study import run_study
    from finetune.tasks import resolve_data_dir
    from geomcore.executors import JobsFailed

    data_dir = resolve_data_dir(args.data_dir)
    try:
        report = run_study(
            args.out, model=args.model, tasks=args.tasks, preset=args.preset, data_dir=data_dir,
            device=args.device, progress=not args.no_progress, seed=args.seed,
            executor=args.executor, ray_address=args.ray_address,
            cpus_per_unit=args.cpus_per_unit,
        )
    except JobsFailed as exc:
        print(f"finetune study: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune",
        description="Fine-tune BERT-family encoders and stream their geometry into geomcore.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_train_parser(subparsers)
    _add_study_parser(subparsers)
    from finetune import corpora, embed_cli

    embed_cli.register(subparsers)
    corpora.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 stopped early, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from geomcore.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"finetune {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

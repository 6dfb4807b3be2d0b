"""``finetune embed``: write one layer's example vectors of one task split to .npy.

    finetune embed --task ps-role --split train --layer 6 --out role_train_L6.npy

writes ``role_train_L6.npy`` (float32, (n_examples, D), rows in corpus order)
and ``role_train_L6.labels.txt`` beside it (one label per line, same order).
Both files are written to a temporary file in the target folder and moved into
place with os.replace, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geomcore.io import save_npy_atomic, write_lines_atomic

__all__ = ["register", "run", "labels_path_for"]


def labels_path_for(out: Path) -> Path:
    """X.npy -> X.labels.txt (same folder, same stem)."""
    out = Path(out)
    stem = out.name[: -len(".npy")] if out.name.endswith(".npy") else out.name
    return out.with_name(stem + ".labels.txt")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``embed`` subcommand (sets ``func=run``)."""
    from finetune.models import DEFAULT_MODEL
    from finetune.tasks import SPLITS, TASKS

    p = subparsers.add_parser(
        "embed",
        help="write one layer's example vectors of a task split to a .npy file",
        description=(
            "Embed every example of a task split with an encoder and write layer LAYER as a "
            "float32 (n_examples, D) .npy (rows in corpus order), plus OUT's stem + "
            "'.labels.txt' with one label per line. Word vectors are sub-token means; DEP rows "
            "are concat(word, head); TREC rows are [CLS]."
        ),
    )
    p.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--split", required=True, help=f"one of: {', '.join(SPLITS)}")
    p.add_argument("--layer", required=True, type=int,
                   help="0 = embedding output, 1..L = transformer layers")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"installed model package, local folder or cached HF name "
                        f"(default: {DEFAULT_MODEL})")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="corpus root (default: $FINETUNE_DATA_DIR)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--out", required=True, type=Path, help="output .npy path")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Embed and write; bad input raises ValueError/FileNotFoundError saying what to fix."""
    from finetune.embed import embed_layers
    from finetune.models import load_encoder
    from finetune.tasks import check_task, load_task, unseen_labels

    check_task(args.task)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must end in .npy; got {out}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}.")
    task = load_task(args.task, args.split, args.data_dir)
    model, tokenizer = load_encoder(args.model)
    n_layers = int(model.config.num_hidden_layers)
    if not 0 <= args.layer <= n_layers:
        raise ValueError(
            f"--layer must be in 0..{n_layers} for this model (0 = embeddings); got {args.layer}."
        )
    (vectors,) = embed_layers(
        model, tokenizer, task, batch_size=args.batch_size, layers=[args.layer],
        progress=not args.no_progress,
    )
    labels_out = labels_path_for(out)
    save_npy_atomic(out, vectors.numpy(), make_dirs=True)
    write_lines_atomic(labels_out, task.labels, make_dirs=True)
    missing = unseen_labels(task)
    note = f"; labels absent from train: {', '.join(missing)}" if missing else ""
    print(f"wrote {out} {tuple(vectors.shape)} float32 and {labels_out}{note}")
    return 0

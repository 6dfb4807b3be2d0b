"""The ``geomcore`` command line: ``probe``, ``probe-many``, ``distances`` and ``compare``.

``main(argv)`` returns the exit status: 0 on success, 2 for bad input (one line
``geomcore: error: ...`` on stderr, no traceback), 130 when interrupted.
Set ``GEOMCORE_DEBUG=1`` to get full tracebacks instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geomcore import io as gio
from geomcore._validate import check_tolerances

__all__ = ["main", "build_parser", "run_probe", "SCHEMA_VERSION"]

logger = logging.getLogger(__name__)

#: Version of the results.json layout (bump on incompatible changes).
SCHEMA_VERSION = 1

RESULTS = "results.json"
CLUSTERS = "clusters.txt"
DIS = "dis.txt"
PREDICTION = "prediction.txt"
CHECKPOINT = ".clustering_checkpoint.npz"


class UsageError(ValueError):
    """Bad input or arguments: reported as one line, exit status 2."""


def _check_tolerance_flags(args: argparse.Namespace) -> None:
    """--tol and --rtol through the library's one tolerance check."""
    try:
        check_tolerances(args.tol, args.rtol, names=("--tol", "--rtol"))
    except ValueError as exc:
        raise UsageError(str(exc).replace("`", "")) from exc


# ---------------------------------------------------------------- help texts

MAIN_DESC = """\
geomcore: the geometry of labelled vector sets (DirectProbe, Zhou & Srikumar 2021).

Give it vectors (one per word, sentence, ...) and one label per vector. It finds
the fewest label-pure clusters whose convex hulls do not overlap (DirectProbe),
measures distances between clusters and labels, and predicts test labels by the
nearest cluster. No classifier is trained.

commands:
  probe       cluster a training set, measure it, optionally predict a test set
  probe-many  many probe jobs from a manifest, one after another or as Ray tasks
  distances   only the label-to-label hull distance matrix (fast)
  compare     Pearson similarity of two results' label distance vectors

example:
  geomcore probe --train X.npy --train-labels y.txt --test P.npy --test-labels t.txt --out run1
Run `geomcore COMMAND --help` for the files each command reads and writes.
"""

FORMATS = """\
input files:
  vectors (--train, --test): one of
      X.npy          a 2-D array (n_points, n_features), any real dtype
      X.npz[:KEY]    one array of an .npz (name it with :KEY when there are several)
      X.txt          text: one vector per line, numbers separated by spaces
  labels (--train-labels, --test-labels): one label per vector, same order, one of
      y.txt          one label per line (any string, e.g. NOUN)
      entities.txt   DirectProbe's entities file: text<TAB>label per line
      y.npy          a 1-D array of ints or strings
  label set (--label-set, optional): DirectProbe's file of all labels, one per line
"""

PROBE_DESC = f"""\
Cluster the training vectors with DirectProbe, measure the clusters, and (with
--test) predict each test vector's label as the label of the nearest cluster.

{FORMATS}
output files in --out DIR (each written atomically; results.json is written last,
so its presence means the run finished):
  clusters.txt    line i: cluster id (0..K-1) of training point i
  dis.txt         one line per pair of clusters with different labels:
                  "(i-A, j-B): d"  (cluster ids, their labels, hull distance, 4 decimals)
  prediction.txt  (with --test) line i: "gold<TAB>c-A,d<TAB>..." every cluster, nearest
                  first, with its label and the distance from test point i to its hull
  results.json    counts, clusters, label distance matrix, distance vector, per-label
                  measures, accuracy; full precision (see the README for the schema)

A finished DIR is detected and not recomputed (use --force to recompute).

example:
  geomcore probe --train train.npy --train-labels train_labels.txt \\
                 --test test.npy --test-labels test_labels.txt --out results/layer6
"""

DIST_DESC = f"""\
Compute only the hull distance between every pair of labels (each label's points
taken as one set). This is DirectProbe's label distance when the labels are
linearly separable (one cluster per label), and it is much faster than `probe`.
Overlapping label pairs get distance 0 and are reported.

{FORMATS}
output: the matrix printed as a table, or --out FILE.json (same keys as
results.json: labels, label_distances, distance_vector, ...; usable by `compare`)
or --out FILE.csv (the matrix with a header row and a label column).
"""

PROBE_MANY_DESC = """\
Run many `geomcore probe` jobs listed in MANIFEST, here one after another or on a
Ray cluster (--executor ray; jobs run at once, each asking for --cpus-per-job).

MANIFEST: JSON lines, one job per line (blank lines and # comments skipped):
  {"name": "pos_L6", "train": "X.npy", "train_labels": "y.txt",
   "test": "P.npy", "test_labels": "t.txt"}
keys: name (letters, digits, . _ -; unique), train, train_labels, optional
test + test_labels, optional label_set; relative paths are relative to the
manifest's folder; file formats as in `geomcore probe --help`.

output in --out DIR: DIR/<name>/ holds each job's `geomcore probe` files;
DIR/summary.csv and DIR/summary.json one row per job (written when all jobs
finished). A job already finished with the same inputs is not recomputed.
"""

COMPARE_DESC = """\
Spatial similarity of two representations (or of train vs test): Pearson's r
between the label distance vectors of two results files (from `geomcore probe`
or `geomcore distances --out FILE.json`). Label pairs are matched by label name;
pairs found in only one file are dropped and listed.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``geomcore`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="geomcore", description=MAIN_DESC, formatter_class=fmt)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details to stderr"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--train",
            required=True,
            metavar="VECTORS",
            help="training vectors (.npy, .npz[:KEY] or text)",
        )
        p.add_argument(
            "--train-labels",
            required=True,
            metavar="LABELS",
            help="one label per training vector (text, entities file, or .npy)",
        )
        p.add_argument(
            "--label-set",
            metavar="FILE",
            help="optional file of all allowed labels, one per line; any other label is an error",
        )
        p.add_argument(
            "--tol",
            type=float,
            default=1e-6,
            help="two hulls closer than TOL x their diameter count as overlapping (default 1e-6)",
        )
        p.add_argument(
            "--rtol",
            type=float,
            default=1e-4,
            help="relative accuracy of the reported distances (default 1e-4)",
        )

    p = sub.add_parser(
        "probe",
        help="cluster, measure and predict (DirectProbe)",
        description=PROBE_DESC,
        formatter_class=fmt,
    )
    add_common(p)
    p.add_argument(
        "--test", metavar="VECTORS", help="test vectors to predict (needs --test-labels)"
    )
    p.add_argument(
        "--test-labels", metavar="LABELS", help="gold labels of the test vectors (needs --test)"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="output directory (created if missing)"
    )
    p.add_argument(
        "--force", action="store_true", help="recompute even if DIR already holds a finished run"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser(
        "probe-many",
        help="many probe jobs from a manifest (locally or on a Ray cluster)",
        description=PROBE_MANY_DESC,
        formatter_class=fmt,
    )
    p.add_argument("manifest", metavar="MANIFEST", help="JSON-lines file, one job per line")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default) or ray (needs the cluster extra)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="with --executor ray: a running cluster (HOST:PORT or auto); default "
                   "$RAY_ADDRESS, else a new local cluster")
    p.add_argument("--cpus-per-job", type=float, default=1.0, metavar="N",
                   help="with --executor ray: CPUs each job asks for (default 1)")
    p.add_argument("--tol", type=float, default=1e-6, help="as in probe (default 1e-6)")
    p.add_argument("--rtol", type=float, default=1e-4, help="as in probe (default 1e-4)")
    p.add_argument("--force", action="store_true", help="recompute finished jobs too")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_probe_many)

    p = sub.add_parser(
        "distances",
        help="label-to-label hull distance matrix only (fast)",
        description=DIST_DESC,
        formatter_class=fmt,
    )
    add_common(p)
    p.add_argument(
        "--out", metavar="FILE", help="write FILE.json or FILE.csv instead of printing the table"
    )
    p.add_argument(
        "--path",
        choices=("auto", "host", "device"),
        default="auto",
        help="engine path: host (exact active-set solves, the default on CPU) or device "
        "(batched JAX iteration, the default on accelerators)",
    )
    p.set_defaults(func=_cmd_distances)

    p = sub.add_parser(
        "compare",
        help="Pearson similarity of two results files",
        description=COMPARE_DESC,
        formatter_class=fmt,
    )
    p.add_argument("a", metavar="A.json", help="first results file")
    p.add_argument("b", metavar="B.json", help="second results file")
    p.set_defaults(func=_cmd_compare)
    return parser


# ---------------------------------------------------------------- loading


def _load_xy(
    vec_path: str, lab_path: str, role: str, label_set: list[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    X = gio.read_embeddings(vec_path, name=f"--{role}")
    if X.shape[0] == 0:
        hint = (
            "give a non-empty test set or omit --test"
            if role == "test"
            else "it needs at least one vector"
        )
        raise UsageError(f"--{role} {vec_path} has no vectors; {hint}.")
    y = gio.read_labels(lab_path, name=f"--{role}-labels")
    if y.shape[0] != X.shape[0]:
        raise UsageError(
            f"--{role}-labels {lab_path} has {y.shape[0]} labels but --{role} {vec_path} has "
            f"{X.shape[0]} vectors; there must be exactly one label per vector, in the same order."
        )
    if label_set is not None:
        allowed = set(label_set)
        bad = [i for i, v in enumerate(y.tolist()) if str(v) not in allowed]
        if bad:
            raise UsageError(
                f"--{role}-labels {lab_path}: label {str(y[bad[0]])!r} (entry {bad[0] + 1}) "
                "is not in --label-set "
                f"({len(bad)} entries outside the set)."
            )
    return X, y


def _match_label_kind(y_test: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Make test labels comparable with training labels (ints read from text, etc.)."""
    if y_train.dtype.kind == y_test.dtype.kind:
        return y_test
    if y_train.dtype.kind in "US":
        return y_test.astype(str)
    try:
        return y_test.astype(y_train.dtype)
    except ValueError:
        return y_test


def _inputs_record(args: argparse.Namespace) -> dict:
    rec = {}
    for role in ("train", "train_labels", "test", "test_labels", "label_set"):
        path = getattr(args, role, None)
        if path is None:
            continue
        file_path, _ = gio._split_npz_spec(path)
        rec[role] = {
            "path": str(Path(path).resolve()) if Path(path).exists() else str(path),
            "sha256": gio.file_sha256(file_path) if file_path.is_file() else None,
        }
    return rec


def _same_run(old: dict, inputs: dict, settings: dict) -> bool:
    """Whether a finished results.json was made from the same files and settings."""
    old_inputs = old.get("inputs", {})
    if set(old_inputs) != set(inputs):
        return False
    if any(old_inputs[k].get("sha256") != v["sha256"] for k, v in inputs.items()):
        return False
    return old.get("settings") == settings


# ---------------------------------------------------------------- probe


def run_probe(args: argparse.Namespace, out: Any = None) -> int:
    """The work of ``geomcore probe`` (argparse namespace in, files out); prints to ``out``."""
    out = sys.stdout if out is None else out
    from geomcore.analysis import LABEL_PAIR_ORDER, analyze_probe
    from geomcore.directprobe import directprobe
    from geomcore.directprobe.predict import rank_clusters
    from geomcore.distances import point_hull_distances

    t_start = time.perf_counter()
    if (args.test is None) != (args.test_labels is None):
        raise UsageError("--test and --test-labels go together: give both or neither.")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory.")
    _check_tolerance_flags(args)

    settings = {"tol": args.tol, "rtol": args.rtol}
    inputs = _inputs_record(args)
    results_path = out_dir / RESULTS
    if results_path.exists() and not args.force:
        try:
            old = gio.read_json(results_path)
        except ValueError:
            old = {}
        if _same_run(old, inputs, settings):
            if not args.quiet:
                print(
                    f"{results_path} is already finished for these inputs; nothing to do "
                    "(use --force to recompute).",
                    file=out,
                )
            return 0
        raise UsageError(
            f"--out {out_dir} already holds the results of a different run (other input "
            "files or settings); "
            "choose another --out or add --force to overwrite."
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    label_set = gio.read_label_set(args.label_set) if args.label_set else None
    X, y = _load_xy(args.train, args.train_labels, "train", label_set)
    P = y_test = None
    if args.test is not None:
        P, y_test = _load_xy(args.test, args.test_labels, "test", label_set)
        if P.shape[1] != X.shape[1]:
            raise UsageError(
                f"--test {args.test} has {P.shape[1]} features per vector but --train "
                f"{args.train} has "
                f"{X.shape[1]}; both must come from the same representation."
            )
        y_test = _match_label_kind(y_test, y)
    t_loaded = time.perf_counter()

    # The clustering is the long step: it is checkpointed so that a run
    # interrupted later (measures, prediction, writing) resumes without it.
    checkpoint = out_dir / CHECKPOINT
    probe = None if args.force else _load_checkpoint(checkpoint, X, inputs, settings)
    resumed = probe is not None
    if probe is None:
        probe = _Clustering.of(directprobe(X, y, tol=args.tol, progress=not args.quiet))
        _save_checkpoint(checkpoint, probe, inputs, settings)
    elif not args.quiet:
        print(f"resuming: clustering reused from {checkpoint}", file=out)
    t_probed = time.perf_counter()
    analysis = analyze_probe(probe, tol=args.tol, rtol=args.rtol, progress=not args.quiet)
    t_measured = time.perf_counter()

    labels = np.asarray(probe.labels)
    label_list = labels.tolist()
    cluster_label = np.asarray(probe.cluster_label)
    cd = analysis.cluster_distances

    test_block = None
    if P is not None:
        phd = point_hull_distances(
            P, probe.X, probe.cluster_of, tol=args.tol, rtol=args.rtol, progress=not args.quiet
        )
        if not np.array_equal(np.asarray(phd.groups), np.arange(probe.n_clusters)):
            raise RuntimeError(
                f"point_hull_distances returned clusters {phd.groups}; "
                f"expected 0..{probe.n_clusters - 1}."
            )
        ranked, dists = rank_clusters(np.asarray(phd.distances, dtype=np.float64))
        ranked = np.asarray(ranked)
        dists = np.asarray(dists)
        predicted = labels[cluster_label[ranked[:, 0]]]
        correct = predicted == y_test
        known = set(label_list)
        unseen: dict[str, int] = {}
        for v in y_test.tolist():
            if v not in known:
                unseen[str(v)] = unseen.get(str(v), 0) + 1
        test_block = {
            "n_points": int(P.shape[0]),
            "accuracy": float(correct.mean()),
            "n_correct": int(correct.sum()),
            "unseen_test_labels": unseen,
            "n_unseen": int(sum(unseen.values())),
        }
    t_predicted = time.perf_counter()

    # Files: the original's three text files first, results.json last, so that
    # the presence of results.json means every other file is complete.
    gio.write_clusters(out_dir / CLUSTERS, probe.cluster_of)
    gio.write_dis(out_dir / DIS, cd.pairs, cluster_label, labels, cd.distance)
    if P is not None:
        gio.write_predictions(out_dir / PREDICTION, y_test, ranked, dists, cluster_label, labels)
    elif (out_dir / PREDICTION).exists():
        # A stale prediction.txt from an earlier --force'd run would be misleading.
        (out_dir / PREDICTION).unlink()

    ld = analysis.label_distances
    vec = ld.vector
    conflicts = probe.conflicts
    n_per_label = np.bincount(np.asarray(probe.y), minlength=len(label_list))
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "geomcore_version": _version(),
        "n_points": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_labels": len(label_list),
        "n_clusters": int(probe.n_clusters),
        "is_linear": bool(probe.is_linear),
        "has_overlapping_input": bool(len(conflicts) > 0),
        "labels": label_list,
        "label_set": label_set,
        "n_points_per_label": n_per_label,
        "n_clusters_per_label": np.bincount(cluster_label, minlength=len(label_list)),
        "clusters": np.asarray(probe.cluster_of),
        "cluster_label": [label_list[c] for c in cluster_label.tolist()],
        "conflicts": conflicts,
        "label_pair_order": LABEL_PAIR_ORDER,
        "label_pairs": [list(p) for p in vec.pairs],
        "distance_vector": vec.values,
        "label_distances": ld.matrix,
        "label_nearest_cluster_distances": ld.nearest,
        "label_pairs_separable": ld.separable,
        "min_distance_per_label": ld.min_distance,
        "inside_mean_distance_per_label": analysis.inside.label_mean,
        "inside_max_distance_per_label": analysis.inside.label_max,
        "label_centroids": analysis.centroids,
        "n_cluster_pairs": cd.n_pairs,
        "n_overlapping_cluster_pairs": int((~cd.separable).sum()),
        "n_escalated": cd.n_escalated,
        "n_merges": probe.n_merges,
        "n_checks": probe.n_checks,
        "probe_stats": probe.stats,
    }
    if test_block is not None:
        results["accuracy"] = test_block["accuracy"]
        results["unseen_test_labels"] = sorted(test_block["unseen_test_labels"])
        results["test"] = test_block
    else:
        results["unseen_test_labels"] = []
    results["inputs"] = inputs
    results["settings"] = settings
    t_end = time.perf_counter()
    results["timing"] = {
        "load_s": t_loaded - t_start,
        "probe_s": t_probed - t_loaded,
        "measures_s": t_measured - t_probed,
        "predict_s": t_predicted - t_measured,
        "total_s": t_end - t_start,
    }
    results["resumed_clustering"] = resumed
    gio.write_json(results_path, results)
    # results.json now holds everything the checkpoint did.
    checkpoint.unlink(missing_ok=True)

    if not args.quiet:
        print(
            f"{X.shape[0]} points, {len(label_list)} labels -> {probe.n_clusters} clusters "
            f"({'linear: one cluster per label' if probe.is_linear else 'not linearly separable'})",
            file=out,
        )
        if len(conflicts):
            print(
                f"note: {len(conflicts)} pairs of identical training vectors have different "
                "labels.",
                file=out,
            )
        if test_block is not None:
            print(
                f"test accuracy {test_block['accuracy']:.4f} on {test_block['n_points']} points",
                file=out,
            )
            if test_block["n_unseen"]:
                names = ", ".join(sorted(test_block["unseen_test_labels"]))
                print(
                    f"note: {test_block['n_unseen']} test points have labels never seen "
                    "in training "
                    f"({names}); they were predicted anyway and count as wrong.",
                    file=out,
                )
        print(
            f"wrote {out_dir}/{{{CLUSTERS},{DIS},"
            f"{PREDICTION + ',' if P is not None else ''}{RESULTS}}} "
            f"in {t_end - t_start:.1f} s",
            file=out,
        )
    return 0


@dataclass(frozen=True)
class _Clustering:
    """What the CLI needs of a DirectProbe ``Probe``; small enough to checkpoint."""

    X: np.ndarray
    labels: np.ndarray
    y: np.ndarray
    cluster_of: np.ndarray
    cluster_label: np.ndarray
    conflicts: np.ndarray
    n_merges: int
    n_checks: int
    stats: dict | None

    @property
    def n_clusters(self) -> int:
        return int(self.cluster_label.shape[0])

    @property
    def is_linear(self) -> bool:
        return self.n_clusters == int(self.labels.shape[0])

    @classmethod
    def of(cls, probe: Any) -> "_Clustering":
        return cls(
            X=np.asarray(probe.X),
            labels=np.asarray(probe.labels),
            y=np.asarray(probe.y, dtype=np.int64),
            cluster_of=np.asarray(probe.cluster_of, dtype=np.int64),
            cluster_label=np.asarray(probe.cluster_label, dtype=np.int64),
            conflicts=np.asarray(probe.conflicts, dtype=np.int64).reshape(-1, 2),
            n_merges=int(probe.n_merges),
            n_checks=int(probe.n_checks),
            stats=_stats_dict(getattr(probe, "stats", None)),
        )


def _save_checkpoint(path: Path, c: _Clustering, inputs: dict, settings: dict) -> None:
    meta = json.dumps(
        gio.to_jsonable(
            {
                "inputs": inputs,
                "settings": settings,
                "n_merges": c.n_merges,
                "n_checks": c.n_checks,
                "stats": c.stats,
            }
        )
    )
    with gio.atomic_open(path, "wb") as f:
        np.savez(
            f,
            labels=c.labels,
            y=c.y,
            cluster_of=c.cluster_of,
            cluster_label=c.cluster_label,
            conflicts=c.conflicts,
            meta=np.asarray(meta),
        )


def _load_checkpoint(path: Path, X: np.ndarray, inputs: dict, settings: dict) -> _Clustering | None:
    """The clustering of an interrupted run on the same inputs, or None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ("labels", "y", "cluster_of", "cluster_label", "conflicts")}
    except Exception as exc:  # a damaged checkpoint is only a lost shortcut
        logger.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return None

    def digests(rec: dict) -> dict:
        return {k: v.get("sha256") for k, v in rec.items()}

    if digests(meta.get("inputs", {})) != digests(inputs) or meta.get("settings") != settings:
        return None
    if arrays["cluster_of"].shape[0] != X.shape[0]:
        return None
    return _Clustering(
        X=X, n_merges=meta["n_merges"], n_checks=meta["n_checks"], stats=meta["stats"], **arrays
    )


def _stats_dict(stats: Any) -> dict | None:
    """The clustering's counters (a dataclass or NamedTuple) as a plain dict."""
    import dataclasses

    if stats is None:
        return None
    if dataclasses.is_dataclass(stats):
        return dataclasses.asdict(stats)
    if hasattr(stats, "_asdict"):
        return dict(stats._asdict())
    return None


def _cmd_probe(args: argparse.Namespace) -> int:
    return run_probe(args)


def _cmd_probe_many(args: argparse.Namespace) -> int:
    from geomcore.executors import JobsFailed
    from geomcore.probe_many import probe_many

    def done(name: str, _: Any) -> None:
        if not args.quiet:
            print(f"job {name}: done", flush=True)

    try:
        rows = probe_many(args.manifest, args.out, executor=args.executor,
                          ray_address=args.ray_address, tol=args.tol, rtol=args.rtol,
                          force=args.force, cpus_per_job=args.cpus_per_job, on_done=done)
    except JobsFailed as exc:
        print(f"geomcore: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"wrote {args.out}/summary.csv and summary.json ({len(rows)} jobs)")
    return 0


# ---------------------------------------------------------------- distances


def _cmd_distances(args: argparse.Namespace) -> int:
    from geomcore.analysis import LABEL_PAIR_ORDER, distance_vector, min_distance_per_label
    from geomcore.distances import label_distances

    _check_tolerance_flags(args)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and out_path.suffix.lower() not in (".json", ".csv"):
        raise UsageError(f"--out {out_path} must end in .json or .csv.")
    label_set = gio.read_label_set(args.label_set) if args.label_set else None
    t0 = time.perf_counter()
    X, y = _load_xy(args.train, args.train_labels, "train", label_set)
    ld = label_distances(X, y, tol=args.tol, rtol=args.rtol, path=args.path)
    labels = np.asarray(ld.labels).tolist()
    matrix = np.asarray(ld.matrix, dtype=np.float64)
    separable = np.asarray(ld.separable, dtype=bool)
    vec = distance_vector(matrix, labels)
    iu = np.triu_indices(len(labels), 1)
    overlapping = [(labels[i], labels[j]) for i, j in zip(*iu) if not separable[i, j]]
    elapsed = time.perf_counter() - t0

    if out_path is None:
        width = max([len(str(v)) for v in labels] + [8])
        print(" " * width + "".join(f" {str(v):>{width}}" for v in labels))
        for i, v in enumerate(labels):
            print(
                f"{str(v):>{width}}"
                + "".join(f" {matrix[i, j]:>{width}.4f}" for j in range(len(labels)))
            )
    elif out_path.suffix.lower() == ".csv":
        rows = ["label," + ",".join(_csv_field(v) for v in labels)]
        for i, v in enumerate(labels):
            rows.append(_csv_field(v) + "," + ",".join(repr(float(x)) for x in matrix[i]))
        if out_path.parent and not out_path.parent.exists():
            out_path.parent.mkdir(parents=True)
        gio.write_text_atomic(out_path, "\n".join(rows) + "\n")
    else:
        if out_path.parent and not out_path.parent.exists():
            out_path.parent.mkdir(parents=True)
        gio.write_json(
            out_path,
            {
                "schema_version": SCHEMA_VERSION,
                "geomcore_version": _version(),
                "kind": "label_distances",
                "n_points": int(X.shape[0]),
                "n_features": int(X.shape[1]),
                "n_labels": len(labels),
                "is_linear": not overlapping,
                "labels": labels,
                "label_distances": matrix,
                "label_pairs_separable": separable,
                "label_pair_order": LABEL_PAIR_ORDER,
                "label_pairs": [list(p) for p in vec.pairs],
                "distance_vector": vec.values,
                "min_distance_per_label": min_distance_per_label(matrix),
                "overlapping_label_pairs": [list(p) for p in overlapping],
                "settings": {"tol": args.tol, "rtol": args.rtol},
                "timing": {"total_s": elapsed},
            },
        )
    if overlapping:
        shown = ", ".join(f"{a}/{b}" for a, b in overlapping[:10])
        more = f" and {len(overlapping) - 10} more" if len(overlapping) > 10 else ""
        print(
            f"note: {len(overlapping)} label pairs overlap (distance 0): {shown}{more}. "
            "The labels are not "
            "linearly separable; `geomcore probe` gives cluster-level distances.",
            file=sys.stderr,
        )
    if out_path is not None:
        print(f"wrote {out_path} ({len(labels)} labels, {X.shape[0]} points, {elapsed:.1f} s)")
    return 0


def _csv_field(v: Any) -> str:
    s = str(v)
    if any(c in s for c in ',"\n'):
        s = '"' + s.replace('"', '""') + '"'
    return s


# ---------------------------------------------------------------- compare


def _vector_from_results(path: str) -> tuple[Any, dict]:
    from geomcore.analysis import DistanceVector

    data = gio.read_json(path)
    missing = [k for k in ("label_pairs", "distance_vector") if k not in data]
    if missing:
        raise UsageError(
            f"{path} has no {' or '.join(missing)}; give a results.json from `geomcore probe` or a "
            "file from `geomcore distances --out FILE.json`."
        )
    pairs, values = data["label_pairs"], data["distance_vector"]
    if len(pairs) != len(values):
        raise UsageError(
            f"{path}: label_pairs has {len(pairs)} entries but distance_vector has {len(values)}."
        )
    for k, (p, v) in enumerate(zip(pairs, values)):
        if not (isinstance(p, list) and len(p) == 2):
            raise UsageError(f"{path}: label_pairs[{k}] is {p!r}; expected a pair [A, B].")
        if v is None or not isinstance(v, (int, float)):
            raise UsageError(f"{path}: distance_vector[{k}] is {v!r}; expected a number.")
    vec = DistanceVector(
        pairs=tuple(tuple(p) for p in pairs), values=np.asarray(values, dtype=np.float64)
    )
    return vec, data


def _cmd_compare(args: argparse.Namespace) -> int:
    from geomcore.analysis import spatial_similarity

    va, da = _vector_from_results(args.a)
    vb, db = _vector_from_results(args.b)
    sim = spatial_similarity(va, vb)
    print(f"pearson_r {sim.r:.6f}")
    print(f"shared_label_pairs {sim.n_shared} (A: {len(va.pairs)}, B: {len(vb.pairs)})")
    for name, dropped in (("A", sim.only_a), ("B", sim.only_b)):
        if dropped:
            shown = ", ".join(f"{a}/{b}" for a, b in dropped[:10])
            more = f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
            print(f"dropped {len(dropped)} pairs found only in {name}: {shown}{more}")
    for name, d in (("A", da), ("B", db)):
        if d.get("is_linear") is False:
            print(
                f"note: {name} is not linearly separable; its label distances are means "
                "over cluster pairs "
                "(or 0 for overlapping labels)."
            )
    return 0


# ---------------------------------------------------------------- entry point


def _version() -> str:
    from geomcore import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``geomcore`` command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage or help
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    from geomcore.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    debug = os.environ.get("GEOMCORE_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args))
    except (ValueError, TypeError) as exc:
        if debug:
            raise
        print(f"geomcore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "geomcore: interrupted; finished files are complete, rerun to redo the rest.",
            file=sys.stderr,
        )
        return 130

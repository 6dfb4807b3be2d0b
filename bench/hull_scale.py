"""Label distances at the scale users bring: first call in a fresh process, memory, anchors.

    python -m bench.hull_scale [--sets pud_pos,ewt_pos,pud_dep] [--data-dir D] [--out FILE.json]

Sets (layer 6 of the default model; built into the bench cache on first use):
  * ``pud_pos``: PUD POS train words, 16,858 x 384, 17 labels (136 pairs);
  * ``ewt_pos``: UD English EWT dev + test words, about 50k x 384, 17 labels;
  * ``pud_dep``: PUD DEP train arcs, concatenated (word, head) vectors,
    768-d, 46 relations (1,035 pairs).

For each set, ``geomcore.label_distances`` runs in a fresh Python process
(so the first call pays imports and compiles, or reads them from the numba
and JAX caches), timed twice (first and second call), with the process's
peak resident memory; on ``ewt_pos`` also on its first third and two thirds,
to show how memory grows with the number of points. Then, in this process
and on the same label pairs, scikit-learn's ``SVC(kernel="linear", C=1e6)``
(libsvm, as the original DirectProbe) and, on the sets of ``--intel-sets``
(default ``pud_pos``: it takes many minutes per set), Intel's oneDAL SVC
(``sklearnex.svm.SVC``, same parameters) fit one model per pair. Their
distances (2 |w.x + b| / ||w|| minimised over the points, 0 when training
accuracy is below 1) are compared with geomcore's certified brackets:
an anchor's error is its distance outside [lower, upper], relative to upper.
Results go to stdout and, with ``--out``, to a JSON file (written atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bench.cache import cache_dir, labels_path, layer_path

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import geomcore
X = np.load(sys.argv[1]).astype(np.float64)
y = np.array(open(sys.argv[2], encoding="utf-8").read().splitlines())
rows = int(sys.argv[3])
X, y = X[:rows], y[:rows]
t_import = time.perf_counter() - t0
t = time.perf_counter()
ld = geomcore.label_distances(X, y)
first = time.perf_counter() - t
t = time.perf_counter()
ld2 = geomcore.label_distances(X, y)
second = time.perf_counter() - t
r = ld.results
gap = np.where(r.separable, (r.upper - r.lower) / np.where(r.upper > 0, r.upper, 1), 0.0)
print(json.dumps({
    "rows": int(X.shape[0]), "d": int(X.shape[1]), "labels": int(ld.labels.size),
    "pairs": int(r.n_pairs), "import_s": t_import, "first_s": first, "second_s": second,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "escalations": int(r.n_escalated), "max_certified_gap": float(gap.max()),
    "steps": int(r.iterations.sum()), "same_twice": bool(np.array_equal(ld.matrix, ld2.matrix)),
    "lower": r.lower.tolist(), "upper": r.upper.tolist(), "separable": r.separable.tolist(),
}))
"""


def _ewt_pos(data_dir: Path, cache: Path) -> None:
    """Layer 6 of the default model on EWT dev + test words (POS), into the cache."""
    from finetune.embed import embed_layers
    from finetune.models import DEFAULT_MODEL, load_encoder, resolve_model_path
    from finetune.tasks.conllu import UPOS_TAGS, read_conllu
    from finetune.tasks.data import make_task_data
    from geomcore.io import save_npy_atomic, write_lines_atomic

    sents = []
    for name in ("en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu"):
        sents += read_conllu(data_dir / "ud-english-ewt" / name)
    targets, labels = [], []
    for s, sent in enumerate(sents):
        for w, tok in enumerate(sent.tokens):
            targets.append((s, w, -1))
            labels.append(tok["upos"])
    task = make_task_data(
        "pos",
        "train",
        "token",
        [s.words for s in sents],
        targets,
        labels,
        tuple(sorted(set(UPOS_TAGS) | set(labels))),
    )
    model, tok = load_encoder(str(resolve_model_path(DEFAULT_MODEL)))
    X = embed_layers(model, tok, task, batch_size=32, layers=[6], progress=False)[0].numpy()
    save_npy_atomic(layer_path(cache, "ewt-pos", "devtest", 6), X, make_dirs=True)
    write_lines_atomic(labels_path(cache, "ewt-pos", "devtest"), labels, make_dirs=True)


_SETS = {
    "pud_pos": ("pos", "train"),
    "ewt_pos": ("ewt-pos", "devtest"),
    "pud_dep": ("dep", "train"),
}


def _ensure(name: str, data_dir: Path, cache: Path) -> tuple[Path, Path]:
    task, split = _SETS[name]
    x, y = layer_path(cache, task, split, 6), labels_path(cache, task, split)
    if x.is_file() and y.is_file():
        return x, y
    if name == "ewt_pos":
        _ewt_pos(data_dir, cache)
    else:
        from bench.extract_layers import main as extract

        code = extract(
            [
                "--task",
                task,
                "--split",
                split,
                "--layers",
                "6",
                "--data-dir",
                str(data_dir),
                "--out",
                str(cache),
                "--no-progress",
            ]
        )
        if code:
            raise SystemExit(f"extract_layers failed for {name}")
    return x, y


def _child(x: Path, y: Path, rows: int) -> dict:
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(x), str(y), str(rows)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _anchor(make, X, y, labels):
    """Seconds, separable flags and distances of one SVM fit per label pair."""
    iu, ju = np.triu_indices(labels.size, 1)
    sep, dist = [], []
    t0 = time.perf_counter()
    for i, j in zip(iu, ju):
        A, B = X[y == labels[i]], X[y == labels[j]]
        Z = np.vstack([A, B])
        t = np.r_[np.ones(len(A)), -np.ones(len(B))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = make().fit(Z, t)
        w, b = clf.coef_.ravel(), float(clf.intercept_[0])
        ok = bool(clf.score(Z, t) == 1.0)
        sep.append(ok)
        dist.append(float(np.min(2 * np.abs(Z @ w + b)) / np.linalg.norm(w)) if ok else 0.0)
    return time.perf_counter() - t0, np.array(sep), np.array(dist)


def _errors(res: dict, sep, dist) -> dict:
    lower, upper = np.array(res["lower"]), np.array(res["upper"])
    geo_sep = np.array(res["separable"])
    both = geo_sep & sep
    out = np.maximum(lower[both] - dist[both], dist[both] - upper[both]).clip(0) / upper[both]
    return {
        "max_rel_err": float(out.max()) if out.size else 0.0,
        "disagree": int(np.sum(sep != geo_sep)),
    }


def run(names, data_dir: Path, cache: Path, intel_sets=("pud_pos",)) -> list[dict]:
    from sklearn.svm import SVC

    try:
        from sklearnex.svm import SVC as IntelSVC
    except ImportError:  # the dev extra installs it; say so rather than skip silently
        raise SystemExit("bench.hull_scale needs scikit-learn-intelex: pip install -e '.[dev]'")
    out = []
    for name in names:
        x, y = _ensure(name, data_dir, cache)
        labels_all = np.array(y.read_text(encoding="utf-8").splitlines())
        n = labels_all.size
        sizes = [n // 3, 2 * n // 3, n] if name == "ewt_pos" else [n]
        mem = []
        for rows in sizes:
            res = _child(x, y, rows)
            mem.append(
                {
                    "rows": rows,
                    "peak_rss_mb": res["peak_rss_mb"],
                    "first_s": res["first_s"],
                    "second_s": res["second_s"],
                }
            )
        X = np.load(x).astype(np.float64)
        labels = np.unique(labels_all)
        t_svc, s_sep, s_dist = _anchor(
            lambda: SVC(kernel="linear", C=1e6, tol=1e-5, max_iter=50000), X, labels_all, labels
        )
        if name in intel_sets:
            t_int, i_sep, i_dist = _anchor(
                lambda: IntelSVC(kernel="linear", C=1e6, tol=1e-5, max_iter=50000),
                X,
                labels_all,
                labels,
            )
            intel = {
                "intel_svc_s": t_int,
                "ratio_intel_first": t_int / res["first_s"],
                "intel": _errors(res, i_sep, i_dist),
            }
        else:
            intel = {"intel_svc_s": None}
        row = {
            "set": name,
            "rows": res["rows"],
            "d": res["d"],
            "labels": res["labels"],
            "pairs": res["pairs"],
            "geomcore_first_s": res["first_s"],
            "geomcore_second_s": res["second_s"],
            "import_s": res["import_s"],
            "peak_rss_mb": res["peak_rss_mb"],
            "memory": mem,
            "escalations": res["escalations"],
            "max_certified_gap": res["max_certified_gap"],
            "steps": res["steps"],
            "same_twice": res["same_twice"],
            "svc_s": t_svc,
            "ratio_svc_first": t_svc / res["first_s"],
            "ratio_svc_second": t_svc / res["second_s"],
            "svc": _errors(res, s_sep, s_dist),
            **intel,
        }
        print(json.dumps({k: v for k, v in row.items()}), flush=True)
        out.append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", default="pud_pos,ewt_pos,pud_dep")
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("FINETUNE_DATA_DIR", REPO.parent / "shared" / "data")),
    )
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--intel-sets",
        default="pud_pos",
        help="sets on which to time oneDAL's SVC too (it takes minutes per set)",
    )
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    bad = [s for s in names if s not in _SETS]
    if bad:
        ap.error(f"unknown set(s) {bad}; choose from {sorted(_SETS)}")
    intel = tuple(s.strip() for s in args.intel_sets.split(",") if s.strip())
    rows = run(names, args.data_dir, cache_dir(), intel_sets=intel)
    if args.out is not None:
        from geomcore.io import write_json

        write_json(
            args.out,
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "rows": rows,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The study's report: tables, figures and findings from a study directory.

``build_report(DIR)`` reads what ``finetune.study`` wrote (``study.json``,
``units/*.json``, ``runs/<task>/geometry.jsonl``) and writes, each atomically:

- ``results.json``: every number of the report (no centroids);
- ``tables/*.csv``: Table 2 (fine-tuned performance), Tables 3-4 (clusters per
  layer), Table 5 (cross-task), label dynamics, layer similarity, timings;
- ``figures/*.png``: Figure 2 (label dynamics), 3 (centroid paths), 4 (layer
  similarity to step 0), 5 (centroid displacement);
- ``report.md``: the tables, figure links and findings. Every sentence that
  states a finding is generated here from the numbers. Its first lines say
  whether every fine-tuned head beat the untuned model's MLP probe on its
  task (:func:`head_check`); the head's learning curve (training loss and
  test accuracy at each probed step, ``runs/<task>/metrics.jsonl``) is a
  table and a figure.

Missing pieces (a task not in the study, a unit not finished yet) are named in
the report instead of failing, so the report can be rebuilt at any point:
``python -m finetune.report DIR``.

The analysis functions are pure (numpy in, numpy/python out) and documented
with their math; the figures only draw what they return.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geomcore.analysis import distance_vector, spatial_similarity
from geomcore.io import atomic_open, write_json

__all__ = [
    "GeometryLog",
    "read_geometry",
    "similarity",
    "min_distance_gains",
    "closest_triple",
    "pca2",
    "layer_step_similarity",
    "displacement_pca",
    "cross_task_table",
    "clusters_table",
    "performance_table",
    "read_metrics",
    "head_check",
    "findings",
    "build_report",
]

TASK_TITLES = {
    "pos": "POS",
    "dep": "DEP",
    "ps-role": "PS-role",
    "ps-fxn": "PS-fxn",
    "trec50": "TREC-50",
}


def _title(task: str) -> str:
    return TASK_TITLES.get(task, task)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class GeometryLog:
    """A fine-tuning run's streamed geometry, indexed by (split, layer, step).

    Attributes:
      steps: probed optimizer steps, ascending (step 0 = before fine-tuning).
      n_layers: layers including the embedding layer.
      records: {(split, layer, step): record}, each record with ``labels``,
        ``label_distances`` (L x L float array, NaN where the log had null),
        ``min_distance_per_label`` (L,) and ``centroids`` (L x D).
    """

    steps: tuple[int, ...]
    n_layers: int
    records: dict

    def get(self, split: str, layer: int, step: int) -> dict | None:
        return self.records.get((split, layer, step))

    @property
    def last_layer(self) -> int:
        return self.n_layers - 1


def _float_array(x: Any) -> np.ndarray:
    return (
        np.array([[np.nan if v is None else v for v in row] for row in x], dtype=np.float64)
        if x and isinstance(x[0], list)
        else np.array([np.nan if v is None else v for v in x], dtype=np.float64)
    )


def read_geometry(path: str | Path) -> GeometryLog:
    """Parse a ``geometry.jsonl`` written by ``finetune.train`` (see finetune.stream)."""
    path = Path(path)
    records, steps, n_layers = {}, set(), 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {lineno}: not valid JSON ({exc}).") from exc
            if rec.get("record") == "header":
                n_layers = int(rec.get("layers", 0))
            elif rec.get("record") == "geometry":
                key = (rec["split"], int(rec["layer"]), int(rec["step"]))
                records[key] = {
                    "labels": [str(v) for v in rec["labels"]],
                    "label_distances": _float_array(rec["label_distances"]),
                    "min_distance_per_label": _float_array(rec["min_distance_per_label"]),
                    "centroids": np.asarray(rec["centroids"], dtype=np.float64),
                }
                steps.add(key[2])
                n_layers = max(n_layers, key[1] + 1)
    return GeometryLog(tuple(sorted(steps)), n_layers, records)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The head's learning curve from a run's ``metrics.jsonl``, by step.

    One dict per probed step (ascending): ``step``, ``epoch``,
    ``train_loss`` (mean training loss of the optimizer steps since the
    previous probe; None at step 0), ``train_accuracy``, ``test_accuracy``.
    """
    path = Path(path)
    rows: dict[int, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {lineno}: not valid JSON ({exc}).") from exc
            if rec.get("record") != "metrics":
                continue
            if "step" not in rec or "test_accuracy" not in rec:
                raise ValueError(f"{path}, line {lineno}: a metrics record needs step and "
                                 "test_accuracy.")
            rows[int(rec["step"])] = {
                "step": int(rec["step"]),
                "epoch": rec.get("epoch"),
                "train_loss": rec.get("train_loss"),
                "train_accuracy": rec.get("train_accuracy"),
                "test_accuracy": rec["test_accuracy"],
            }
    return [rows[k] for k in sorted(rows)]


# --------------------------------------------------------------------------- analysis


def similarity(rec_a: dict, rec_b: dict) -> float | None:
    """Spatial similarity of two geometry records: Pearson r of their label distance vectors.

    geomcore.analysis.spatial_similarity over the label pairs both records hold
    (matched by name). None when r is undefined (fewer than 2 shared pairs, a
    constant vector or a missing value).
    """
    try:
        va = distance_vector(rec_a["label_distances"], rec_a["labels"])
        vb = distance_vector(rec_b["label_distances"], rec_b["labels"])
        return spatial_similarity(va, vb).r
    except ValueError:
        return None


def min_distance_gains(labels: Sequence[str], by_step: np.ndarray, k: int = 3) -> dict[str, Any]:
    """Per-label gain of the minimum distance: last probed step minus step 0.

    Args:
      labels: (L,) names.
      by_step: (S, L) minimum distance of each label at each probed step.
      k: how many labels to name at each end.

    Returns:
      ``gain`` (L,), ``most`` (the k labels of largest gain, largest first) and
      ``least`` (the k of smallest gain, smallest first); ties by label order.
      Labels whose gain is undefined (non-finite) are left out of the rankings.
    """
    by_step = np.asarray(by_step, dtype=np.float64)
    gain = by_step[-1] - by_step[0]
    ok = [i for i in range(len(labels)) if np.isfinite(gain[i])]
    most = sorted(ok, key=lambda i: (-gain[i], i))[:k]
    least = sorted(ok, key=lambda i: (gain[i], i))[:k]
    return {
        "gain": gain,
        "most": [labels[i] for i in most],
        "least": [labels[i] for i in least],
        "n_grew": int(sum(gain[i] > 0 for i in ok)),
        "n_shrank": int(sum(gain[i] < 0 for i in ok)),
    }


def closest_triple(matrix: np.ndarray, labels: Sequence[str]) -> tuple[str, str, str]:
    """The three labels with the smallest sum of pairwise label distances.

    Brute force over the C(L, 3) triples (L is a label count, small); ties by
    the lexicographically first index triple. Needs at least 3 labels.
    """
    n = len(labels)
    if n < 3:
        raise ValueError(f"closest_triple needs at least 3 labels; got {n}.")
    m = np.nan_to_num(np.asarray(matrix, dtype=np.float64), nan=np.inf)
    best, arg = np.inf, (0, 1, 2)
    for a, b, c in itertools.combinations(range(n), 3):
        s = m[a, b] + m[a, c] + m[b, c]
        if s < best:
            best, arg = s, (a, b, c)
    return tuple(labels[i] for i in arg)  # type: ignore[return-value]


def _principal_axes(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(2, D) first two right singular vectors of ``M`` and all singular values.

    Each axis' sign is fixed so that its largest-magnitude loading is positive
    (SVD signs are arbitrary); a missing axis (rank < 2) is zero.
    """
    _, s, vt = np.linalg.svd(M, full_matrices=False)
    comps = np.zeros((2, M.shape[1]))
    r = min(2, vt.shape[0])
    comps[:r] = vt[:r]
    for i in range(r):
        j = int(np.argmax(np.abs(comps[i])))
        if comps[i, j] < 0:
            comps[i] = -comps[i]
    return comps, s


def pca2(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA: the rows of ``points`` (n, D) on their first two principal axes.

    Centers the rows, takes the SVD ``X - mean = U S V^T`` and returns
    ``(X - mean) V[:, :2]`` and the explained variance ratio of each axis. Each
    axis' sign is fixed so that its largest-magnitude loading is positive, which
    makes the output deterministic. With rank < 2 the missing axis is zero.
    """
    X = np.asarray(points, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    comps, s = _principal_axes(Xc)
    r = min(2, s.size)
    var = s**2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:r] = var[:r] / var.sum()
    return Xc @ comps.T, ratio


def layer_step_similarity(geo: GeometryLog, split: str = "train") -> np.ndarray:
    """(n_layers, S) Pearson r of each layer's distance vector at each step vs step 0.

    Entry [l, s] compares layer l at ``geo.steps[s]`` with layer l at step 0
    (so column 0 is 1 where defined); NaN where r is undefined or missing.
    """
    out = np.full((geo.n_layers, len(geo.steps)), np.nan)
    for layer in range(geo.n_layers):
        ref = geo.get(split, layer, geo.steps[0]) if geo.steps else None
        for s, step in enumerate(geo.steps):
            rec = geo.get(split, layer, step)
            if ref is not None and rec is not None:
                r = similarity(ref, rec)
                out[layer, s] = np.nan if r is None else r
    return out


def displacement_pca(
    before: Sequence[np.ndarray], after: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], float]:
    """Per layer, 2-D PCA of each label's centroid displacement (after - before).

    Args:
      before / after: per layer, (L, D) label centroids before and after
        fine-tuning (same label order).

    Returns:
      (per-layer (L, 2) coordinates, shared half-width): the coordinates keep
      the displacements' units (PCA is a rotation), and the shared half-width is
      the largest |coordinate| over all layers, so all panels use one scale and
      a longer arrow means a larger move.
    """
    coords = []
    for b, a in zip(before, after):
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        # The displacement of each label is a vector from the origin: PCA of the
        # displacements without re-centering would mix in their mean; keep the
        # mean (it is the common drift of the layer) by projecting uncentered.
        comps, _ = _principal_axes(d)
        coords.append(d @ comps.T)
    half = max((float(np.abs(c).max()) for c in coords if c.size), default=1.0)
    return coords, half if half > 0 else 1.0


def cross_task_table(units: dict[str, dict]) -> list[dict[str, Any]]:
    """Table 5: PS-fxn probed with each source model, against the untuned model.

    For each source other than ``untuned``: per label, change = min distance
    under the source model minus under the untuned model (labels in both);
    ``grew``/``shrank`` list the labels with change > 0 / < 0, ``mean_change``
    is the mean change. The untuned row has no change columns.
    """
    base = units.get("cross_untuned")
    rows = []
    for key in ("cross_untuned", "cross_ps-fxn", "cross_ps-role", "cross_pos"):
        u = units.get(key)
        if u is None:
            continue
        row: dict[str, Any] = {
            "source": u["source"],
            "mlp_mean": u["mlp"]["mean"],
            "mlp_std": u["mlp"]["std"],
        }
        if u["source"] != "untuned" and base is not None:
            b = {lab: v for lab, v in zip(base["labels"], base["min_distance"])}
            changes = {
                lab: v - b[lab]
                for lab, v in zip(u["labels"], u["min_distance"])
                if v is not None and b.get(lab) is not None
            }
            row["grew"] = sorted(lab for lab, c in changes.items() if c > 0)
            row["shrank"] = sorted(lab for lab, c in changes.items() if c < 0)
            row["mean_change"] = float(np.mean(list(changes.values()))) if changes else None
            row["n_compared"] = len(changes)
        rows.append(row)
    return rows


def clusters_table(units: dict[str, dict], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """Tables 3-4: clusters per layer before/after, with the number of labels."""
    rows = []
    for t in tasks:
        for stage in ("before", "after"):
            u = units.get(f"clusters_{t}_{stage}")
            if u is not None:
                rows.append(
                    {
                        "task": t,
                        "stage": stage,
                        "n_labels": u["n_labels"],
                        "n_points": u["n_points"],
                        "n_clusters": list(u["n_clusters"]),
                        "linear": [c == u["n_labels"] for c in u["n_clusters"]],
                    }
                )
    return rows


def performance_table(
    units: dict[str, dict], geos: dict[str, GeometryLog], tasks: Sequence[str]
) -> list[dict]:
    """Table 2: MLP accuracy before/after on the last layer and train/test similarity.

    ``sim_before``/``sim_after``: Pearson r between the train and the test
    split's label distance vectors (last layer) at step 0 / the last step.
    ``fell`` is True when the mean MLP accuracy after is below before.
    ``head_beats_probe``: the fine-tuned head's test accuracy is above the
    untuned model's MLP probe (mean over seeds; the probe's best grid point).
    """
    rows = []
    for t in tasks:
        b, a = units.get(f"mlp_{t}_before"), units.get(f"mlp_{t}_after")
        f = units.get(f"finetune_{t}")
        row: dict[str, Any] = {"task": t}
        if b is not None:
            row.update(mlp_before_mean=b["mean"], mlp_before_std=b["std"])
        if a is not None:
            row.update(mlp_after_mean=a["mean"], mlp_after_std=a["std"])
        if a is not None and b is not None:
            row["fell"] = bool(a["mean"] < b["mean"])
        if f is not None:
            row["head_test_accuracy"] = f["head_test_accuracy"]
            if b is not None and f["head_test_accuracy"] is not None:
                row["head_beats_probe"] = bool(f["head_test_accuracy"] > b["mean"])
        g = geos.get(t)
        if g is not None and g.steps:
            last = g.last_layer
            for name, step in (("sim_before", g.steps[0]), ("sim_after", g.steps[-1])):
                tr, te = g.get("train", last, step), g.get("test", last, step)
                row[name] = similarity(tr, te) if tr is not None and te is not None else None
        rows.append(row)
    return rows


def head_check(perf: list[dict]) -> str | None:
    """The report's first line: did every fine-tuned head beat the untuned model's probe?

    None when no task has both numbers yet. Otherwise one sentence naming the
    tasks whose head's test accuracy is not above the untuned model's MLP
    probe (mean over seeds), or stating that every head beat it.
    """
    rows = [r for r in perf if "head_beats_probe" in r]
    if not rows:
        return None
    failed = [r for r in rows if not r["head_beats_probe"]]
    if not failed:
        return (
            f"Every fine-tuned head beat the untuned model's MLP probe on its task "
            f"({_count_phrase(len(rows), len(rows))})."
        )
    named = ", ".join(
        f"{_title(r['task'])} (head {_fmt(r['head_test_accuracy'])}, untuned probe "
        f"{_fmt(r['mlp_before_mean'])})"
        for r in failed
    )
    return (
        f"**Warning: the fine-tuned head did not beat the untuned model's MLP probe on "
        f"{_count_phrase(len(failed), len(rows))}: {named}. Those models did not learn their "
        "task; their findings below do not describe models fine-tuned to convergence.**"
    )


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _count_phrase(k: int, n: int) -> str:
    return f"{k} of {n} task{'s' if n != 1 else ''}"


def findings(
    perf: list[dict], clusters: list[dict], cross: list[dict], layer_sim: dict[str, np.ndarray]
) -> dict[str, list[str]]:
    """Sentences stating what the numbers show, per report section."""
    out: dict[str, list[str]] = {"performance": [], "linearity": [], "cross": [], "layers": []}
    both = [r for r in perf if "fell" in r]
    if both:
        fell = [r for r in both if r["fell"]]
        rose = [r for r in both if r["mlp_after_mean"] > r["mlp_before_mean"]]
        out["performance"].append(
            "MLP-probe accuracy on the last layer rose after fine-tuning for "
            f"{_count_phrase(len(rose), len(both))}"
            + (
                "; it fell for "
                + ", ".join(f"{_title(r['task'])} ({_fmt(r['mlp_before_mean'])} -> "
                            f"{_fmt(r['mlp_after_mean'])})" for r in fell)
                + "."
                if fell
                else "; it fell for none."
            )
        )
    sims = [r for r in perf if r.get("sim_before") is not None and r.get("sim_after") is not None]
    if sims:
        down = [r for r in sims if r["sim_after"] < r["sim_before"]]
        out["performance"].append(
            f"The spatial similarity of the training and test sets (last layer) fell for "
            f"{_count_phrase(len(down), len(sims))}"
            + (
                ": "
                + ", ".join(
                    f"{_title(r['task'])} ({_fmt(r['sim_before'])} -> {_fmt(r['sim_after'])})"
                    for r in down
                )
                + "."
                if down
                else "."
            )
        )
    by_task: dict[str, dict[str, dict]] = {}
    for r in clusters:
        by_task.setdefault(r["task"], {})[r["stage"]] = r
    complete = {t: s for t, s in by_task.items() if "before" in s and "after" in s}
    if complete:
        lin_b = [t for t, s in complete.items() if s["before"]["linear"][-1]]
        lin_a = [t for t, s in complete.items() if s["after"]["linear"][-1]]
        fewer = [
            t
            for t, s in complete.items()
            if s["after"]["n_clusters"][-1] < s["before"]["n_clusters"][-1]
        ]
        out["linearity"].append(
            f"On the last layer, {_count_phrase(len(lin_b), len(complete))} were linearly "
            f"separable (one cluster per label) before fine-tuning and {len(lin_a)} after; "
            "the number of clusters "
            f"fell for {len(fewer)}."
        )
        for t, s in complete.items():
            nb, na = s["before"]["n_clusters"], s["after"]["n_clusters"]
            changed = [k for k in range(min(len(nb), len(na))) if nb[k] != na[k]]
            out["linearity"].append(
                f"{_title(t)} ({s['before']['n_labels']} labels): clusters per layer "
                f"{'/'.join(map(str, nb))} before, {'/'.join(map(str, na))} after"
                + (
                    f"; layers that changed: {', '.join(map(str, changed))}."
                    if changed
                    else "; no layer changed."
                )
            )
    for r in cross:
        if r["source"] == "untuned" or r.get("mean_change") is None:
            continue
        n = r["n_compared"]
        out["cross"].append(
            f"Fine-tuning on {_title(r['source'])} grew the minimum distance of "
            f"{len(r['grew'])} of {n} PS-fxn labels and shrank {len(r['shrank'])} "
            f"(mean change {r['mean_change']:+.3f}); the PS-fxn "
            f"MLP probe reached {_fmt(r['mlp_mean'])}."
        )
    untuned = next((r for r in cross if r["source"] == "untuned"), None)
    if untuned is not None:
        better = [
            r for r in cross if r["source"] != "untuned" and r["mlp_mean"] > untuned["mlp_mean"]
        ]
        out["cross"].append(
            f"Against the untuned model's {_fmt(untuned['mlp_mean'])}, "
            "PS-fxn MLP accuracy was higher with "
            f"{len(better)} of {len(cross) - 1} fine-tuned models"
            + (f" ({', '.join(_title(r['source']) for r in better)})." if better else ".")
        )
    higher_more = []
    for t, m in layer_sim.items():
        if m.shape[1] < 2:
            continue
        final = m[:, -1]
        ok = np.isfinite(final)
        if ok.sum() >= 2:
            lo, hi = int(np.flatnonzero(ok)[0]), int(np.flatnonzero(ok)[-1])
            out["layers"].append(
                f"{_title(t)}: at the last step, layer {lo} keeps r = {final[lo]:.3f} "
                "with its step-0 distances, "
                f"layer {hi} r = {final[hi]:.3f}."
            )
            if final[hi] < final[lo]:
                higher_more.append(t)
    if layer_sim:
        n = sum(1 for m in layer_sim.values() if m.shape[1] >= 2)
        if n:
            out["layers"].insert(
                0,
                f"The last layer moved further from its step-0 geometry than the first layer for "
                f"{_count_phrase(len(higher_more), n)}.",
            )
    return out


# --------------------------------------------------------------------------- writing


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    with atomic_open(path, "w") as fh:
        fh.write(buf.getvalue())


def _savefig(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb", encoding=None) as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _gains(dyn: dict, chosen: Sequence[str]) -> str:
    """``label (+gain)`` for each chosen label of a label-dynamics record."""
    return ", ".join(f"{lab} ({dyn['gain'][dyn['labels'].index(lab)]:+.3f})" for lab in chosen)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in r) + " |" for r in rows
    ]
    return "\n".join(lines)


def build_report(study_dir: str | Path) -> Path:
    """Write results.json, tables/, figures/ and report.md for a study directory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(study_dir)
    plan_path = d / "study.json"
    if not plan_path.exists():
        raise FileNotFoundError(f"{plan_path} not found: {d} is not a study directory.")
    plan = json.loads(plan_path.read_text())
    tasks = list(plan["tasks"])
    units = {p.stem: json.loads(p.read_text()) for p in sorted((d / "units").glob("*.json"))}
    geos = {
        t: read_geometry(d / "runs" / t / "geometry.jsonl")
        for t in tasks
        if (d / "runs" / t / "geometry.jsonl").exists() and f"finetune_{t}" in units
    }
    (d / "tables").mkdir(exist_ok=True)
    (d / "figures").mkdir(exist_ok=True)
    md: list[str] = []
    missing = []

    perf = performance_table(units, geos, tasks)
    clusters = clusters_table(units, tasks)
    cross = cross_task_table(units)
    layer_sim = {t: layer_step_similarity(g) for t, g in geos.items()}
    dynamics: dict[str, dict[str, Any]] = {}
    for t, g in geos.items():
        last = g.last_layer
        recs = [g.get("train", last, s) for s in g.steps]
        if all(r is not None for r in recs) and recs:
            labels = recs[0]["labels"]
            by_step = np.array(
                [
                    [
                        dict(zip(r["labels"], r["min_distance_per_label"])).get(lab, np.nan)
                        for lab in labels
                    ]
                    for r in recs
                ]
            )
            dyn = min_distance_gains(labels, by_step)
            dynamics[t] = {"labels": labels, "steps": list(g.steps), "by_step": by_step, **dyn}
    found = findings(perf, clusters, cross, layer_sim)

    # ---- header
    machine = plan.get("machine", {})
    md.append(f"# How fine-tuning changed {plan['model']}\n")
    check = head_check(perf)
    if check is not None:
        md.append(check + "\n")
    md.append(
        f"Study `{plan['preset']}` preset, tasks {', '.join(_title(t) for t in tasks)}; "
        f"started {plan.get('created', '?')} on {machine.get('platform', '?')} "
        f"({machine.get('cpus', '?')} CPUs; torch {machine.get('torch', '?')}, "
        f"jax {machine.get('jax', '?')}). "
        "Every number below was computed by this study; the sentences are generated from them.\n"
    )
    stage_secs: dict[str, float] = {}
    for name, u in units.items():
        kind = name.split("_")[0]
        stage_secs[kind] = stage_secs.get(kind, 0.0) + float(u.get("seconds", 0.0))
    md.append("## Time per stage\n")
    md.append(
        _md_table(
            ["stage", "units", "wall seconds"],
            [
                [k, str(sum(1 for n in units if n.split("_")[0] == k)), v]
                for k, v in sorted(stage_secs.items())
            ]
            + [["total", str(len(units)), sum(stage_secs.values())]],
        )
    )
    _write_csv(
        d / "tables" / "timings.csv",
        ["unit", "seconds"],
        [[n, u.get("seconds")] for n, u in units.items()],
    )
    md.append("")

    # ---- Table 2
    md.append("## Fine-tuned performance (Table 2)\n")
    md.append(
        "MLP probe on the last layer (mean +- std over seeds, test split), the fine-tuned "
        "head's test accuracy, and the spatial similarity (Pearson r) of the train and test "
        "label-distance vectors.\n"
    )
    rows2 = []
    for r in perf:

        def acc(prefix):
            return (
                f"{r[prefix + '_mean']:.3f} +- {r[prefix + '_std']:.3f}"
                if prefix + "_mean" in r
                else "missing"
            )

        beats = r.get("head_beats_probe")
        rows2.append(
            [
                _title(r["task"]),
                acc("mlp_before"),
                r.get("head_test_accuracy"),
                "yes" if beats else ("**no**" if beats is False else "n/a"),
                acc("mlp_after"),
                "**fell**" if r.get("fell") else ("" if "fell" in r else "n/a"),
                r.get("sim_before"),
                r.get("sim_after"),
            ]
        )
    md.append(
        _md_table(
            ["task", "MLP before", "head acc", "head > MLP before", "MLP after", "flag",
             "sim before", "sim after"],
            rows2,
        )
    )
    _write_csv(
        d / "tables" / "table2_performance.csv",
        [
            "task",
            "mlp_before_mean",
            "mlp_before_std",
            "mlp_after_mean",
            "mlp_after_std",
            "fell",
            "head_test_accuracy",
            "head_beats_probe",
            "sim_before",
            "sim_after",
        ],
        [
            [
                r["task"],
                r.get("mlp_before_mean"),
                r.get("mlp_before_std"),
                r.get("mlp_after_mean"),
                r.get("mlp_after_std"),
                r.get("fell"),
                r.get("head_test_accuracy"),
                r.get("head_beats_probe"),
                r.get("sim_before"),
                r.get("sim_after"),
            ]
            for r in perf
        ],
    )
    md += ["", *[f"- {s}" for s in found["performance"]], ""]
    for t in tasks:
        for k in (f"mlp_{t}_before", f"mlp_{t}_after", f"finetune_{t}"):
            if k not in units:
                missing.append(k)

    # ---- the head's learning curve
    md.append("## The head's learning curve\n")
    curves = {
        t: read_metrics(d / "runs" / t / "metrics.jsonl")
        for t in tasks
        if f"finetune_{t}" in units and (d / "runs" / t / "metrics.jsonl").exists()
    }
    curves = {t: c for t, c in curves.items() if c}
    sched = [(t, units[f"finetune_{t}"]) for t in tasks if f"finetune_{t}" in units]
    if sched:
        md.append(
            "Schedule of each fine-tuning run (AdamW, linear warm-up over the first 10% of the "
            "steps, then linear decay) and the steps at which the geometry of every layer of "
            "both splits was streamed.\n"
        )
        md.append(
            _md_table(
                ["task", "peak lr", "epochs", "steps", "probed steps", "train s", "probe s"],
                [
                    [_title(t), "n/a" if f.get("lr") is None else f"{f['lr']:g}",
                     str(f.get("epochs", "n/a")), str(f.get("total_steps", "n/a")),
                     f"{len(f.get('probe_steps', []))}: "
                     + ", ".join(str(x) for x in f.get("probe_steps", [])),
                     f.get("train_seconds"), f.get("probe_seconds")]
                    for t, f in sched
                ],
            )
        )
        md.append("")
    if curves:
        md.append(
            "Training loss (mean over the optimizer steps since the previous probe) and the "
            "head's test accuracy at every probed step; the dashed line is the untuned "
            "model's MLP probe.\n"
        )
        rows_c = [
            [_title(t), str(c["step"]), c["train_loss"], c["train_accuracy"], c["test_accuracy"]]
            for t, cs in curves.items()
            for c in cs
        ]
        md.append(
            _md_table(["task", "step", "train loss", "train acc", "test acc"], rows_c)
        )
        _write_csv(
            d / "tables" / "head_curve.csv",
            ["task", "step", "epoch", "train_loss", "train_accuracy", "test_accuracy"],
            [
                [t, c["step"], c["epoch"], c["train_loss"], c["train_accuracy"],
                 c["test_accuracy"]]
                for t, cs in curves.items()
                for c in cs
            ],
        )
        probe_before = {r["task"]: r.get("mlp_before_mean") for r in perf}
        fig, axes = plt.subplots(2, len(curves), figsize=(3.0 * len(curves), 4.6),
                                 squeeze=False)
        for k, (t, cs) in enumerate(curves.items()):
            ax_l, ax_a = axes[0][k], axes[1][k]
            pts = [(c["step"], c["train_loss"]) for c in cs if c["train_loss"] is not None]
            if pts:
                ax_l.plot(*zip(*pts), marker="o", ms=3)
            ax_l.set_title(_title(t), fontsize=9)
            ax_a.plot([c["step"] for c in cs], [c["test_accuracy"] for c in cs], marker="o",
                      ms=3, label="head, test")
            if probe_before.get(t) is not None:
                ax_a.axhline(probe_before[t], ls="--", color="0.4", lw=1,
                             label="untuned MLP probe")
            ax_a.set_ylim(0, 1)
            ax_a.set_xlabel("step", fontsize=8)
            for ax in (ax_l, ax_a):
                ax.tick_params(labelsize=7)
        axes[0][0].set_ylabel("train loss", fontsize=8)
        axes[1][0].set_ylabel("test accuracy", fontsize=8)
        axes[1][0].legend(fontsize=6)
        _savefig(fig, d / "figures" / "fig_head_curve.png")
        md.append("\n![head learning curve](figures/fig_head_curve.png)\n")
    else:
        md.append("No fine-tuning run has finished yet.\n")

    # ---- Tables 3-4
    md.append("## Linearity: DirectProbe clusters per layer (Tables 3-4)\n")
    if clusters:
        n_layers = max(len(r["n_clusters"]) for r in clusters)
        md.append(
            _md_table(
                ["task", "stage", "labels", "points"] + [f"L{k}" for k in range(n_layers)],
                [
                    [_title(r["task"]), r["stage"], str(r["n_labels"]), str(r["n_points"])]
                    + [str(c) for c in r["n_clusters"]]
                    for r in clusters
                ],
            )
        )
        _write_csv(
            d / "tables" / "table3_clusters.csv",
            ["task", "stage", "n_labels", "n_points"] + [f"layer{k}" for k in range(n_layers)],
            [
                [r["task"], r["stage"], r["n_labels"], r["n_points"]] + r["n_clusters"]
                for r in clusters
            ],
        )
        md += ["", *[f"- {s}" for s in found["linearity"]], ""]
    else:
        md.append("No clustering unit has finished yet.\n")
    missing += [
        f"clusters_{t}_{s}"
        for t in tasks
        for s in ("before", "after")
        if f"clusters_{t}_{s}" not in units
    ]

    # ---- Figure 2
    md.append("## Label dynamics on the last layer (Figure 2)\n")
    if dynamics:
        fig, axes = plt.subplots(
            1, len(dynamics), figsize=(4.2 * len(dynamics), 3.4), squeeze=False
        )
        rows_dyn = []
        for ax, (t, dyn) in zip(axes[0], dynamics.items()):
            for i, lab in enumerate(dyn["labels"]):
                hi = lab in dyn["most"] or lab in dyn["least"]
                ax.plot(
                    dyn["steps"],
                    dyn["by_step"][:, i],
                    color=("C3" if lab in dyn["most"] else "C0") if hi else "0.85",
                    lw=1.8 if hi else 0.8,
                    label=lab if hi else None,
                    zorder=3 if hi else 1,
                )
                rows_dyn += [[t, lab, s, v] for s, v in zip(dyn["steps"], dyn["by_step"][:, i])]
            ax.set_title(_title(t))
            ax.set_xlabel("step")
            ax.set_ylabel("min distance to other labels")
            ax.legend(fontsize=7)
            md.append(
                f"- {_title(t)}: the minimum distance grew for {dyn['n_grew']} of "
                f"{len(dyn['labels'])} labels; most gain: {_gains(dyn, dyn['most'])}; "
                f"least: {_gains(dyn, dyn['least'])}."
            )
        _savefig(fig, d / "figures" / "fig2_label_dynamics.png")
        _write_csv(
            d / "tables" / "label_dynamics.csv", ["task", "label", "step", "min_distance"], rows_dyn
        )
        md.append("\n![label dynamics](figures/fig2_label_dynamics.png)\n")
    else:
        md.append("No fine-tuning run has finished yet.\n")

    # ---- Figure 3
    md.append("## Centroid paths of the three closest labels (Figure 3)\n")
    fig3_task = "pos" if "pos" in geos else (next(iter(geos)) if geos else None)
    fig3: dict[str, Any] = {}
    if fig3_task is not None:
        g = geos[fig3_task]
        rec0 = g.get("train", g.last_layer, g.steps[0])
        if rec0 is not None and len(rec0["labels"]) >= 3:
            triple = closest_triple(rec0["label_distances"], rec0["labels"])
            fig, axes = plt.subplots(1, 2, figsize=(9, 4))
            for ax, layer in zip(axes, (0, g.last_layer)):
                pts = []
                for s in g.steps:
                    r = g.get("train", layer, s)
                    pos = {lab: k for k, lab in enumerate(r["labels"])}
                    pts.append(np.stack([r["centroids"][pos[lab]] for lab in triple]))
                pts = np.stack(pts)  # (S, 3, D)
                xy, _ = pca2(pts.reshape(-1, pts.shape[-1]))
                xy = xy.reshape(len(g.steps), 3, 2)
                for k, lab in enumerate(triple):
                    ax.plot(xy[:, k, 0], xy[:, k, 1], "-o", ms=3, label=lab)
                    ax.annotate("start", xy[0, k], fontsize=6)
                ax.set_title(f"{_title(fig3_task)} layer {layer}")
                ax.legend(fontsize=7)
                fig3[f"layer{layer}"] = xy
            _savefig(fig, d / "figures" / "fig3_centroid_paths.png")
            md.append(
                f"The three {_title(fig3_task)} labels with the smallest summed pairwise "
                f"distance at step 0 (last layer): {', '.join(triple)}.\n\n"
                "![centroid paths](figures/fig3_centroid_paths.png)\n"
            )
            fig3["labels"] = list(triple)
            fig3["task"] = fig3_task
    if not fig3:
        md.append("Not available (needs a finished fine-tuning run with at least 3 labels).\n")

    # ---- Table 5
    md.append("## Cross-task fine-tuning: PS-fxn (Table 5)\n")
    if cross:
        md.append(
            _md_table(
                [
                    "model fine-tuned on",
                    "labels grew",
                    "labels shrank",
                    "mean change",
                    "PS-fxn MLP acc",
                ],
                [
                    [
                        _title(r["source"]),
                        str(len(r.get("grew", []))) if "grew" in r else "-",
                        str(len(r.get("shrank", []))) if "shrank" in r else "-",
                        r.get("mean_change"),
                        f"{r['mlp_mean']:.3f} +- {r['mlp_std']:.3f}",
                    ]
                    for r in cross
                ],
            )
        )
        _write_csv(
            d / "tables" / "table5_cross_task.csv",
            [
                "source",
                "n_grew",
                "n_shrank",
                "mean_change",
                "mlp_mean",
                "mlp_std",
                "grew",
                "shrank",
            ],
            [
                [
                    r["source"],
                    len(r.get("grew", [])),
                    len(r.get("shrank", [])),
                    r.get("mean_change"),
                    r["mlp_mean"],
                    r["mlp_std"],
                    " ".join(r.get("grew", [])),
                    " ".join(r.get("shrank", [])),
                ]
                for r in cross
            ],
        )
        md += ["", *[f"- {s}" for s in found["cross"]], ""]
    else:
        md.append("Not available: needs ps-fxn in --tasks (and ps-role / pos for their rows).\n")

    # ---- Figure 4
    md.append("## Layer behaviour: similarity to step 0 (Figure 4)\n")
    if layer_sim:
        fig, axes = plt.subplots(
            1, len(layer_sim), figsize=(4.2 * len(layer_sim), 3.4), squeeze=False
        )
        rows4 = []
        for ax, (t, m) in zip(axes[0], layer_sim.items()):
            steps = geos[t].steps
            for layer in range(m.shape[0]):
                ax.plot(
                    steps,
                    m[layer],
                    "-o",
                    ms=2,
                    color=plt.cm.viridis(layer / max(1, m.shape[0] - 1)),
                    label=f"L{layer}",
                )
                rows4 += [[t, layer, s, v] for s, v in zip(steps, m[layer])]
            ax.set_title(_title(t))
            ax.set_xlabel("step")
            ax.set_ylabel("Pearson r vs step 0")
            ax.legend(fontsize=6, ncol=2)
        _savefig(fig, d / "figures" / "fig4_layer_similarity.png")
        _write_csv(
            d / "tables" / "layer_similarity.csv", ["task", "layer", "step", "pearson_r"], rows4
        )
        md += [
            *[f"- {s}" for s in found["layers"]],
            "",
            "![layer similarity](figures/fig4_layer_similarity.png)",
            "",
        ]
    else:
        md.append("No fine-tuning run has finished yet.\n")

    # ---- Figure 5
    md.append("## Centroid displacement per layer (Figure 5)\n")
    fig5 = {}
    for t, g in geos.items():
        before, after, labels = [], [], None
        for layer in range(g.n_layers):
            rb, ra = g.get("train", layer, g.steps[0]), g.get("train", layer, g.steps[-1])
            if rb is None or ra is None:
                break
            labels = [lab for lab in rb["labels"] if lab in set(ra["labels"])]
            pb = {lab: k for k, lab in enumerate(rb["labels"])}
            pa = {lab: k for k, lab in enumerate(ra["labels"])}
            before.append(np.stack([rb["centroids"][pb[lab]] for lab in labels]))
            after.append(np.stack([ra["centroids"][pa[lab]] for lab in labels]))
        if len(before) != g.n_layers:
            continue
        coords, half = displacement_pca(before, after)
        norms = [float(np.linalg.norm(a - b, axis=1).mean()) for a, b in zip(after, before)]
        fig, axes = plt.subplots(1, g.n_layers, figsize=(2.3 * g.n_layers, 2.5), squeeze=False)
        for layer, (ax, c) in enumerate(zip(axes[0], coords)):
            ax.scatter(c[:, 0], c[:, 1], s=6)
            for k in range(c.shape[0]):
                ax.plot([0, c[k, 0]], [0, c[k, 1]], lw=0.5, color="0.6")
            ax.set_xlim(-half * 1.05, half * 1.05)
            ax.set_ylim(-half * 1.05, half * 1.05)
            ax.set_title(f"L{layer}", fontsize=8)
            ax.tick_params(labelsize=6)
        fig.suptitle(
            f"{_title(t)}: centroid displacement (after - before), 2-D PCA per layer, one scale",
            y=1.06,
        )
        _savefig(fig, d / "figures" / f"fig5_displacement_{t}.png")
        fig5[t] = {"mean_displacement_per_layer": norms, "half_width": half}
        grow = all(norms[k] <= norms[k + 1] for k in range(len(norms) - 1))
        md.append(
            f"- {_title(t)}: mean centroid displacement per layer "
            f"{', '.join(f'L{k} {v:.3f}' for k, v in enumerate(norms))}"
            f" ({'grows with depth at every layer' if grow else 'not monotone in depth'}); "
            f"largest at layer {int(np.argmax(norms))}. ![](figures/fig5_displacement_{t}.png)"
        )
    if not fig5:
        md.append("No fine-tuning run has finished yet.")
    md.append("")

    if missing:
        md.append("## Not computed yet\n")
        md.append(
            "These units have no result in this directory (run the study again to compute them): "
            + ", ".join(sorted(set(missing)))
            + ".\n"
        )

    results = {
        "plan": plan,
        "performance": perf,
        "head_check": check,
        "head_curves": curves,
        "clusters": clusters,
        "cross_task": cross,
        "label_dynamics": {t: {k: v for k, v in dyn.items()} for t, dyn in dynamics.items()},
        "centroid_paths": fig3,
        "layer_similarity": {
            t: {"steps": list(geos[t].steps), "r": m} for t, m in layer_sim.items()
        },
        "displacement": fig5,
        "findings": found,
        "stage_seconds": stage_secs,
        "units": {n: {k: v for k, v in u.items()} for n, u in units.items()},
        "missing_units": sorted(set(missing)),
    }
    write_json(d / "results.json", results)
    report = d / "report.md"
    with atomic_open(report, "w") as fh:
        fh.write("\n".join(md) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m finetune.report STUDY_DIR", file=sys.stderr)
        return 2
    try:
        print(build_report(args[0]))
    except (FileNotFoundError, ValueError) as exc:
        print(f"finetune.report: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

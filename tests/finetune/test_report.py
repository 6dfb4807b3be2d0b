"""The study report's analysis functions on small inputs with known answers,
and build_report on a hand-written study directory."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.stats import pearsonr

from finetune.report import (
    GeometryLog,
    build_report,
    closest_triple,
    cross_task_table,
    displacement_pca,
    findings,
    layer_step_similarity,
    min_distance_gains,
    pca2,
    read_geometry,
    read_metrics,
    similarity,
)


def _rec(labels, matrix, centroids=None):
    m = np.asarray(matrix, dtype=float)
    md = np.where(np.eye(len(labels), dtype=bool), np.inf, m).min(axis=1)
    c = np.zeros((len(labels), 2)) if centroids is None else np.asarray(centroids, dtype=float)
    return {
        "labels": list(labels),
        "label_distances": m,
        "min_distance_per_label": md,
        "centroids": c,
    }


def _points_matrix(x):
    x = np.asarray(x, dtype=float)
    return np.abs(x[:, None] - x[None, :])


def test_similarity_is_pearson_over_shared_labels():
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=5), rng.normal(size=4)
    a = _rec(list("abcde"), _points_matrix(xa))
    # b lacks "d" and orders its labels differently
    b = _rec(list("ecab"), _points_matrix(xb))
    shared = ["a", "b", "c", "e"]
    pa = {k: i for i, k in enumerate("abcde")}
    pb = {k: i for i, k in enumerate("ecab")}
    va = [abs(xa[pa[u]] - xa[pa[v]]) for u, v in itertools.combinations(shared, 2)]
    vb = [abs(xb[pb[u]] - xb[pb[v]]) for u, v in itertools.combinations(shared, 2)]
    assert similarity(a, b) == pytest.approx(pearsonr(va, vb)[0], abs=1e-12)
    # a constant vector has no Pearson r: None, not a made-up number
    flat = _rec(list("abc"), np.ones((3, 3)) - np.eye(3))
    assert similarity(flat, flat) is None


def test_min_distance_gains_ranks_by_last_minus_first():
    by_step = np.array([[1.0, 2.0, 3.0, 4.0], [1.5, 1.0, 3.0, 9.0], [2.0, 1.5, 3.0, 5.0]])
    g = min_distance_gains(["w", "x", "y", "z"], by_step, k=2)
    assert g["gain"].tolist() == [1.0, -0.5, 0.0, 1.0]
    assert g["most"] == ["w", "z"]  # tie at +1.0: label order
    assert g["least"] == ["x", "y"]
    assert (g["n_grew"], g["n_shrank"]) == (2, 1)


def test_closest_triple_on_a_line():
    x = [0.0, 10.0, 1.0, 30.0, 2.5]
    assert closest_triple(_points_matrix(x), list("abcde")) == ("a", "c", "e")
    with pytest.raises(ValueError, match="at least 3"):
        closest_triple(np.zeros((2, 2)), ["a", "b"])


def test_pca2_of_points_on_a_line():
    t = np.array([-2.0, -1.0, 0.5, 3.0])
    direction = np.array([1.0, 2.0, -2.0]) / 3.0
    pts = 7.0 + t[:, None] * direction[None, :]
    xy, ratio = pca2(pts)
    # One axis holds everything: coordinates are the centered positions along
    # the line (sign fixed by the largest loading, here +2/3 on the 2nd axis).
    assert xy[:, 0] == pytest.approx(t - t.mean(), abs=1e-12)
    assert np.abs(xy[:, 1]).max() < 1e-12
    assert ratio == pytest.approx([1.0, 0.0], abs=1e-12)


def test_layer_step_similarity_against_scipy():
    labels = list("abcd")
    m0 = _points_matrix([0.0, 1.0, 3.0, 7.0])
    m1 = _points_matrix([0.0, 2.0, 1.0, 4.0])
    recs = {
        ("train", 0, 0): _rec(labels, m0),
        ("train", 0, 5): _rec(labels, 2 * m0),  # scaled: r = 1
        ("train", 1, 0): _rec(labels, m0),
        ("train", 1, 5): _rec(labels, m1),
    }
    r = layer_step_similarity(GeometryLog((0, 5), 2, recs))
    iu = np.triu_indices(4, 1)
    assert r[0].tolist() == pytest.approx([1.0, 1.0])
    assert r[1, 1] == pytest.approx(pearsonr(m0[iu], m1[iu])[0], abs=1e-12)


def test_displacement_pca_keeps_units_and_shares_the_scale():
    before = [np.zeros((3, 4)), np.zeros((3, 4))]
    after = [
        np.array([[1.0, 0, 0, 0], [2.0, 0, 0, 0], [-1.0, 0, 0, 0]]),
        np.array([[0, 0, 5.0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    ]
    coords, half = displacement_pca(before, after)
    # PCA is a rotation: each label's displacement length is kept.
    for b, a, c in zip(before, after, coords):
        assert np.linalg.norm(c, axis=1) == pytest.approx(np.linalg.norm(a - b, axis=1))
    assert half == pytest.approx(5.0)


def test_cross_task_table_by_hand():
    units = {
        "cross_untuned": {
            "source": "untuned",
            "labels": ["a", "b", "c"],
            "min_distance": [1.0, 2.0, 3.0],
            "mlp": {"mean": 0.5, "std": 0.01},
        },
        "cross_ps-role": {
            "source": "ps-role",
            "labels": ["a", "b", "c"],
            "min_distance": [1.5, 1.0, None],
            "mlp": {"mean": 0.6, "std": 0.02},
        },
    }
    rows = cross_task_table(units)
    assert [r["source"] for r in rows] == ["untuned", "ps-role"]
    role = rows[1]
    assert role["grew"] == ["a"] and role["shrank"] == ["b"]
    assert role["mean_change"] == pytest.approx((0.5 - 1.0) / 2)
    assert role["n_compared"] == 2


def test_findings_name_the_task_whose_accuracy_fell():
    perf = [
        {
            "task": "pos",
            "mlp_before_mean": 0.90,
            "mlp_after_mean": 0.95,
            "fell": False,
            "sim_before": 0.9,
            "sim_after": 0.8,
        },
        {
            "task": "trec50",
            "mlp_before_mean": 0.81,
            "mlp_after_mean": 0.79,
            "fell": True,
            "sim_before": 0.7,
            "sim_after": 0.75,
        },
    ]
    f = findings(perf, [], [], {})
    assert f["performance"][0] == (
        "MLP-probe accuracy on the last layer rose after fine-tuning for 1 of 2 tasks; "
        "it fell for TREC-50 (0.810 -> 0.790)."
    )
    assert f["performance"][1].startswith(
        "The spatial similarity of the training and test sets (last layer) "
        "fell for 1 of 2 tasks: POS (0.900 -> 0.800)"
    )


def _write_study(d, *, with_after=True):
    d.mkdir(parents=True, exist_ok=True)
    (d / "study.json").write_text(json.dumps({"model": "m", "preset": "smoke", "tasks": ["pos"]}))
    units = {
        "mlp_pos_before": {
            "unit": "mlp",
            "task": "pos",
            "stage": "before",
            "mean": 0.8,
            "std": 0.01,
            "accuracies": [0.79, 0.81],
            "config": {"hidden": [32, 32], "alpha": 1e-4},
            "seconds": 1.0,
        },
        "finetune_pos": {
            "unit": "finetune",
            "task": "pos",
            "head_test_accuracy": 0.7,
            "lr": 2e-4,
            "epochs": 3,
            "total_steps": 10,
            "probe_steps": [0, 10],
            "train_seconds": 4.0,
            "probe_seconds": 1.0,
            "seconds": 5.0,
        },
        "clusters_pos_before": {
            "unit": "clusters",
            "task": "pos",
            "stage": "before",
            "n_labels": 3,
            "n_points": 30,
            "layers": [0, 1],
            "n_clusters": [5, 3],
            "seconds": 2.0,
        },
    }
    if with_after:
        units["mlp_pos_after"] = dict(units["mlp_pos_before"], stage="after", mean=0.75, std=0.02)
    (d / "units").mkdir(exist_ok=True)
    for k, v in units.items():
        (d / "units" / f"{k}.json").write_text(json.dumps(v))
    run = d / "runs" / "pos"
    run.mkdir(parents=True, exist_ok=True)
    labels = ["ADJ", "NOUN", "VERB"]
    lines = [{"record": "header", "layers": 2, "label_names": labels}]
    pos = {0: np.array([0.0, 1.0, 4.0]), 10: np.array([0.0, 2.0, 5.0])}
    for step, x in pos.items():
        for split in ("train", "test"):
            for layer in range(2):
                xx = x * (1 + layer) + (0.5 if split == "test" and step == 10 else 0) * np.array(
                    [0, 0, 1.0]
                )
                m = _points_matrix(xx)
                md = np.where(np.eye(3, dtype=bool), np.inf, m).min(axis=1)
                lines.append(
                    {
                        "record": "geometry",
                        "step": step,
                        "split": split,
                        "layer": layer,
                        "labels": labels,
                        "label_distances": m.tolist(),
                        "min_distance_per_label": md.tolist(),
                        "centroids": np.stack([xx, np.zeros(3)], 1).tolist(),
                    }
                )
    (run / "geometry.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    metrics = [
        {"record": "metrics", "step": 0, "epoch": 0, "train_accuracy": 0.1,
         "test_accuracy": 0.12, "train_loss": None},
        {"record": "metrics", "step": 10, "epoch": 1, "train_accuracy": 0.8,
         "test_accuracy": 0.7, "train_loss": 0.9},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    return d


def test_build_report_on_a_handmade_study(tmp_path):
    d = _write_study(tmp_path / "s")
    geo = read_geometry(d / "runs" / "pos" / "geometry.jsonl")
    assert geo.steps == (0, 10) and geo.n_layers == 2
    report = build_report(d).read_text()
    results = json.loads((d / "results.json").read_text())
    perf = results["performance"][0]
    assert perf["fell"] is True and perf["mlp_after_mean"] == 0.75
    # train vs test at step 0 are the same points: r = 1
    assert perf["sim_before"] == pytest.approx(1.0)
    # label dynamics: last layer (1), train: min distances 2,2,6 -> 4,4,6
    dyn = results["label_dynamics"]["pos"]
    assert dyn["gain"] == pytest.approx([2.0, 2.0, 0.0])
    assert dyn["most"][0] == "ADJ" and dyn["least"][0] == "VERB"
    assert "it fell for POS (0.800 -> 0.750)" in report
    assert results["centroid_paths"]["labels"] == ["ADJ", "NOUN", "VERB"]
    # one clusters unit missing -> named, not a crash
    assert "clusters_pos_after" in results["missing_units"]
    assert "Not computed yet" in report
    for f in (
        "fig2_label_dynamics.png",
        "fig3_centroid_paths.png",
        "fig4_layer_similarity.png",
        "fig5_displacement_pos.png",
    ):
        assert (d / "figures" / f).read_bytes()[:4] == b"\x89PNG"


def test_report_opens_with_the_heads_that_missed_the_untuned_probe(tmp_path):
    # head 0.7 against the untuned probe's 0.8: the first lines say so
    d = _write_study(tmp_path / "s")
    lines = build_report(d).read_text().splitlines()
    assert lines[0].startswith("# How fine-tuning changed")
    assert lines[2] == (
        "**Warning: the fine-tuned head did not beat the untuned model's MLP probe on 1 of 1 "
        "task: POS (head 0.700, untuned probe 0.800). Those models did not learn their task; "
        "their findings below do not describe models fine-tuned to convergence.**"
    )
    results = json.loads((d / "results.json").read_text())
    assert results["performance"][0]["head_beats_probe"] is False
    # a head above the probe: no warning
    unit = json.loads((d / "units" / "finetune_pos.json").read_text())
    unit["head_test_accuracy"] = 0.85
    (d / "units" / "finetune_pos.json").write_text(json.dumps(unit))
    lines = build_report(d).read_text().splitlines()
    assert lines[2] == (
        "Every fine-tuned head beat the untuned model's MLP probe on its task (1 of 1 task)."
    )
    assert "| POS | 0.800 +- 0.010 | 0.850 | yes |" in "\n".join(lines)


def test_report_has_the_heads_learning_curve(tmp_path):
    d = _write_study(tmp_path / "s")
    report = build_report(d).read_text()
    assert "## The head's learning curve" in report
    assert "| POS | 0 | n/a | 0.100 | 0.120 |" in report
    assert "| POS | 10 | 0.900 | 0.800 | 0.700 |" in report
    assert "| POS | 0.0002 | 3 | 10 | 2: 0, 10 | 4.000 | 1.000 |" in report
    assert (d / "figures" / "fig_head_curve.png").read_bytes()[:4] == b"\x89PNG"
    rows = (d / "tables" / "head_curve.csv").read_text().splitlines()
    assert rows == ["task,step,epoch,train_loss,train_accuracy,test_accuracy",
                    "pos,0,0,,0.1,0.12", "pos,10,1,0.9,0.8,0.7"]
    curve = json.loads((d / "results.json").read_text())["head_curves"]["pos"]
    assert [c["test_accuracy"] for c in curve] == [0.12, 0.7]


def test_read_metrics_orders_steps_and_names_bad_lines(tmp_path):
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"record":"metrics","step":5,"test_accuracy":0.5}\n'
                 '{"record":"metrics","step":0,"test_accuracy":0.1}\n')
    assert [r["step"] for r in read_metrics(p)] == [0, 5]
    p.write_text('{"record":"metrics","step":0,"test_accuracy":0.1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_metrics(p)


def test_build_report_with_a_missing_mlp_unit(tmp_path):
    d = _write_study(tmp_path / "s", with_after=False)
    report = build_report(d).read_text()
    assert "missing" in report  # the MLP-after cell
    assert "mlp_pos_after" in json.loads((d / "results.json").read_text())["missing_units"]


def test_build_report_needs_a_study_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a study directory"):
        build_report(tmp_path)

"""The `geomcore` command line end to end, the way a user runs it (main(argv) on tiny files).

Ground truth: the datasets are built so that DirectProbe's clusters are known
by construction (far-apart tight blobs; an XOR layout), and every distance is
checked against clarabel's QP (tests/ground_truth.py) and scipy's pearsonr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import pearsonr

from tests.ground_truth import qp_distance

from geomcore import io as gio  # noqa: E402
from geomcore.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REQUIRED = {
    "n_points",
    "n_labels",
    "n_clusters",
    "is_linear",
    "labels",
    "clusters",
    "label_distances",
    "min_distance_per_label",
    "label_pair_order",
    "distance_vector",
    "n_clusters_per_label",
    "conflicts",
    "unseen_test_labels",
    "schema_version",
    "timing",
}

CENTERS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 5.0, 1.0]])
NAMES = ["ADJ", "NOUN", "VERB"]


def _blobs(rng, n_per=8, spread=0.3):
    X = np.vstack([c + rng.uniform(-spread, spread, size=(n_per, 3)) for c in CENTERS])
    y = np.repeat(np.array(NAMES), n_per)
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


@pytest.fixture
def blobs(tmp_path):
    """Three far-apart blobs (one cluster per label) plus a 6-point test set."""
    rng = np.random.default_rng(0)
    X, y = _blobs(rng)
    # test points: two near each center, one label never seen in training
    P = np.repeat(CENTERS, 2, axis=0) + rng.uniform(-0.5, 0.5, size=(6, 3))
    t = ["ADJ", "ADJ", "NOUN", "ADV", "VERB", "VERB"]
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "y.txt").write_text("\n".join(y) + "\n")
    np.save(tmp_path / "P.npy", P)
    (tmp_path / "t.txt").write_text("\n".join(t) + "\n")
    return tmp_path, X, y, P, t


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_module_help_in_a_subprocess():
    res = subprocess.run(
        [sys.executable, "-m", "geomcore", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    for word in ("probe", "distances", "compare", "--train"):
        assert word in res.stdout


@pytest.mark.parametrize("command", ["probe", "distances"])
@pytest.mark.parametrize("flag, value", [("--tol", "0"), ("--rtol", "1.5"), ("--tol", "nan")])
def test_bad_tolerance_flags_stop_with_one_line(blobs, capsys, command, flag, value):
    d = blobs[0]
    rc, _, err = _run([command, "--train", d / "X.npy", "--train-labels", d / "y.txt",
                       "--out", d / ("r" if command == "probe" else "D.json"), flag, value], capsys)
    assert rc == 2 and f"{flag} must be a number in (0, 1); got" in err
    assert not (d / "r").exists() and not (d / "D.json").exists()


def test_probe_help_explains_the_files(capsys):
    rc, out, _ = _run(["probe", "--help"], capsys)
    assert rc == 0
    for text in ("text<TAB>label", "one vector per line", "clusters.txt", "dis.txt",
                 "prediction.txt", "results.json"):
        assert text in out


def test_probe_end_to_end(blobs, capsys):
    d, X, y, P, t = blobs
    out = d / "run"
    rc, stdout, err = _run(
        ["probe", "--train", d / "X.npy", "--train-labels", d / "y.txt", "--test", d / "P.npy",
         "--test-labels", d / "t.txt", "--out", out, "--quiet"],
        capsys,
    )
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert REQUIRED <= set(res)
    assert res["n_points"] == 24 and res["n_labels"] == 3
    assert res["n_clusters"] == 3 and res["is_linear"]
    assert res["labels"] == NAMES
    assert res["n_clusters_per_label"] == [1, 1, 1]
    # clusters: one per label, so points of the same label share an id and labels differ
    cl = np.array(res["clusters"])
    assert all(len(set(cl[y == lab])) == 1 for lab in NAMES)
    assert len({cl[y == lab][0] for lab in NAMES}) == 3
    np.testing.assert_array_equal(gio.read_clusters(out / "clusters.txt"), cl)
    # label distances = hull distances of the label sets (QP ground truth)
    M = np.array(res["label_distances"])
    for i in range(3):
        for j in range(3):
            truth = 0.0 if i == j else qp_distance(X[y == NAMES[i]], X[y == NAMES[j]])
            assert M[i, j] == pytest.approx(truth, rel=1e-3, abs=1e-9)
    assert res["label_pairs"] == [["ADJ", "NOUN"], ["ADJ", "VERB"], ["NOUN", "VERB"]]
    np.testing.assert_allclose(res["distance_vector"], [M[0, 1], M[0, 2], M[1, 2]])
    np.testing.assert_allclose(
        res["min_distance_per_label"],
        [min(M[0, 1], M[0, 2]), min(M[0, 1], M[1, 2]), min(M[0, 2], M[1, 2])],
    )
    # dis.txt: the same distances, 4 decimals, one line per different-label cluster pair
    dis = gio.read_dis(out / "dis.txt")
    assert len(dis) == 3
    for ci, a, cj, b, dv in dis:
        assert dv == pytest.approx(M[NAMES.index(a), NAMES.index(b)], abs=6e-5)
    # predictions: near each center -> that center's label; ADV is unseen and counts as wrong
    pred = gio.read_predictions(out / "prediction.txt")
    assert [g for g, _ in pred] == t
    assert [r[0][1] for _, r in pred] == ["ADJ", "ADJ", "NOUN", "NOUN", "VERB", "VERB"]
    for k, (_, ranked) in enumerate(pred):
        assert [r[2] for r in ranked] == sorted(r[2] for r in ranked)
        for cid, lab, dv in ranked:
            assert dv == pytest.approx(qp_distance(P[k : k + 1], X[y == lab]), abs=2e-4)
    assert res["accuracy"] == pytest.approx(5 / 6)
    assert res["unseen_test_labels"] == ["ADV"]
    assert res["test"]["unseen_test_labels"] == {"ADV": 1}


def test_finished_run_is_detected_and_other_inputs_refused(blobs, capsys):
    d, X, y, P, t = blobs
    out = d / "run"
    argv = ["probe", "--train", d / "X.npy", "--train-labels", d / "y.txt", "--out", out, "--quiet"]
    assert _run(argv, capsys)[0] == 0
    before = (out / "results.json").stat().st_mtime_ns
    rc, stdout, _ = _run(argv[:-1], capsys)
    assert rc == 0 and "already finished" in stdout
    assert (out / "results.json").stat().st_mtime_ns == before
    np.save(d / "X.npy", X * 2.0)
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and "different run" in err and "--force" in err
    assert _run(argv + ["--force"], capsys)[0] == 0
    res = json.loads((out / "results.json").read_text())
    Xs = X * 2.0
    truth = qp_distance(Xs[y == "ADJ"], Xs[y == "NOUN"])
    assert res["label_distances"][0][1] == pytest.approx(truth, rel=1e-3)


def test_original_formats_give_the_same_result(blobs, capsys):
    d, X, y, P, t = blobs
    (d / "train_entities.txt").write_text("".join(f"word {k}\t{lab}\n" for k, lab in enumerate(y)))
    (d / "train_emb.txt").write_text(
        "".join(" ".join(f"{v:.17g}" for v in row) + "\n" for row in X))
    (d / "test_entities.txt").write_text("".join(f"w{k}\t{lab}\n" for k, lab in enumerate(t)))
    (d / "test_emb.txt").write_text("".join(" ".join(f"{v:.17g}" for v in row) + "\n" for row in P))
    (d / "labels.txt").write_text("VERB\nNOUN\nADJ\nADV\n")
    for name, args in (
        ("npy", ["--train", d / "X.npy", "--train-labels", d / "y.txt",
                 "--test", d / "P.npy", "--test-labels", d / "t.txt"]),
        ("orig", ["--train", d / "train_emb.txt", "--train-labels", d / "train_entities.txt",
                  "--test", d / "test_emb.txt", "--test-labels", d / "test_entities.txt",
                  "--label-set", d / "labels.txt"]),
    ):
        assert _run(["probe", *args, "--out", d / name, "--quiet"], capsys)[0] == 0
    a = json.loads((d / "npy" / "results.json").read_text())
    b = json.loads((d / "orig" / "results.json").read_text())
    assert b["label_set"] == ["ADJ", "ADV", "NOUN", "VERB"]
    for key in ("labels", "clusters", "label_distances", "distance_vector", "accuracy",
                "unseen_test_labels"):
        assert a[key] == b[key], key
    assert (d / "npy" / "dis.txt").read_text() == (d / "orig" / "dis.txt").read_text()


def test_non_linear_xor_reports_cluster_level_distances(tmp_path, capsys):
    # Label a: blobs at (0,0) and (4,4); label b: blobs at (0,6) and (6,0).
    # Inside-blob merges come first, then a's two blobs (nearest centroids) merge:
    # their strip does not reach b's blobs. b's two blobs cannot merge: their
    # strip crosses a's. So 3 clusters: a = 1 cluster, b = 2.
    rng = np.random.default_rng(3)
    corners = [("a", (0, 0)), ("a", (4, 4)), ("b", (0, 6)), ("b", (6, 0))]
    X = np.vstack([np.array(c, float) + rng.uniform(-0.5, 0.5, size=(4, 2)) for _, c in corners])
    y = [lab for lab, _ in corners for _ in range(4)]
    blob = np.repeat(np.arange(4), 4)
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "y.txt").write_text("\n".join(y) + "\n")
    rc, _, err = _run(["probe", "--train", tmp_path / "X.npy", "--train-labels", tmp_path / "y.txt",
                       "--out", tmp_path / "r", "--quiet"], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["n_clusters"] == 3 and not res["is_linear"] and res["n_clusters_per_label"] == [1, 2]
    cl = np.array(res["clusters"])
    assert len(set(cl[blob < 2])) == 1 and len({cl[blob == 2][0], cl[blob == 3][0]}) == 2
    a_pts = X[blob < 2]
    cross = [qp_distance(a_pts, X[blob == j]) for j in (2, 3)]
    assert res["label_distances"][0][1] == pytest.approx(np.mean(cross), rel=1e-3)
    assert res["label_nearest_cluster_distances"][0][1] == pytest.approx(min(cross), rel=1e-3)
    assert res["n_cluster_pairs"] == 2 and len(gio.read_dis(tmp_path / "r" / "dis.txt")) == 2
    # inside distances: label a pools the pairs of its one 8-point cluster
    from scipy.spatial.distance import pdist

    assert res["inside_max_distance_per_label"][0] == pytest.approx(pdist(a_pts).max(), rel=1e-9)
    b_pairs = np.concatenate([pdist(X[blob == 2]), pdist(X[blob == 3])])
    assert res["inside_mean_distance_per_label"][1] == pytest.approx(b_pairs.mean(), rel=1e-9)


def test_one_label_only(tmp_path, capsys):
    np.save(tmp_path / "X.npy", np.random.default_rng(1).normal(size=(5, 3)))
    (tmp_path / "y.txt").write_text("NOUN\n" * 5)
    rc, _, err = _run(["probe", "--train", tmp_path / "X.npy", "--train-labels", tmp_path / "y.txt",
                       "--out", tmp_path / "r", "--quiet"], capsys)
    assert rc == 0, err
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["n_clusters"] == 1 and res["n_labels"] == 1
    assert res["distance_vector"] == [] and res["label_pairs"] == []
    assert res["label_distances"] == [[0.0]] and res["min_distance_per_label"] == [None]
    assert (tmp_path / "r" / "dis.txt").read_text() == ""


@pytest.mark.parametrize(
    "case, match",
    [
        ("count", r"--train-labels .*y_short.txt has 23 labels but --train .*X.npy has 24 vectors"),
        ("test_alone", r"--test and --test-labels go together"),
        ("empty_test", r"--test .*empty.npy has no vectors"),
        ("width", r"--test .*P2.npy has 2 features per vector but --train .*X.npy has 3"),
        ("missing", r"--train file .*absent.npy does not exist"),
        ("label_set", r"label 'ADJ' \(entry \d+\) is not in --label-set"),
        ("nan", r"--train file .*Xnan.npy, row 3, column 1: value nan is not finite"),
    ],
)
def test_bad_input_is_one_clear_line(blobs, capsys, case, match):
    d, X, y, P, t = blobs
    base = ["probe", "--train", d / "X.npy", "--train-labels", d / "y.txt", "--out", d / "bad"]
    if case == "count":
        (d / "y_short.txt").write_text("\n".join(y[:-1]) + "\n")
        argv = ["probe", "--train", d / "X.npy", "--train-labels", d / "y_short.txt",
                "--out", d / "bad"]
    elif case == "test_alone":
        argv = base + ["--test", d / "P.npy"]
    elif case == "empty_test":
        np.save(d / "empty.npy", np.zeros((0, 3)))
        (d / "none.txt").write_text("")
        argv = base + ["--test", d / "empty.npy", "--test-labels", d / "none.txt"]
    elif case == "width":
        np.save(d / "P2.npy", P[:, :2])
        argv = base + ["--test", d / "P2.npy", "--test-labels", d / "t.txt"]
    elif case == "missing":
        argv = ["probe", "--train", d / "absent.npy", "--train-labels", d / "y.txt",
                "--out", d / "bad"]
    elif case == "label_set":
        (d / "ls.txt").write_text("NOUN\nVERB\n")
        argv = base + ["--label-set", d / "ls.txt"]
    else:
        Xn = X.copy()
        Xn[3, 1] = np.nan
        np.save(d / "Xnan.npy", Xn)
        argv = ["probe", "--train", d / "Xnan.npy", "--train-labels", d / "y.txt",
                "--out", d / "bad"]
    rc, out, err = _run(argv, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geomcore: error: "), err
    assert "Traceback" not in err
    import re

    assert re.search(match, lines[0]), lines[0]
    assert not (d / "bad" / "results.json").exists()


def test_empty_test_labels_file_matches_empty_vectors_only(blobs, capsys):
    # an empty labels file for a non-empty test set is a count mismatch, named as such
    d, X, y, P, t = blobs
    (d / "none.txt").write_text("")
    rc, _, err = _run(["probe", "--train", d / "X.npy", "--train-labels", d / "y.txt",
                       "--test", d / "P.npy", "--test-labels", d / "none.txt", "--out", d / "bad"],
                      capsys)
    assert rc == 2 and "is empty" in err


def test_interrupted_run_leaves_no_results_and_resumes(blobs, capsys, monkeypatch):
    d, X, y, P, t = blobs
    argv = ["probe", "--train", d / "X.npy", "--train-labels", d / "y.txt", "--test", d / "P.npy",
            "--test-labels", d / "t.txt", "--out", d / "r"]
    real = gio.write_json

    def killed(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(gio, "write_json", killed)
    rc, _, err = _run(argv, capsys)
    assert rc == 130 and "interrupted" in err
    assert not (d / "r" / "results.json").exists()
    # only complete files, plus the clustering checkpoint
    names = sorted(p.name for p in (d / "r").iterdir())
    assert names == [".clustering_checkpoint.npz", "clusters.txt", "dis.txt", "prediction.txt"]
    first_dis = (d / "r" / "dis.txt").read_text()
    monkeypatch.setattr(gio, "write_json", real)

    # the rerun reuses the clustering, finishes, and removes the checkpoint
    import sys

    import geomcore.directprobe  # noqa: F401  (the subpackage; geomcore.directprobe is the function)

    dp = sys.modules["geomcore.directprobe"]

    def no_clustering(*a, **k):
        raise AssertionError("the clustering should have been reused")

    monkeypatch.setattr(dp, "directprobe", no_clustering)
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    assert "resuming" in out
    res = json.loads((d / "r" / "results.json").read_text())
    assert res["resumed_clustering"] and res["n_clusters"] == 3
    assert res["accuracy"] == pytest.approx(5 / 6)
    assert (d / "r" / "dis.txt").read_text() == first_dis
    assert not (d / "r" / ".clustering_checkpoint.npz").exists()


def test_checkpoint_of_other_inputs_is_not_reused(blobs, capsys, monkeypatch):
    d, X, y, P, t = blobs
    argv = ["probe", "--train", d / "X.npy", "--train-labels", d / "y.txt", "--out", d / "r",
            "--quiet"]

    def interrupted(path, data, **kwargs):
        raise KeyboardInterrupt()

    monkeypatch.setattr(gio, "write_json", interrupted)
    assert _run(argv, capsys)[0] == 130
    monkeypatch.undo()
    # move one point of ADJ next to NOUN's blob: a different clustering problem
    X2 = X.copy()
    X2[np.flatnonzero(y == "ADJ")[0]] = CENTERS[1] + 0.01
    np.save(d / "X.npy", X2)
    assert _run(argv, capsys)[0] == 0
    res = json.loads((d / "r" / "results.json").read_text())
    assert not res["resumed_clustering"]
    assert res["n_clusters"] > 3  # ADJ is no longer one cluster


def test_distances_and_compare(blobs, capsys):
    d, X, y, P, t = blobs
    base = ["distances", "--train", d / "X.npy", "--train-labels", d / "y.txt"]
    rc, out, err = _run(base, capsys)
    assert rc == 0, err
    assert out.splitlines()[0].split() == NAMES
    truth = {(a, b): qp_distance(X[y == a], X[y == b]) for a in NAMES for b in NAMES if a < b}
    row_adj = out.splitlines()[1].split()
    assert row_adj[0] == "ADJ"
    assert float(row_adj[2]) == pytest.approx(truth[("ADJ", "NOUN")], abs=6e-5)

    assert _run(base + ["--out", d / "a.json"], capsys)[0] == 0
    a = json.loads((d / "a.json").read_text())
    assert a["is_linear"] and a["labels"] == NAMES
    np.testing.assert_allclose(a["distance_vector"], [truth[p] for p in sorted(truth)], rtol=1e-3)

    assert _run(base + ["--out", d / "m.csv"], capsys)[0] == 0
    rows = [r.split(",") for r in (d / "m.csv").read_text().splitlines()]
    assert rows[0] == ["label"] + NAMES
    assert float(rows[1][2]) == pytest.approx(truth[("ADJ", "NOUN")], rel=1e-3)

    # a second representation: stretch one axis, so distances change unevenly
    X2 = X * np.array([1.0, 3.0, 1.0])
    np.save(d / "X2.npy", X2)
    argv = ["distances", "--train", d / "X2.npy", "--train-labels", d / "y.txt",
            "--out", d / "b.json"]
    assert _run(argv, capsys)[0] == 0
    rc, out, _ = _run(["compare", d / "a.json", d / "b.json"], capsys)
    assert rc == 0
    truth2 = [qp_distance(X2[y == a], X2[y == b]) for a, b in sorted(truth)]
    r = float(out.split()[1])
    ref = pearsonr([truth[p] for p in sorted(truth)], truth2).statistic
    assert r == pytest.approx(ref, abs=1e-3)
    assert "shared_label_pairs 3" in out


def test_compare_errors(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"labels": ["x"]}))
    (tmp_path / "b.json").write_text(
        json.dumps({"label_pairs": [["p", "q"]], "distance_vector": [1.0]}))
    rc, _, err = _run(["compare", tmp_path / "a.json", tmp_path / "b.json"], capsys)
    assert rc == 2 and "has no label_pairs or distance_vector" in err
    (tmp_path / "c.json").write_text(
        json.dumps({"label_pairs": [["x", "y"]], "distance_vector": [1.0]}))
    rc, _, err = _run(["compare", tmp_path / "c.json", tmp_path / "b.json"], capsys)
    assert rc == 2 and "share no label pair" in err
    rc, _, err = _run(["compare", tmp_path / "nope.json", tmp_path / "b.json"], capsys)
    assert rc == 2 and "does not exist" in err


def test_no_command_prints_help(capsys):
    rc, out, _ = _run([], capsys)
    assert rc == 2 and "probe" in out

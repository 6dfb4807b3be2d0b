"""Streamed geometry: the log's content against independent ground truth.

The geometry logged after the last step must be the geometry of the model
that was saved: embeddings are recomputed from ``out_dir/model`` with a plain
per-sentence loop (not ``embed_layers``), and the logged label distances are
checked against geomcore on those embeddings, against a clarabel QP of the
nearest-point problem and a HiGHS separability LP (tests/ground_truth.py), and
the centroids against numpy means.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from finetune.config import TrainConfig
from finetune import stream as stream_mod
from finetune.stream import JsonlLog, layer_geometry, probe_split
from finetune.train import fit
from tests.finetune.tiny import build_tiny_encoder, toy_task
from tests.ground_truth import lp_separable, qp_distance


def layer_vectors(model, tokenizer, task):
    """(layers, n, H) word vectors by a plain loop: one sentence per forward pass."""
    model.eval()
    per_layer = None
    with torch.inference_mode():
        for s, w, _ in np.asarray(task.targets):
            enc = tokenizer(list(task.sentences[s]), is_split_into_words=True, return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states
            ids = np.array([-1 if i is None else i for i in enc.word_ids(0)])
            vecs = [h[0][torch.as_tensor(ids == w)].mean(0).numpy() for h in hs]
            if per_layer is None:
                per_layer = [[] for _ in hs]
            for k, v in enumerate(vecs):
                per_layer[k].append(v)
    return [np.stack(v).astype(np.float64) for v in per_layer]


def test_logged_geometry_is_the_geometry_of_the_saved_and_initial_models(tmp_path):
    from geomcore.distances import label_distances
    from transformers import AutoModel, AutoTokenizer

    model, tok = build_tiny_encoder(tmp_path)
    train, test = toy_task("train", 16, 20), toy_task("test", 6, 21)
    cfg = TrainConfig(
        task="toy", out_dir=tmp_path / "run", epochs=1, batch_size=8, lr=2e-3, progress=False
    )
    res = fit(model, tok, train, test, cfg)
    lines = [json.loads(x) for x in (tmp_path / "run" / "geometry.jsonl").read_text().splitlines()]
    assert lines[0]["record"] == "header" and lines[0]["layers"] == 3
    geo = lines[1:]
    # step 0 and the last step (2), both splits, layers 0..2, each exactly once
    assert sorted((r["step"], r["split"], r["layer"]) for r in geo) == sorted(
        (s, sp, k) for s in (0, res.total_steps) for sp in ("train", "test") for k in range(3)
    )
    for r in geo:
        L = len(r["labels"])
        assert r["epoch"] == (0 if r["step"] == 0 else 1)
        assert np.asarray(r["label_distances"]).shape == (L, L)
        assert np.asarray(r["centroids"]).shape == (L, 32)
        assert len(r["min_distance_per_label"]) == L and r["seconds"] >= 0
        assert "n_clusters" not in r  # not requested

    saved = AutoModel.from_pretrained(tmp_path / "run" / "model")
    saved_tok = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    initial, _ = build_tiny_encoder(tmp_path)
    for step, enc_model in ((res.total_steps, saved), (0, initial)):
        for task in (train, test):
            X_layers = layer_vectors(enc_model, saved_tok, task)
            names = sorted(set(task.labels))
            y = np.array([names.index(lab) for lab in task.labels])
            for k, X in enumerate(X_layers):
                rec = next(
                    r for r in geo if (r["step"], r["split"], r["layer"]) == (step, task.split, k)
                )
                assert rec["labels"] == names
                assert rec["counts"] == [int((y == i).sum()) for i in range(len(names))]
                M = np.asarray(rec["label_distances"], dtype=float)
                ref = label_distances(X, y).matrix
                scale = np.ptp(X, axis=0).max()
                np.testing.assert_allclose(M, ref, rtol=1e-3, atol=1e-5 * scale)
                np.testing.assert_allclose(
                    rec["centroids"],
                    [X[y == i].mean(0) for i in range(len(names))],
                    rtol=1e-4,
                    atol=1e-5 * scale,
                )
                off = M + np.diag(np.full(len(names), np.inf))
                np.testing.assert_allclose(rec["min_distance_per_label"], off.min(1))
                if step == res.total_steps and task.split == "test":
                    # independent oracles for every label pair of the final model
                    for i in range(len(names)):
                        for j in range(i + 1, len(names)):
                            A, B = X[y == i], X[y == j]
                            assert rec["separable"][i][j] == lp_separable(A, B)
                            assert M[i, j] == pytest.approx(
                                qp_distance(A, B), rel=2e-3, abs=1e-5 * scale
                            )


def test_jsonl_log_dedupes_cuts_torn_lines_and_names_corrupt_ones(tmp_path):
    path = tmp_path / "log.jsonl"
    log = JsonlLog(path, ("step", "split"))
    assert log.append({"step": 0, "split": "train", "v": 1})
    assert not log.append({"step": 0, "split": "train", "v": 2})  # same key: not written again
    assert log.append({"step": 0, "split": "test", "v": 3})
    with open(path, "a") as fh:  # a writer killed mid-line
        fh.write('{"step": 5, "spl')
    log2 = JsonlLog(path, ("step", "split"))
    assert (0, "train") in log2 and (5, "train") not in log2
    assert [r["v"] for r in log2.records()] == [1, 3]
    assert log2.append({"step": 5, "split": "train", "v": 4})
    assert [json.loads(x)["v"] for x in path.read_text().splitlines()] == [1, 3, 4]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: not valid JSON"):
        JsonlLog(bad, ("step",))


def test_layer_geometry_single_label_is_json_safe():
    X = np.random.default_rng(0).normal(size=(5, 3))
    rec = layer_geometry(X, np.zeros(5, dtype=np.int64), ("only",))
    assert rec["labels"] == ["only"] and rec["label_distances"] == [[0.0]]
    assert rec["min_distance_per_label"] == [None]  # inf has no JSON form
    json.dumps(rec, allow_nan=False)


def test_directprobe_cluster_counts():
    # XOR, worked by hand: each label's two points form a diagonal. Both
    # same-label pairs are sqrt(2) apart; the tie goes to the lower index, so
    # label a merges first (its diagonal avoids b's two single points); b's
    # diagonal then crosses a's, so b stays as two points: 3 clusters.
    # Shifted apart, the labels are separable: one cluster per label.
    X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    assert layer_geometry(X, y, ("a", "b"), directprobe=True)["n_clusters"] == 3
    X_sep = X + np.array([[0, 0], [0, 0], [5, 0], [5, 0]])
    assert layer_geometry(X_sep, y, ("a", "b"), directprobe=True)["n_clusters"] == 2

    assert "n_clusters" not in layer_geometry(X, y, ("a", "b"))


def test_probe_split_restores_train_mode_and_skips_logged_layers(tmp_path):
    model, tok = build_tiny_encoder(tmp_path)
    task = toy_task("train", 6, 22)
    names = tuple(sorted(set(task.labels)))
    ids = np.array([names.index(x) for x in task.labels])
    log = JsonlLog(tmp_path / "g.jsonl", ("record", "step", "split", "layer"))
    log.append({"record": "geometry", "step": 3, "split": "train", "layer": 1})
    model.train()
    out = probe_split(model, tok, task, ids, names, log, step=3, epoch=0, progress=False)
    assert model.training
    assert [r["layer"] for r in out.records] == [0, 2]
    assert out.last_layer.shape == (task.n_examples, 32)
    assert len(log.records()) == 3


def test_layers_geometry_one_engine_call_matches_closed_forms():
    # Three labels on parallel segments, worked by hand, in two "layers" that
    # scale the same points by 1 and by 3 (distances scale with them); label 2
    # sits between 0 and 1 in layer b only where it crosses label 0 (overlap).
    a = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [2.0, 1.0], [5.0, 0.0], [5.0, 1.0]])
    y = np.array([0, 0, 1, 1, 2, 2])
    b = a.copy()
    b[4:] = [[-1.0, 0.5], [1.0, 0.5]]  # label 2 crosses label 0's segment
    recs = stream_mod.layers_geometry([a, 3 * a, b], y, ("p", "q", "r"))
    D = [np.array(r["label_distances"], float) for r in recs]
    np.testing.assert_allclose(D[0], [[0, 2, 5], [2, 0, 3], [5, 3, 0]], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(D[1], 3 * D[0], rtol=1e-4)
    # layer b: r overlaps p (distance 0, not separable); q is 1 from r's end, 2 from p
    np.testing.assert_allclose(D[2], [[0, 2, 0], [2, 0, 1], [0, 1, 0]], rtol=1e-4, atol=1e-6)
    assert recs[2]["separable"][0][2] is False and recs[2]["separable"][0][1] is True
    assert recs[0]["min_distance_per_label"] == pytest.approx([2, 2, 3], rel=1e-4)
    assert recs[0]["counts"] == [2, 2, 2]
    np.testing.assert_allclose(recs[2]["centroids"][2], [0.0, 0.5])
    assert all(r["seconds"] >= 0 and r["geometry_seconds"] >= r["seconds"] for r in recs)
    with pytest.raises(ValueError, match=r"layers\[1\] has 5 rows"):
        stream_mod.layers_geometry([a, a[:5]], y, ("p", "q", "r"))


def test_probes_start_from_the_previous_probe_of_the_same_split_and_layer(tmp_path, monkeypatch):
    import geomcore

    model, tok = build_tiny_encoder(tmp_path)
    task = toy_task("train", 8, 23)
    names = tuple(sorted(set(task.labels)))
    ids = np.array([names.index(x) for x in task.labels])
    log = JsonlLog(tmp_path / "g.jsonl", ("record", "step", "split", "layer"))
    warm: dict = {}
    seen = []
    real = geomcore.label_distances_layers

    def spy(*args, **kw):
        seen.append(kw.get("warm_start"))
        return real(*args, **kw)

    monkeypatch.setattr(geomcore, "label_distances_layers", spy)
    first = probe_split(
        model, tok, task, ids, names, log, step=0, epoch=0, progress=False, warm=warm
    )
    n_layers = len(first.records)
    assert sorted(warm) == [("train", k) for k in range(n_layers)]
    assert seen[0] is None or all(s is None for s in seen[0])
    before = dict(warm)
    second = probe_split(
        model, tok, task, ids, names, log, step=1, epoch=0, progress=False, warm=warm
    )
    # The second call started every layer from the first call's result for it.
    assert len(seen[1]) == n_layers
    for k in range(n_layers):
        assert seen[1][k] is before[("train", k)]
    for r1, r2 in zip(first.records, second.records):
        np.testing.assert_allclose(
            np.array(r2["label_distances"], float),
            np.array(r1["label_distances"], float),
            rtol=1e-4,
            atol=1e-12,
        )

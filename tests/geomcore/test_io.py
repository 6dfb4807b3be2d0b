"""File formats: the original DirectProbe's text files, .npy/.npz, JSON, atomic writes."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from geomcore import io as gio


# ---------------------------------------------------------------- inputs


def test_text_embeddings_round_trip_and_original_layout(tmp_path):
    X = np.random.default_rng(0).normal(size=(7, 5))
    path = tmp_path / "emb.txt"
    # the original's layout: one vector per line, numbers separated by spaces
    path.write_text("".join(" ".join(repr(float(v)) for v in row) + "\n" for row in X))
    np.testing.assert_array_equal(gio.read_embeddings(path), X)
    # tabs and repeated spaces are whitespace too; no trailing newline is fine
    path.write_text("1\t2   3\n4 5 6")
    np.testing.assert_array_equal(gio.read_embeddings(path), [[1, 2, 3], [4, 5, 6]])


def test_npy_and_npz_embeddings(tmp_path):
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", X)
    got = gio.read_embeddings(tmp_path / "x.npy")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, X)
    np.savez(tmp_path / "one.npz", emb=X)
    np.testing.assert_array_equal(gio.read_embeddings(tmp_path / "one.npz"), X)
    np.savez(tmp_path / "two.npz", a=X, b=2 * X)
    np.testing.assert_array_equal(gio.read_embeddings(f"{tmp_path / 'two.npz'}:b"), 2 * X)
    with pytest.raises(ValueError, match=r"holds 2 arrays \['a', 'b'\]; choose one"):
        gio.read_embeddings(tmp_path / "two.npz")
    with pytest.raises(ValueError, match="has no array 'c'"):
        gio.read_embeddings(f"{tmp_path / 'two.npz'}:c")
    np.save(tmp_path / "v.npy", np.arange(3.0))
    with pytest.raises(ValueError, match=r"shape \(3,\); expected 2-D"):
        gio.read_embeddings(tmp_path / "v.npy")


@pytest.mark.parametrize(
    "content, match",
    [
        ("1 2 3\n4 5\n", r"line 2 has 2 numbers but line 1 has 3"),
        ("1 2\n3 x\n", r"line 2: 'x' is not a number"),
        ("1 2\n\n3 4\n", r"line 2 is empty"),
        ("1 2\n3 nan\n", r"line 2, column 1: value nan is not finite"),
        ("", r"is empty"),
    ],
)
def test_bad_text_embeddings_name_the_line(tmp_path, content, match):
    path = tmp_path / "emb.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        gio.read_embeddings(path, name="--train")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"--train file .*nope.npy does not exist"):
        gio.read_embeddings(tmp_path / "nope.npy", name="--train")


def test_entities_file(tmp_path):
    path = tmp_path / "entities.txt"
    path.write_text("in the box\tp.Location\nfor\tp.Beneficiary\n")
    texts, labels = gio.read_entities(path)
    assert texts == ["in the box", "for"]
    assert labels == ["p.Location", "p.Beneficiary"]
    path.write_text("in\tp.Location\nfor p.Beneficiary\n")
    with pytest.raises(ValueError, match="line 2 has no tab"):
        gio.read_entities(path)


def test_read_labels_plain_entities_and_npy(tmp_path):
    (tmp_path / "y.txt").write_text("NOUN\nVERB \nNOUN\n")
    assert gio.read_labels(tmp_path / "y.txt").tolist() == ["NOUN", "VERB", "NOUN"]
    (tmp_path / "e.txt").write_text("dog\tNOUN\nruns\tVERB\n")
    assert gio.read_labels(tmp_path / "e.txt").tolist() == ["NOUN", "VERB"]
    (tmp_path / "m.txt").write_text("dog\tNOUN\nVERB\n")
    with pytest.raises(ValueError, match="mixes formats: line 1 .* line 2 has no tab"):
        gio.read_labels(tmp_path / "m.txt")
    np.save(tmp_path / "y.npy", np.array([3, 1, 3]))
    assert gio.read_labels(tmp_path / "y.npy").tolist() == [3, 1, 3]
    np.save(tmp_path / "yf.npy", np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="non-integer floats"):
        gio.read_labels(tmp_path / "yf.npy")


def test_label_set_is_sorted_and_unique(tmp_path):
    (tmp_path / "labels.txt").write_text("VERB\nADJ\nNOUN\nADJ\n")
    assert gio.read_label_set(tmp_path / "labels.txt") == ["ADJ", "NOUN", "VERB"]


# ---------------------------------------------------------------- the original's outputs


def test_clusters_txt_format_and_round_trip(tmp_path):
    path = tmp_path / "clusters.txt"
    gio.write_clusters(path, np.array([2, 0, 1, 0]))
    assert path.read_text() == "2\n0\n1\n0\n"
    np.testing.assert_array_equal(gio.read_clusters(path), [2, 0, 1, 0])


def test_dis_txt_exact_original_format(tmp_path):
    path = tmp_path / "dis.txt"
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    gio.write_dis(path, pairs, [0, 1, 1], ["p.Agent", "B-PER"], [0.123456, 2.0, 0.0])
    # utahnlp/DirectProbe utils.write_convex_dis: '({a}-{b}, {c}-{d}): {e:0.4f}'
    assert (
        path.read_text()
        == "(0-p.Agent, 1-B-PER): 0.1235\n(0-p.Agent, 2-B-PER): 2.0000\n"
        "(1-B-PER, 2-B-PER): 0.0000\n"
    )
    assert gio.read_dis(path) == [
        (0, "p.Agent", 1, "B-PER", 0.1235),
        (0, "p.Agent", 2, "B-PER", 2.0),
        (1, "B-PER", 2, "B-PER", 0.0),
    ]


def test_prediction_txt_exact_original_format(tmp_path):
    path = tmp_path / "prediction.txt"
    ranked = np.array([[1, 0, 2], [2, 1, 0]])
    dists = np.array([[0.0, 0.5, 1.25], [0.01, 3.0, 4.0]])
    gio.write_predictions(path, ["VERB", "ADJ"], ranked, dists, [0, 1, 1], ["NOUN", "VERB"])
    # utahnlp/DirectProbe utils.write_predictions: gold, then
    # '{cluster}-{label},{dist:0.4f}' tab-separated
    assert path.read_text() == (
        "VERB\t1-VERB,0.0000\t0-NOUN,0.5000\t2-VERB,1.2500\n"
        "ADJ\t2-VERB,0.0100\t1-VERB,3.0000\t0-NOUN,4.0000\n"
    )
    back = gio.read_predictions(path)
    assert back[1] == ("ADJ", [(2, "VERB", 0.01), (1, "VERB", 3.0), (0, "NOUN", 4.0)])
    with pytest.raises(ValueError, match="do not line up"):
        gio.write_predictions(path, ["VERB"], ranked, dists, [0, 1, 1], ["NOUN", "VERB"])


# ---------------------------------------------------------------- JSON and atomicity


def test_json_nan_becomes_null_and_numpy_is_plain(tmp_path):
    path = tmp_path / "r.json"
    gio.write_json(path, {"a": np.array([1.0, np.nan]), "b": np.int64(3), "c": (np.bool_(True),)})
    assert json.loads(path.read_text()) == {"a": [1.0, None], "b": 3, "c": [True]}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        gio.read_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        gio.read_json(tmp_path / "list.json")


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old complete content\n")
    with pytest.raises(RuntimeError, match="disk died"):
        with gio.atomic_open(path) as f:
            f.write("new half")
            raise RuntimeError("disk died")
    assert path.read_text() == "old complete content\n"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temp file left behind


def test_failure_mid_write_creates_no_file(tmp_path):
    path = tmp_path / "clusters.txt"

    class Boom:
        def __int__(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        # the third id fails after two lines were produced
        with gio.atomic_open(path) as f:
            for c in [1, 2, Boom()]:
                f.write(f"{int(c)}\n")
    assert os.listdir(tmp_path) == []


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    gio.write_json(path, {"run": 1})

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(gio.os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        gio.write_json(path, {"run": 2})
    assert json.loads(path.read_text()) == {"run": 1}
    assert os.listdir(tmp_path) == ["results.json"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        gio.write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_atomic_write_into_missing_directory_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        gio.write_text_atomic(tmp_path / "no" / "a.txt", "x")

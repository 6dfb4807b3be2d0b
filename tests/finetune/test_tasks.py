"""finetune.tasks against the real corpora and hand-written tiny ones.

Ground truth comes from an independent plain-text pass over each file in this
module (no ``conllu`` library, no code from finetune.tasks), and from the
numbers in the data README (1,000 PUD sentences, 21,180 words, 17 UPOS tags,
~400 STREUSLE prepositions per split with 39 role labels, 5,452 + 500 TREC
questions with 50 fine labels in train).
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from finetune.tasks import (
    TASKS,
    TaskData,
    UnseenLabelWarning,
    load_task,
    resolve_data_dir,
    unseen_labels,
)

# ---- independent readers -----------------------------------------------------------------


def raw_sentences(path: Path, encoding="utf-8") -> list[list[list[str]]]:
    """Sentences as lists of word rows (columns), integer ids only."""
    out, cur = [], []
    for line in path.read_text(encoding=encoding).splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
                cur = []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if cols[0].isdigit():
            cur.append(cols)
    if cur:
        out.append(cur)
    return out


@functools.lru_cache(maxsize=None)
def _pud_raw(data_dir):
    return raw_sentences(data_dir / "ud-english-pud" / "en_pud-ud-test.conllu")


@functools.lru_cache(maxsize=None)
def cached(name, split, data_dir):
    """load_task once per module run (TaskData is immutable, so sharing it is safe)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenLabelWarning)
        return load_task(name, split, data_dir)


# ---- real corpora ------------------------------------------------------------------------


def test_pos_matches_an_independent_pass_and_the_readme(data_dir):
    raw = _pud_raw(data_dir)
    assert len(raw) == 1000  # data README
    assert sum(len(s) for s in raw) == 21180  # data README
    total = 0
    for split, part in (("train", raw[:800]), ("test", raw[800:])):
        task = cached("pos", split, data_dir)
        assert (task.name, task.split, task.kind) == ("pos", split, "token")
        assert task.sentences == tuple(tuple(c[1] for c in s) for s in part)
        expect_labels = tuple(c[3] for s in part for c in s)
        assert task.labels == expect_labels
        expect_targets = [(i, j, -1) for i, s in enumerate(part) for j in range(len(s))]
        np.testing.assert_array_equal(task.targets, np.array(expect_targets, dtype=np.int64))
        assert task.targets.dtype == np.int64
        assert task.n_examples == len(expect_labels)
        assert len(task.label_set) == 17 and task.label_set == tuple(sorted(task.label_set))
        total += task.n_examples
    assert cached("pos", "train", data_dir).n_examples == 16858  # the engine's benchmark set
    assert total == 21180
    assert set(cached("pos", "train", data_dir).labels) == set(
        cached("pos", "train", data_dir).label_set
    )


def test_dep_arcs_match_an_independent_pass(data_dir):
    raw = _pud_raw(data_dir)
    train_rels = {c[7] for s in raw[:800] for c in s if c[6] != "0"}
    for split, part in (("train", raw[:800]), ("test", raw[800:])):
        task = cached("dep", split, data_dir)
        assert task.kind == "pair"
        expect_t, expect_l = [], []
        for i, s in enumerate(part):
            ids = [c[0] for c in s]
            for j, c in enumerate(s):
                if c[6] != "0":
                    expect_t.append((i, j, ids.index(c[6])))
                    expect_l.append(c[7])
        np.testing.assert_array_equal(task.targets, np.array(expect_t))
        assert task.labels == tuple(expect_l)
        assert task.label_set == tuple(sorted(train_rels))
        assert any(":" in lab for lab in task.labels)  # subtypes are kept (e.g. nmod:poss)
    # root words are not examples: one per sentence is left out
    train = cached("dep", "train", data_dir)
    n_roots = sum(1 for s in raw[:800] for c in s if c[6] == "0")
    assert train.n_examples == sum(len(s) for s in raw[:800]) - n_roots


def _streusle_raw(path: Path, col: int):
    rows = []
    for i, s in enumerate(raw_sentences(path)):
        for j, c in enumerate(s):
            if c[13].startswith("p.") and c[10] == "_":
                rows.append((i, j, c[col]))
    return rows


@pytest.mark.parametrize("name,col", [("ps-role", 13), ("ps-fxn", 14)])
def test_streusle_prepositions_match_an_independent_pass(data_dir, name, col):
    files = {"train": "streusle.ud_dev.conllulex", "test": "streusle.ud_test.conllulex"}
    train_labels = {r[2] for r in _streusle_raw(data_dir / "streusle" / files["train"], col)}
    for split, fname in files.items():
        rows = _streusle_raw(data_dir / "streusle" / fname, col)
        task = cached(name, split, data_dir)
        assert 350 <= task.n_examples <= 500  # README: about 400 per split
        assert task.n_examples == len(rows)
        np.testing.assert_array_equal(task.targets[:, :2], np.array([r[:2] for r in rows]))
        assert np.all(task.targets[:, 2] == -1)
        assert task.labels == tuple(r[2] for r in rows)
        assert task.label_set == tuple(sorted(train_labels))
        assert all(lab.startswith("p.") for lab in task.labels)
        if name == "ps-role":
            assert len(set(task.labels)) == 39  # README: 39 role labels
        # the words at the targets are the preposition forms of the file
        raw = raw_sentences(data_dir / "streusle" / fname)
        i, j = rows[0][:2]
        assert task.sentences[i][j] == raw[i][j][1]


def test_unseen_test_labels_are_kept_and_named(data_dir):
    train = cached("ps-role", "train", data_dir)
    with pytest.warns(UnseenLabelWarning) as rec:
        test = load_task("ps-role", "test", data_dir)
    expected = tuple(sorted(set(test.labels) - set(train.labels)))
    assert expected  # the real test split does hold such labels (p.Extent, p.Path)
    assert unseen_labels(test) == expected
    assert all(lab in str(rec[0].message) for lab in expected)
    ids = test.label_ids()
    for lab in expected:
        assert np.all(ids[np.array(test.labels) == lab] == -1)
    assert unseen_labels(train) == ()


def test_trec_matches_an_independent_pass(data_dir):
    for split, fname, enc in (
        ("train", "train_5500.label", "iso-8859-1"),
        ("test", "TREC_10.label", "ascii"),
    ):
        lines = [
            ln for ln in (data_dir / "trec" / fname).read_bytes().decode(enc).splitlines()
            if ln.strip()
        ]
        task = cached("trec50", split, data_dir)
        assert task.kind == "sentence"
        assert task.labels == tuple(ln.split(" ", 1)[0] for ln in lines)
        assert task.sentences == tuple(tuple(ln.split()[1:]) for ln in lines)
        np.testing.assert_array_equal(task.targets[:, 0], np.arange(len(lines)))
        assert np.all(task.targets[:, 1:] == -1)
        assert len(task.label_set) == 50  # README: 50 fine labels in train
    assert cached("trec50", "train", data_dir).n_examples == 5452
    assert cached("trec50", "test", data_dir).n_examples == 500
    # the ISO-8859-1 file decodes: a known non-ASCII byte becomes its Latin-1 character
    raw = (data_dir / "trec" / "train_5500.label").read_bytes()
    k = next(i for i, b in enumerate(raw) if b > 127)
    line_no = raw[:k].count(b"\n")
    task = cached("trec50", "train", data_dir)
    assert chr(raw[k]) in " ".join(task.sentences[line_no])


def test_taskdata_is_frozen(data_dir):
    task = cached("trec50", "test", data_dir)
    assert isinstance(task, TaskData)
    with pytest.raises(Exception):
        task.name = "x"
    with pytest.raises(ValueError):
        task.targets[0, 0] = 5


# ---- tiny corpora: hand-checked values and bad input ------------------------------------


def test_tiny_conllu_skips_multiword_and_empty_nodes(tiny_data_dir):
    test = load_task("pos", "test", tiny_data_dir)  # sentences 800.. : blocks 0, 1, 0
    assert test.sentences[1] == ("dogs", "ran", "fast")
    assert test.labels[:7] == ("DET", "NOUN", "VERB", "PUNCT", "NOUN", "VERB", "ADV")
    dep = load_task("dep", "test", tiny_data_dir)
    # sentence 0: the->cat, cat->sat, .->sat ; sentence 1: dogs->ran, fast->ran
    np.testing.assert_array_equal(
        dep.targets[:5], [[0, 0, 1], [0, 1, 2], [0, 3, 2], [1, 0, 1], [1, 2, 1]]
    )
    assert dep.labels[:5] == ("det", "nsubj", "punct", "nsubj", "advmod:tmod")


def test_tiny_streusle_and_trec(tiny_data_dir):
    role = load_task("ps-role", "train", tiny_data_dir)
    # "at" is part of a strong MWE (column 11 != "_") and is left out
    np.testing.assert_array_equal(role.targets, [[0, 1, -1], [1, 0, -1]])
    assert role.labels == ("p.Locus", "p.Goal")
    fxn = load_task("ps-fxn", "train", tiny_data_dir)
    assert fxn.labels == ("p.Locus", "p.Direction")
    with pytest.warns(UnseenLabelWarning, match="p.Agent"):
        test = load_task("ps-role", "test", tiny_data_dir)
    assert test.labels == ("p.Agent", "p.Locus") and unseen_labels(test) == ("p.Agent",)
    trec = load_task("trec50", "train", tiny_data_dir)
    assert trec.sentences[1] == ("Where", "is", "the", "caf\u00e9", "?")
    assert trec.label_set == ("HUM:ind", "LOC:city")


def test_unknown_task_lists_the_valid_ones(tiny_data_dir):
    with pytest.raises(ValueError) as err:
        load_task("ner", "train", tiny_data_dir)
    assert all(t in str(err.value) for t in TASKS)
    with pytest.raises(ValueError, match="split"):
        load_task("pos", "dev", tiny_data_dir)


def test_missing_data_dir_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("FINETUNE_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="--data-dir.*FINETUNE_DATA_DIR"):
        resolve_data_dir(None)
    monkeypatch.setenv("FINETUNE_DATA_DIR", str(tmp_path / "from-env"))
    (tmp_path / "from-env").mkdir()
    assert resolve_data_dir(None) == tmp_path / "from-env"
    assert resolve_data_dir(str(tmp_path)) == tmp_path  # the flag wins over the env
    with pytest.raises(ValueError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")


@pytest.mark.parametrize("name", TASKS)
def test_missing_corpus_file_is_named(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        load_task(name, "train", tmp_path)
    assert re.search(r"(en_pud-ud-test\.conllu|streusle\.ud_dev\.conllulex|train_5500\.label)",
                     str(err.value))


def _corrupt(path: Path, line_no: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line_no - 1] = new
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    "bad,match",
    [
        ("3\tsat\tsit\tVERB", "expected 10 tab-separated columns, found 4"),
        ("3\tsat\tsit\tVERB\tVBD\t_\tx\troot\t_\t_", "HEAD column of word 3 must be an integer"),
        ("3\tsat\tsit\tVERB\tVBD\t_\t9\troot\t_\t_", "points past the last word"),
        ("x\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_", "invalid token id"),
        ("5\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_", "out of order"),
    ],
)
def test_malformed_conllu_line_is_named(tmp_path, tiny_corpus, bad, match):
    path = tiny_corpus.write_pud(tmp_path)
    _corrupt(path, 5, bad)  # line 5 is word 3 of the first sentence
    with pytest.raises(ValueError, match=match) as err:
        load_task("pos", "train", tmp_path)
    assert str(path) in str(err.value) and "line 5" in str(err.value)


def test_unknown_upos_and_bad_encoding_are_named(tmp_path, tiny_corpus):
    path = tiny_corpus.write_pud(tmp_path)
    _corrupt(path, 5, "3\tsat\tsit\tVERBAL\tVBD\t_\t0\troot\t_\t_")
    with pytest.raises(ValueError, match="VERBAL"):
        load_task("pos", "train", tmp_path)
    path.write_bytes(b"# x\n1\tcaf\xe9\t_\tX\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(ValueError, match=r"line 2: not valid utf-8"):
        load_task("pos", "train", tmp_path)


def test_malformed_trec_line_is_named(tiny_data_dir):
    path = tiny_data_dir / "trec" / "train_5500.label"
    path.write_bytes(b"HUM:ind Who ran ?\nwhat is this\n")
    with pytest.raises(ValueError, match=r"train_5500\.label, line 2"):
        load_task("trec50", "train", tiny_data_dir)


def test_streusle_preposition_without_function_label_is_named(tiny_data_dir, tiny_corpus):
    lex_line = tiny_corpus.lex_line
    path = tiny_data_dir / "streusle" / "streusle.ud_dev.conllulex"
    path.write_text(
        "# sent_id = d1\n" + lex_line(1, "on", "ADP", 0, "root", ss="p.Locus", ss2="_") + "\n\n",
        encoding="utf-8",
    )
    load_task("ps-role", "train", tiny_data_dir)  # the role column is fine
    with pytest.raises(ValueError, match=r"streusle\.ud_dev\.conllulex.*line 1.*SS2"):
        load_task("ps-fxn", "train", tiny_data_dir)

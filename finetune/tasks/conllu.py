"""CoNLL-U reading (UD English PUD) and the POS and DEP tasks built on it.

The file is parsed with the ``conllu`` library, one sentence block at a time,
after a light line-level check of our own: ``conllu`` silently accepts lines
with missing columns, and a loader that mis-reads a column is worse than one
that stops, so every malformed line raises a ValueError naming the file and
its line number.

Words are the tokens with an integer id. Multiword-token lines (``1-2``) and
empty nodes (``8.1``) are not words and are skipped.

Split (fixed, by file order; PUD has no official split): of the 1,000 PUD
sentences, ``train`` is the first 800 and ``test`` the last 200.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import conllu as _conllu

from finetune.tasks.data import TaskData, check_split, make_task_data, read_text

__all__ = [
    "CONLLU_FIELDS",
    "PUD_FILE",
    "PUD_TRAIN_SENTENCES",
    "UPOS_TAGS",
    "ConlluSentence",
    "read_conllu",
    "load_pos",
    "load_dep",
]

CONLLU_FIELDS = (
    "id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc",
)
PUD_FILE = "ud-english-pud/en_pud-ud-test.conllu"
PUD_TRAIN_SENTENCES = 800  # first 800 sentences = train, the rest (200) = test

# The 17 universal POS tags of UD v2 (https://universaldependencies.org/u/pos/).
UPOS_TAGS = tuple(
    sorted(
        "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
    )
)

_WORD_ID = re.compile(r"^[1-9][0-9]*$")
_MULTIWORD_ID = re.compile(r"^[1-9][0-9]*-[1-9][0-9]*$")
_EMPTY_ID = re.compile(r"^[0-9]+\.[1-9][0-9]*$")


class ConlluSentence(NamedTuple):
    """One sentence: its words (integer-id tokens, in order) and where it starts.

    ``tokens[i]`` is the ``conllu`` token dict of word i (id == i + 1).
    """

    tokens: tuple[dict, ...]
    line: int  # 1-based line number of the sentence's first line in the file

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(t["form"] for t in self.tokens)


def _check_block(lines: list[str], first_line: int, n_fields: int, path: Path) -> None:
    """Line-level checks ``conllu`` does not do; raise naming file and line."""
    expected = 1
    for k, line in enumerate(lines):
        lineno = first_line + k
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != n_fields:
            raise ValueError(
                f"{path}, line {lineno}: expected {n_fields} tab-separated columns, "
                f"found {len(cols)}: {line[:80]!r}"
            )
        tid = cols[0]
        if _WORD_ID.match(tid):
            if int(tid) != expected:
                raise ValueError(
                    f"{path}, line {lineno}: word id {tid} out of order (expected {expected})."
                )
            expected += 1
            head = cols[6]
            if not head.isdigit():
                raise ValueError(
                    f"{path}, line {lineno}: the HEAD column of word {tid} must be an integer; "
                    f"found {head!r}."
                )
        elif not (_MULTIWORD_ID.match(tid) or _EMPTY_ID.match(tid)):
            raise ValueError(
                f"{path}, line {lineno}: invalid token id {tid!r} (expected an integer, "
                "a range like 1-2 or an empty node like 8.1)."
            )
    if expected == 1:
        raise ValueError(f"{path}, line {first_line}: sentence block has no words.")
    n_words = expected - 1
    for k, line in enumerate(lines):
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if _WORD_ID.match(cols[0]) and int(cols[6]) > n_words:
            raise ValueError(
                f"{path}, line {first_line + k}: HEAD {cols[6]} of word {cols[0]} points "
                f"past the last word ({n_words})."
            )


def read_conllu(path: Path, fields: tuple[str, ...] = CONLLU_FIELDS) -> list[ConlluSentence]:
    """Parse a CoNLL-U(-Lex) file into sentences of words.

    Args:
      path: the file.
      fields: column names (10 for CoNLL-U, 19 for STREUSLE's CoNLL-U-Lex).

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: a malformed line (message names file and line number).
    """
    text = read_text(path, "utf-8")
    sentences: list[ConlluSentence] = []
    block: list[str] = []
    start = 0
    all_lines = text.split("\n")
    for lineno, raw in enumerate(all_lines + [""], start=1):
        line = raw.rstrip("\r")
        if line.strip():
            if not block:
                start = lineno
            block.append(line)
            continue
        if not block:
            continue
        _check_block(block, start, len(fields), path)
        try:
            (tokenlist,) = _conllu.parse("\n".join(block) + "\n\n", fields=list(fields))
        except Exception as exc:  # the conllu library's own ParseException and friends
            raise ValueError(f"{path}, sentence starting at line {start}: {exc}") from exc
        words = tuple(t for t in tokenlist if isinstance(t["id"], int))
        sentences.append(ConlluSentence(words, start))
        block = []
    if not sentences:
        raise ValueError(f"{path}: no sentences found (is this a CoNLL-U file?).")
    return sentences


def _pud_splits(data_dir: Path) -> tuple[dict[str, list[ConlluSentence]], Path]:
    """Both splits of PUD: {"train": first 800 sentences, "test": the rest}."""
    path = data_dir / PUD_FILE
    sentences = read_conllu(path)
    if len(sentences) <= PUD_TRAIN_SENTENCES:
        raise ValueError(
            f"{path}: expected more than {PUD_TRAIN_SENTENCES} sentences for the fixed "
            f"train/test split, found {len(sentences)}."
        )
    return {
        "train": sentences[:PUD_TRAIN_SENTENCES],
        "test": sentences[PUD_TRAIN_SENTENCES:],
    }, path


def load_pos(data_dir: Path, split: str) -> TaskData:
    """POS: one example per word, label = UPOS. label_set = the 17 UD tags."""
    check_split(split)
    splits, path = _pud_splits(data_dir)
    sentences = splits[split]
    targets, labels = [], []
    for s, sent in enumerate(sentences):
        for w, tok in enumerate(sent.tokens):
            tag = tok["upos"]
            if tag not in UPOS_TAGS:
                raise ValueError(
                    f"{path}, sentence at line {sent.line}: word {w + 1} has UPOS {tag!r}, "
                    f"not one of the 17 UD tags {UPOS_TAGS}."
                )
            targets.append((s, w, -1))
            labels.append(tag)
    return make_task_data(
        "pos", split, "token", [sent.words for sent in sentences], targets, labels, UPOS_TAGS
    )


def dep_examples(sentences: list[ConlluSentence]) -> tuple[list[tuple[int, int, int]], list[str]]:
    """DEP: every word whose head is not the root (head != 0); label = full deprel."""
    targets, labels = [], []
    for s, sent in enumerate(sentences):
        for w, tok in enumerate(sent.tokens):
            head = int(tok["head"])
            if head == 0:
                continue
            targets.append((s, w, head - 1))  # ids are 1..n in order, so word index = id - 1
            labels.append(str(tok["deprel"]))
    return targets, labels


def load_dep(data_dir: Path, split: str) -> TaskData:
    """DEP: one example per (word, head) arc with head != 0; vector = concat(word, head).

    label_set = the relations seen in the train split (sorted).
    """
    check_split(split)
    splits, _ = _pud_splits(data_dir)
    _, train_labels = dep_examples(splits["train"])
    label_set = tuple(sorted(set(train_labels)))
    sentences = splits[split]
    targets, labels = dep_examples(sentences)
    return make_task_data(
        "dep", split, "pair", [sent.words for sent in sentences], targets, labels, label_set
    )


"""STREUSLE 4.x preposition supersenses: the PS-role and PS-fxn tasks.

Split: the STREUSLE train file is not distributed with the project's data, so
``train`` = ``streusle.ud_dev.conllulex`` and ``test`` = ``streusle.ud_test.conllulex``.

Examples: single-token prepositions, i.e. words whose column 14 (SS, the scene
role) starts with ``p.`` and whose column 11 (SMWE) is ``_`` (not part of a
strong multiword expression). This includes possessive pronouns, which STREUSLE
annotates with a ``p.`` supersense. Labels: column 14 (PS-role) or column 15
(SS2, the function; PS-fxn). label_set = the labels of the train split.
"""

from __future__ import annotations

from pathlib import Path

from finetune.tasks.conllu import CONLLU_FIELDS, ConlluSentence, read_conllu
from finetune.tasks.data import TaskData, check_split, make_task_data

__all__ = ["CONLLULEX_FIELDS", "STREUSLE_FILES", "load_ps", "ps_examples"]

CONLLULEX_FIELDS = CONLLU_FIELDS + (
    "smwe", "lexcat", "lexlemma", "ss", "ss2", "wmwe", "wcat", "wlemma", "lextag",
)
STREUSLE_FILES = {
    "train": "streusle/streusle.ud_dev.conllulex",
    "test": "streusle/streusle.ud_test.conllulex",
}
_COLUMN = {"ps-role": "ss", "ps-fxn": "ss2"}


def ps_examples(
    sentences: list[ConlluSentence], column: str, path: Path
) -> tuple[list[tuple[int, int, int]], list[str]]:
    """(targets, labels) for the single-token prepositions of ``sentences``."""
    targets, labels = [], []
    for s, sent in enumerate(sentences):
        for w, tok in enumerate(sent.tokens):
            ss = tok["ss"]
            if not (isinstance(ss, str) and ss.startswith("p.")) or tok["smwe"] != "_":
                continue
            label = tok[column]
            if not (isinstance(label, str) and label.startswith("p.")):
                raise ValueError(
                    f"{path}, sentence at line {sent.line}: preposition {w + 1} "
                    f"({tok['form']!r}) has no supersense in its {column.upper()} column "
                    f"(found {label!r})."
                )
            targets.append((s, w, -1))
            labels.append(label)
    return targets, labels


def load_ps(name: str, data_dir: Path, split: str) -> TaskData:
    """PS-role (``name="ps-role"``) or PS-fxn (``name="ps-fxn"``)."""
    check_split(split)
    column = _COLUMN[name]
    train_path = data_dir / STREUSLE_FILES["train"]
    train = read_conllu(train_path, CONLLULEX_FIELDS)
    _, train_labels = ps_examples(train, column, train_path)
    if split == "train":
        sentences, path = train, train_path
    else:
        path = data_dir / STREUSLE_FILES["test"]
        sentences = read_conllu(path, CONLLULEX_FIELDS)
    targets, labels = ps_examples(sentences, column, path)
    return make_task_data(
        name, split, "token", [s.words for s in sentences], targets, labels, set(train_labels)
    )

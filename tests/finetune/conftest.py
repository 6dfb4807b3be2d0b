"""Tiny-model and tiny-corpus fixtures for the finetune tests (nothing is downloaded).

The tiny encoder itself is built in tests/finetune/tiny.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.finetune.tiny import build_tiny_encoder  # noqa: E402  (after the importorskips)

REPO = Path(__file__).resolve().parents[2]

@pytest.fixture
def tiny_encoder(tmp_path):
    return build_tiny_encoder(tmp_path)


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A tiny encoder saved with save_pretrained() (model + tokenizer)."""
    model, tokenizer = build_tiny_encoder(tmp_path)
    out = tmp_path / "tiny-bert"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def data_dir() -> Path:
    """The real corpora: $FINETUNE_DATA_DIR, else <repo>/../shared/data (as in CI)."""
    path = Path(os.environ.get("FINETUNE_DATA_DIR") or REPO.parent / "shared" / "data")
    assert path.is_dir(), f"real corpora not found at {path}; set FINETUNE_DATA_DIR"
    return path


# ---- tiny corpora, in the real folder layout -------------------------------------------

TINY_CONLLU = """\
# sent_id = 1
# text = the cat sat.
1\tthe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = 2
# text = dogs ran fast
1-2\tdogs'ran\t_\t_\t_\t_\t_\t_\t_\t_
1\tdogs\tdog\tNOUN\tNNS\t_\t2\tnsubj\t_\t_
2\tran\trun\tVERB\tVBD\t_\t0\troot\t_\t_
2.1\tran\trun\tVERB\tVBD\t_\t_\t_\t_\t_
3\tfast\tfast\tADV\tRB\t_\t2\tadvmod:tmod\t_\t_
"""


def write_tiny_pud(root: Path, n_train: int = 800, n_test: int = 3) -> Path:
    """A PUD-shaped file: the two sentences above repeated n_train + n_test times."""
    blocks = TINY_CONLLU.strip().split("\n\n")
    text = "\n\n".join(blocks[i % 2] for i in range(n_train + n_test)) + "\n\n"
    path = root / "ud-english-pud" / "en_pud-ud-test.conllu"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def lex_line(i, form, upos, head, deprel, smwe="_", ss="_", ss2="_"):
    cols = [str(i), form, form, upos, "_", "_", str(head), deprel, "_", "_",
            smwe, "P" if ss != "_" else "N", form, ss, ss2, "_", "_", "_", "O"]
    return "\t".join(cols)


def write_tiny_streusle(root: Path) -> None:
    d = root / "streusle"
    d.mkdir(parents=True, exist_ok=True)
    dev = "\n".join([
        "# sent_id = d1",
        lex_line(1, "cat", "NOUN", 0, "root"),
        lex_line(2, "on", "ADP", 3, "case", ss="p.Locus", ss2="p.Locus"),
        lex_line(3, "mat", "NOUN", 1, "nmod"),
        lex_line(4, "at", "ADP", 1, "case", smwe="1:1", ss="p.Time", ss2="p.Time"),
        "",
        "# sent_id = d2",
        lex_line(1, "to", "ADP", 2, "case", ss="p.Goal", ss2="p.Direction"),
        lex_line(2, "dog", "NOUN", 0, "root"),
        "", "",
    ])
    test = "\n".join([
        "# sent_id = t1",
        lex_line(1, "by", "ADP", 2, "case", ss="p.Agent", ss2="p.Agent"),
        lex_line(2, "cat", "NOUN", 0, "root"),
        lex_line(3, "on", "ADP", 2, "case", ss="p.Locus", ss2="p.Locus"),
        "", "",
    ])
    (d / "streusle.ud_dev.conllulex").write_text(dev, encoding="utf-8")
    (d / "streusle.ud_test.conllulex").write_text(test, encoding="utf-8")


def write_tiny_trec(root: Path) -> None:
    d = root / "trec"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train_5500.label").write_bytes(
        "HUM:ind Who ran fast ?\nLOC:city Where is the caf\u00e9 ?\nHUM:ind Who sat ?\n".encode(
            "iso-8859-1"
        )
    )
    (d / "TREC_10.label").write_text("LOC:city Where is the mat ?\n", encoding="utf-8")


class TinyCorpus:
    """The tiny-corpus writers, handed to tests as a fixture (not imported from conftest,
    whose module name is shared with other test folders)."""

    write_pud = staticmethod(write_tiny_pud)
    write_streusle = staticmethod(write_tiny_streusle)
    write_trec = staticmethod(write_tiny_trec)
    lex_line = staticmethod(lex_line)


@pytest.fixture
def tiny_corpus() -> type[TinyCorpus]:
    return TinyCorpus


@pytest.fixture
def tiny_data_dir(tmp_path) -> Path:
    root = tmp_path / "data"
    write_tiny_pud(root)
    write_tiny_streusle(root)
    write_tiny_trec(root)
    return root

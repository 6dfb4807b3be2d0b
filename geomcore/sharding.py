"""Sharding of the pair axis over devices with jax.sharding.

Pairs are independent, so splitting the leading (pair) axis of every padded
batch across a 1-D mesh changes where the arithmetic runs, not its result: the
per-pair computations are the same XLA operations on the same values. The
driver pads the batch to a multiple of the device count.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["pair_sharding"]


def pair_sharding(devices=None) -> NamedSharding | None:
    """A NamedSharding that splits axis 0 over ``devices`` (default: all).

    Returns None on a single device, where sharding is a no-op.
    """
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) <= 1:
        return None
    mesh = Mesh(np.array(devices), ("pairs",))
    return NamedSharding(mesh, PartitionSpec("pairs"))

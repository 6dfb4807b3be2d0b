"""Padded sizes of the device path's batches: few distinct shapes, few compiles."""

from __future__ import annotations

import jax

__all__ = ["batch_floats", "bucket", "bucket4", "floor4"]


def batch_floats() -> int:
    """Padded floats per batch. On CPU the iteration is bound by memory
    bandwidth, so batches are kept within the last-level cache (8 MB in
    float32); accelerators want large batches (256 MB)."""
    return (1 << 21) if jax.default_backend() == "cpu" else (1 << 26)


def bucket(n: int, floor: int = 1) -> int:
    """Smallest power of 2 >= n (and >= floor): working-set sizes."""
    return max(floor, 1 << (max(int(n), 1) - 1).bit_length())


def bucket4(n: int) -> int:
    """Smallest power of 4 >= n: batch sizes (fewer shapes, fewer compiles)."""
    b = 1
    while b < n:
        b *= 4
    return b


def floor4(n: int) -> int:
    """Largest power of 4 <= n (at least 1)."""
    b = 1
    while b * 4 <= n:
        b *= 4
    return b

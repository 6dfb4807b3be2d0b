"""The torch -> geomcore hand-off: the only module that imports both.

Tensors reach geomcore through DLPack, so a CPU tensor's memory is shared, not
copied: ``to_numpy(t)`` is a numpy view of ``t``'s buffer and ``to_jax(t)`` a
JAX array over it. The view is read-only by convention: geomcore never writes
to its inputs, and the tensor must stay alive (and unmodified) while geomcore
uses the view.

Tensors that would need a copy are refused unless ``copy=True`` is passed, so
a silent O(n d) copy never hides in a hot loop: a tensor on an accelerator, a
non-contiguous view (transposes, slices with steps), or a dtype numpy cannot
hold (bfloat16). A tensor that requires grad is detached (no copy: detach
shares the storage).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["to_numpy", "to_jax", "label_distances"]

_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64, torch.int32, torch.int64,
                 torch.uint8, torch.int8, torch.int16, torch.bool)


def _needs_copy(t: torch.Tensor) -> str | None:
    if t.device.type != "cpu":
        return f"it is on device {t.device}"
    if t.dtype not in _NUMPY_DTYPES:
        return f"numpy cannot hold its dtype {t.dtype}"
    if not t.is_contiguous():
        return "it is not contiguous"
    return None


def to_numpy(t: torch.Tensor, *, copy: bool = False) -> np.ndarray:
    """A numpy array over the tensor's memory (DLPack; no copy).

    Args:
      t: a torch tensor.
      copy: allow a host copy when sharing is impossible (GPU, non-contiguous,
        bfloat16 -> float32); by default that raises instead.

    Raises:
      TypeError: ``t`` is not a torch tensor.
      ValueError: sharing is impossible and ``copy`` is False.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}.")
    t = t.detach()  # shares storage; DLPack refuses tensors that require grad
    why = _needs_copy(t)
    if why is not None:
        if not copy:
            raise ValueError(
                f"cannot hand the tensor (shape {tuple(t.shape)}) to geomcore without a copy: "
                f"{why}. Pass copy=True, or call .cpu()/.contiguous()/.float() yourself."
            )
        t = t.cpu().contiguous()
        if t.dtype not in _NUMPY_DTYPES:
            t = t.float()
    return np.from_dlpack(t)


def to_jax(t: torch.Tensor, *, copy: bool = False):
    """A JAX array over the tensor's memory (DLPack; no copy on CPU)."""
    import jax.dlpack

    arr = to_numpy(t, copy=copy)  # same checks; arr is a view of t
    out = jax.dlpack.from_dlpack(arr)
    if not copy and arr.size and out.unsafe_buffer_pointer() != arr.ctypes.data:
        # XLA imports only suitably aligned buffers in place (a slice that starts
        # mid-allocation is copied); say so instead of copying behind the caller's back.
        raise ValueError(
            "JAX could not import the tensor in place (its data pointer is not aligned as "
            "XLA requires, e.g. a slice starting mid-buffer); pass copy=True or .clone() it."
        )
    return out


def label_distances(vectors: torch.Tensor, labels: Any, **kwargs):
    """geomcore.distances.label_distances on a tensor of example vectors, without a copy.

    Args:
      vectors: (n, D) float tensor (e.g. one layer from ``finetune.embed.embed_layers``).
      labels: (n,) labels.
      **kwargs: passed on (tol, rtol).
    """
    from geomcore.distances import label_distances as _label_distances

    return _label_distances(to_numpy(vectors), np.asarray(labels), **kwargs)

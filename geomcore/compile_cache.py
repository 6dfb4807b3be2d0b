"""JAX's persistent compilation cache, switched on for geomcore's command lines.

The solvers compile one XLA program per padded shape (a few dozen for the
streamed geometry of a 7-layer model). Each takes about a second on a CPU,
so a fresh process spends tens of seconds compiling before its first
answer (measurements: docs/history.md, "Compilation cache"). JAX can keep
compiled programs on disk; this module turns that on for the ``geomcore`` and
``finetune`` commands (not on import: a library does not change a process's
JAX configuration behind its back).

Where: ``$GEOMCORE_COMPILATION_CACHE`` if set (``0``/``off`` disables it),
else ``$XDG_CACHE_HOME/geomcore/jax`` (default ``~/.cache/geomcore/jax``). A
cache directory the user already gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config``) is kept. The cache is trusted code: like JAX, it must live
in a directory only its user can write.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache", "default_cache_dir"]

# Programs that compile faster than this are not written (JAX's default is
# 1 s, above most of geomcore's, which take 0.7-1.1 s here).
MIN_COMPILE_SECONDS = 0.2
_OFF = ("0", "off", "false", "no")


def default_cache_dir() -> Path | None:
    """The cache directory geomcore uses, or None when disabled by the environment."""
    env = os.environ.get("GEOMCORE_COMPILATION_CACHE", "")
    if env.lower() in _OFF:
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "geomcore" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Switch on JAX's persistent compilation cache; returns its directory.

    Args:
      path: the directory; None = an already configured JAX cache directory,
        else :func:`default_cache_dir`.

    Returns:
      The directory in use, or None if the cache stays off (disabled by
      ``GEOMCORE_COMPILATION_CACHE=0`` with no explicit ``path``).
    """
    current = jax.config.jax_compilation_cache_dir
    if path is None and current:
        return Path(current)
    target = Path(path).expanduser() if path is not None else default_cache_dir()
    if target is None:
        return None
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    jax.config.update("jax_compilation_cache_dir", str(target))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return target

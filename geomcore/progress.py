"""Progress bars that tell the truth in a terminal and stay quiet in a log.

``progress_bar(total, desc)`` gives a tqdm bar when the stream (stderr by
default) is a terminal. Anywhere else (a file, a pipe, CI) it gives a
:class:`LogBar`: the same ``update`` / ``close`` / context-manager interface,
but it never writes ``\\r``; it prints one plain line when it starts, at most
one every ``interval`` seconds while it runs, and one when it closes::

    directprobe 1/3 merging without checks: 8123/16841 (48%) | 12s | left ~13s

The time left is the work left divided by the rate so far in this bar (so a
run made of phases of different speeds shows one bar per phase, each with its
own rate, rather than one count whose rate changes under it).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["LogBar", "format_seconds", "is_terminal", "progress_bar"]


def is_terminal(stream: TextIO | None) -> bool:
    """True when ``stream`` is an interactive terminal."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``1h02m`` (rounded down; negative counts as 0)."""
    s = max(0, int(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class LogBar:
    """A progress counter that prints plain lines (see the module docstring).

    Args:
      total: units of work (None: unknown, no percentage or time left).
      desc: what is counted.
      unit: the unit's name.
      stream: where to write (None: ``sys.stderr`` at each write).
      interval: at most one line per this many seconds between start and close.
      clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        stream: TextIO | None = None,
        interval: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if interval <= 0:
            raise ValueError(f"`interval` must be > 0, got {interval!r}.")
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self.postfix = ""
        self._stream, self.interval, self._clock = stream, float(interval), clock
        self._t0 = clock()
        self._last = self._t0
        self._closed = False
        self._write()

    def line(self) -> str:
        """The current progress line (without newline)."""
        el = self._clock() - self._t0
        if self.total:
            frac = min(1.0, self.n / self.total)
            rest = el * (self.total - self.n) / self.n if self.n else 0.0
            left = "?" if self.n == 0 else "~" + format_seconds(rest)
            return (
                f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * frac:.0f}%)"
                f"{self.postfix} | {format_seconds(el)} | left {left}"
            )
        return f"{self.desc}: {self.n} {self.unit}{self.postfix} | {format_seconds(el)}"

    def _write(self) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(self.line() + "\n")
        stream.flush()
        self._last = self._clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._clock() - self._last >= self.interval:
            self._write()

    def set_postfix(self, **values) -> None:
        """Extra fields shown after the count (as tqdm's ``set_postfix``)."""
        self.postfix = "".join(f", {k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._write()

    def __enter__(self) -> "LogBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Off:
    """A disabled bar."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_Off":
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(
    total: int | None,
    desc: str,
    *,
    unit: str = "it",
    enabled: bool = True,
    stream: TextIO | None = None,
    interval: float = 15.0,
    leave: bool = True,
):
    """A tqdm bar on a terminal, a :class:`LogBar` elsewhere, nothing if not ``enabled``."""
    if not enabled:
        return _Off()
    target = stream if stream is not None else sys.stderr
    if is_terminal(target):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=target, leave=leave)
    return LogBar(total, desc, unit=unit, stream=stream, interval=interval)

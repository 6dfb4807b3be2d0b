"""One line of progress for long runs, safe for log files.

A :class:`ProgressLine` follows a sequence of weighted units of work (a study's
units, or the optimizer steps of one fine-tuning run as a single unit) and
shows one line: units done out of the total, the current unit (and what it is
doing), the elapsed time and an estimate of the time left::

    study 7/29 units (41%) | finetune_pos: step 120/250 | elapsed 12m05s | left ~17m20s

Where the line goes decides how it is drawn:

- a terminal (``stream.isatty()``): the line is rewritten in place with ``\\r``
  at most every ``tty_interval`` seconds (a live bar);
- anything else (a file, a pipe, CI): never ``\\r``; a new line is printed when
  a unit starts or ends, and at most every ``interval`` seconds in between.
  So a log of a run of T seconds over U units holds at most
  ``2 U + T / interval + 1`` lines of progress.

The time left is the remaining weighted work divided by the rate of this
session (work done since the line was created, including the finished part of
the current unit, per second of wall time); units finished before this session
(a resumed study) count as done but not in the rate. Before any work is done
the estimate is ``?``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterable, Iterator, Sequence, TextIO

# One formatter and one terminal test for geomcore's bars and this line.
from geomcore.progress import format_seconds, is_terminal

__all__ = ["ProgressLine", "format_seconds", "is_terminal", "hf_bars"]


@contextlib.contextmanager
def hf_bars(enabled: bool) -> Iterator[None]:
    """transformers' own tqdm bars (loading, saving weights) on or off inside the block.

    Restores the previous setting on exit.
    """
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()


class ProgressLine:
    """Progress of weighted units of work as one line; see the module docstring.

    Args:
      label: the line's first word (``study``, ``train pos``).
      units: (name, weight) of every unit in order; weights are relative costs
        (> 0), e.g. expected seconds.
      done: names of units already finished before this session.
      stream: where to write; None = ``sys.stderr`` at each write.
      interval: non-terminal: at most one line per this many seconds between
        a unit's start and end.
      tty_interval: terminal: minimum seconds between redraws.
      terminal: force terminal (True) or log (False) drawing; None = ask the
        stream.
      clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        label: str,
        units: Sequence[tuple[str, float]],
        *,
        done: Iterable[str] = (),
        stream: TextIO | None = None,
        interval: float = 15.0,
        tty_interval: float = 0.5,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not units:
            raise ValueError("ProgressLine needs at least one unit.")
        names = [n for n, _ in units]
        if len(set(names)) != len(names):
            raise ValueError(f"unit names must be unique, got {names}.")
        for n, w in units:
            if not (isinstance(w, (int, float)) and w > 0):
                raise ValueError(f"unit {n!r}: weight must be a positive number, got {w!r}.")
        if interval <= 0 or tty_interval < 0:
            raise ValueError(
                f"`interval` must be > 0 and `tty_interval` >= 0, got {interval}, {tty_interval}."
            )
        self.label = label
        self.weights = dict(units)
        self.order = names
        done = set(done)
        unknown = done - set(names)
        if unknown:
            raise ValueError(f"done units not in the plan: {sorted(unknown)}.")
        self.done = {n for n in names if n in done}
        self._initial = sum(self.weights[n] for n in self.done)
        self._session = 0.0  # weight finished in this session
        self._stream = stream
        self.interval = float(interval)
        self.tty_interval = float(tty_interval)
        self._terminal = terminal
        self._clock = clock
        self._t0 = clock()
        self._last_print = -float("inf")
        self.current: str | None = None
        self._fraction = 0.0
        self._detail = ""
        self._width = 0
        self._closed = False

    # ---------------------------------------------------------------- state
    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def terminal(self) -> bool:
        return is_terminal(self.stream) if self._terminal is None else self._terminal

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def _session_work(self) -> float:
        cur = self.weights[self.current] * self._fraction if self.current else 0.0
        return self._session + cur

    def seconds_left(self) -> float | None:
        """Estimated seconds to finish every unit (None before any work is done)."""
        work = self._session_work()
        t = self.elapsed()
        if work <= 0 or t <= 0:
            return None
        remaining = self.total - self._initial - work
        return max(0.0, remaining) * t / work

    def line(self) -> str:
        """The progress line as it would be printed now."""
        n = len(self.order)
        frac = (self._initial + self._session_work()) / self.total
        parts = [f"{self.label} {len(self.done)}/{n} units ({100 * frac:.0f}%)"]
        if self.current is not None:
            parts.append(self.current + (f": {self._detail}" if self._detail else ""))
        parts.append(f"elapsed {format_seconds(self.elapsed())}")
        left = self.seconds_left()
        parts.append("left ?" if left is None else f"left ~{format_seconds(left)}")
        return " | ".join(parts)

    # ---------------------------------------------------------------- events
    def begin(self, name: str) -> None:
        """``name`` starts (it must be a planned unit not yet done)."""
        if name not in self.weights:
            raise ValueError(f"unit {name!r} is not in the plan.")
        self.current, self._fraction, self._detail = name, 0.0, ""
        self._write(force=True)

    def update(self, fraction: float, detail: str = "") -> None:
        """The current unit is ``fraction`` (0..1) done; ``detail`` says how far."""
        if self.current is None:
            raise ValueError("update() before begin(): no unit is running.")
        self._fraction = min(1.0, max(0.0, float(fraction)))
        self._detail = detail
        self._write(force=False)

    def end(self, name: str) -> None:
        """``name`` finished in this session (a second call for it prints nothing)."""
        if name not in self.weights:
            raise ValueError(f"unit {name!r} is not in the plan.")
        if name in self.done and self.current != name:
            return  # ended before: nothing new to say
        if name not in self.done:
            self.done.add(name)
            self._session += self.weights[name]
        if self.current == name:
            self.current, self._fraction, self._detail = None, 0.0, ""
        self._write(force=True)

    def skip(self, name: str) -> None:
        """``name`` was found finished (an earlier session); no line is printed."""
        if name not in self.weights:
            raise ValueError(f"unit {name!r} is not in the plan.")
        if name not in self.done:
            self.done.add(name)
            self._initial += self.weights[name]

    def close(self) -> None:
        """Print the final line (a terminal gets its newline)."""
        if self._closed:
            return
        self._closed = True
        self._write(force=True)
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()

    # ---------------------------------------------------------------- output
    def _write(self, *, force: bool) -> None:
        if self._closed and not force:
            return
        now = self._clock()
        text = self.line()
        if self.terminal:
            if not force and now - self._last_print < self.tty_interval:
                return
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            if not force and now - self._last_print < self.interval:
                return
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_print = now

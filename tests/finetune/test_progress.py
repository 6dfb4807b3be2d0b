"""The one-line progress: text, estimate of time left, and no flooding of a log.

A fake clock makes every time exact; the expected estimates are worked out by
hand from the module's definition (remaining work / this session's rate).
"""

from __future__ import annotations

import io
import re

import pytest

from finetune.progress import ProgressLine, format_seconds, is_terminal


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_seconds():
    assert format_seconds(0) == "0s"
    assert format_seconds(59.9) == "59s"
    assert format_seconds(65) == "1m05s"
    assert format_seconds(3725) == "1h02m"
    assert format_seconds(-3) == "0s"


def test_is_terminal():
    assert not is_terminal(io.StringIO())
    assert is_terminal(Tty())
    assert not is_terminal(None)


def test_line_counts_units_and_estimates_time_left():
    clock, out = Clock(), io.StringIO()
    # 4 units of weights 1, 1, 2, 6 (total 10); "a" was done in an earlier session.
    line = ProgressLine("study", [("a", 1), ("b", 1), ("c", 2), ("d", 6)], done=["a"],
                        stream=out, interval=10, clock=clock)
    assert line.line() == "study 1/4 units (10%) | elapsed 0s | left ?"
    line.begin("b")
    clock.t += 30
    line.end("b")  # 1 unit of weight in 30 s; 8 left -> 240 s
    assert line.seconds_left() == pytest.approx(240.0)
    assert line.line() == "study 2/4 units (20%) | elapsed 30s | left ~4m00s"
    line.begin("c")
    clock.t += 30
    line.update(0.5, "step 5/10")  # half of c (1 weight): 2 weights in 60 s; 7 left -> 210 s
    assert line.line() == "study 2/4 units (30%) | c: step 5/10 | elapsed 1m00s | left ~3m30s"
    line.close()
    text = out.getvalue()
    assert "\r" not in text
    # begin b, end b, begin c, update (30 s after the last line >= interval), close
    assert text.splitlines() == [
        "study 1/4 units (10%) | b | elapsed 0s | left ?",
        "study 2/4 units (20%) | elapsed 30s | left ~4m00s",
        "study 2/4 units (20%) | c | elapsed 30s | left ~4m00s",
        "study 2/4 units (30%) | c: step 5/10 | elapsed 1m00s | left ~3m30s",
        "study 2/4 units (30%) | c: step 5/10 | elapsed 1m00s | left ~3m30s",
    ]


def test_a_log_gets_at_most_one_line_per_interval():
    clock, out = Clock(), io.StringIO()
    line = ProgressLine("train pos", [("steps", 1.0)], stream=out, interval=15, clock=clock)
    line.begin("steps")
    for step in range(1, 1001):  # 1000 steps of 0.125 s: 125 s
        clock.t += 0.125
        line.update(step / 1000, f"step {step}/1000")
    line.end("steps")
    line.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # begin, updates >= 15 s apart over 125 s (at most 8), end, close
    assert 3 <= len(lines) <= 1 + 125 // 15 + 2
    assert lines[-1] == "train pos 1/1 units (100%) | elapsed 2m05s | left ~0s"
    stamps = [float(m.group(1)) for m in (re.search(r"step (\d+)/", s) for s in lines) if m]
    assert len(stamps) >= 5
    assert all(b - a >= 120 for a, b in zip(stamps, stamps[1:]))  # >= 15 s = 120 steps apart


def test_a_terminal_gets_one_rewritten_line():
    clock, out = Clock(), Tty()
    line = ProgressLine("study", [("a", 1), ("b", 1)], stream=out, clock=clock)
    line.begin("a")
    clock.t += 1
    line.update(0.5, "half")
    line.end("a")
    line.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 4  # begin, update, end, close
    assert "study 1/2 units (50%)" in text.split("\r")[-1]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one unit"):
        ProgressLine("x", [])
    with pytest.raises(ValueError, match="weight"):
        ProgressLine("x", [("a", 0)])
    with pytest.raises(ValueError, match="unique"):
        ProgressLine("x", [("a", 1), ("a", 2)])
    with pytest.raises(ValueError, match="not in the plan"):
        ProgressLine("x", [("a", 1)], done=["b"])
    line = ProgressLine("x", [("a", 1)], stream=io.StringIO())
    with pytest.raises(ValueError, match="before begin"):
        line.update(0.5)
    with pytest.raises(ValueError, match="not in the plan"):
        line.begin("z")

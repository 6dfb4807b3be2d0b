"""Every Python example of README.md runs as written, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("k", range(len(BLOCKS)))
def test_readme_example_runs(k, tmp_path):
    res = subprocess.run([sys.executable, "-c", BLOCKS[k]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, f"README example {k} failed:\n{BLOCKS[k]}\n{res.stderr[-3000:]}"

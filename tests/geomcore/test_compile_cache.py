"""The persistent compilation cache of the command lines (geomcore.compile_cache).

Each case runs a fresh interpreter, because JAX reads its cache settings once
per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    full = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GEOMCORE_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR")
    }
    full.update(env)
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return res


def _entries(d: Path) -> set[str]:
    return {p.name for p in d.rglob("*") if p.is_file()} if d.exists() else set()


def test_cli_fills_the_cache_once_and_reuses_it(tmp_path):
    # Two labels of 200 points each on the device path (a JAX program).
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 4.0])
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "y.txt").write_text("\n".join(["a"] * 200 + ["b"] * 200) + "\n")
    cache = tmp_path / "cache"
    cli = (
        "from geomcore.cli import main; "
        "raise SystemExit(main(['distances', '--train', 'X.npy', '--train-labels', 'y.txt', "
        "'--out', 'd.json', '--path', 'device']))"
    )
    _run(cli, {"GEOMCORE_COMPILATION_CACHE": str(cache)}, tmp_path)
    first = _entries(cache)
    assert first, "the first run wrote no compiled program"
    _run(cli, {"GEOMCORE_COMPILATION_CACHE": str(cache)}, tmp_path)
    # The second process found every program it needed: nothing new was written.
    assert _entries(cache) == first


def test_off_switch_and_a_users_own_cache_dir(tmp_path):
    probe = (
        "import jax; from geomcore.compile_cache import enable_compilation_cache as e; "
        "print(e()); print(jax.config.jax_compilation_cache_dir)"
    )
    off = _run(probe, {"GEOMCORE_COMPILATION_CACHE": "0"}, tmp_path).stdout.split("\n")
    assert off[0] == "None" and off[1] in ("None", "")
    mine = tmp_path / "mine"
    kept = _run(probe, {"JAX_COMPILATION_CACHE_DIR": str(mine)}, tmp_path).stdout.split("\n")
    assert kept[0] == str(mine) and kept[1] == str(mine)
    xdg = _run(probe, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path).stdout.split("\n")
    assert xdg[0] == str(tmp_path / "xdg" / "geomcore" / "jax") == xdg[1]

"""geomcore must import and run without torch."""

import subprocess
import sys


def test_geomcore_does_not_import_torch():
    code = (
        "import sys, numpy as np, geomcore\n"
        "geomcore.hull_distance(np.eye(3), np.eye(3) + 5)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"

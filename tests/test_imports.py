"""The import direction of the packages, read from their source with ast.

geomcore imports neither torch nor finetune; neither product package imports
test or benchmark code (tests/, bench/, conftest), which is not installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package, forbidden", [
    ("geomcore", {"tests", "bench", "conftest", "torch", "finetune"}),
    ("finetune", {"tests", "bench", "conftest"}),
])
def test_product_packages_import_no_test_code(package, forbidden):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(REPO)): sorted(n for n in _imports(f) if _top(n) in forbidden)
           for f in files}
    assert {f: n for f, n in bad.items() if n} == {}


def test_the_check_sees_an_import(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom tests.ground_truth import qp_distance\n")
    assert _imports(src) == {"os", "tests.ground_truth"}

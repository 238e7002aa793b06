"""The package's structure: its layers (the import-linter contract in pyproject.toml) and no import cycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_layers_contract_holds():
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert command, "lint-imports (import-linter, in the test extra) is not installed"
    done = subprocess.run([command, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_no_module_of_the_package_imports_itself_back_in_a_circle():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("zoo", exclude_type_checking_imports=True)
    modules = sorted(graph.modules)
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:  # depth-first; 1: on the path, 2: done
        state[module] = 1
        for target in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(target) == 1:
                circles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own submodules is not a circle of the code (zoo.serve -> zoo.serve.app).
    real = [c for c in circles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not real, "\n".join(" -> ".join(c) for c in real)

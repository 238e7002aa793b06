"""docs/plugins.md works as written: its files, installed with pip, make a plugin whose tests pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytest.importorskip("torch")
GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def guide_files() -> dict[str, str]:
    """The fenced blocks whose first line is ``# file: PATH``, by path."""
    blocks = re.findall(r"```(?:python|toml)\n# file: (\S+)\n(.*?)```", GUIDE, flags=re.DOTALL)
    return dict(blocks)


def test_the_guide_names_its_three_files():
    assert sorted(guide_files()) == ["zoo-lenet/pyproject.toml", "zoo-lenet/tests/test_lenet.py",
                                     "zoo-lenet/zoo_lenet/__init__.py"]


def test_the_guides_plugin_installs_registers_and_passes_its_own_tests(tmp_path):
    for path, text in guide_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(tmp_path / "zoo-lenet")],
                   check=True, capture_output=True, text=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600,
                              cwd=tmp_path / "zoo-lenet", check=False)

    listed = run("-m", "zoo.cli", "list", "lenet*", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "lenet5" in listed.stdout
    plugins = run("-m", "zoo.cli", "plugins")
    assert "lenet" in plugins.stdout and "zoo-lenet" in plugins.stdout
    tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b4 passed\b", tests.stdout), tests.stdout

"""The README's promises that a test can hold it to."""

from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def console_commands() -> list[str]:
    """The first three fenced console blocks: install-and-run, the tests, the torch-free tests."""
    return re.findall(r"```console\n(.+?)\n```", README, flags=re.DOTALL)[:3]


def test_ci_runs_the_readme_test_commands_verbatim():
    install, test, torch_free = console_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == test
    assert f"( {torch_free} )" in ci
    assert "pytest" in test and "zoo " in install
    assert "torch" not in torch_free.split("&&")[2] and "export" not in torch_free


def test_constraints_pin_the_torch_pair_ci_installs():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_27_10_the_readme_and_the_docs_spell_predict_options_as_option():
    docs = {f"docs/{page.name}": page.read_text(encoding="utf-8") for page in (ROOT / "docs").glob("*.md")}
    pages = {"README.md": README, **docs}
    old = {page: re.findall(r"zoo predict[^\n`]* -o \S+", text) for page, text in pages.items()}
    assert not any(old.values()), old  # -o is an output path in export and bundle export
    assert "zoo predict my-model img.jpg --option min_fill=0.8" in README

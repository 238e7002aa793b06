"""Shared fixtures: isolated caches and registries, and real plugin distributions built on the fly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import zoo
from zoo.plugins import PluginManager
from zoo.registry import Registry, reset_default_registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets its own cache directory and a registry rebuilt from its environment."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    for var in ("ZOO_LOAD_PLUGINS", "ZOO_DISABLE_PLUGIN_AUTOLOAD", "ZOO_OFFLINE", "HF_ENDPOINT", "HF_HUB_OFFLINE",
                "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    hf_cache = tmp_path_factory.mktemp("hf") / "hub"  # huggingface_hub's cache, its own for each test
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    if "huggingface_hub.constants" in sys.modules:  # it reads its settings when imported
        monkeypatch.setattr(sys.modules["huggingface_hub.constants"], "HF_HUB_CACHE", str(hf_cache))
    reset_default_registry()
    yield
    reset_default_registry()


def make_spec(name: str = "tiny", **fields) -> zoo.ModelSpec:
    """A valid spec with a do-nothing build; ``fields`` override any field."""
    values = dict(name=name, task="image-classification", preprocess=zoo.Preprocess(resize=(8, 8)),
                  build=lambda spec, weights: None, labels=("cat", "dog"))
    values.update(fields)
    return zoo.ModelSpec(**values)


def registry_with(**plugins: object) -> Registry:
    """A registry filled from plugin objects, as the entry-point loader would."""
    manager = PluginManager()
    for name, plugin in plugins.items():
        manager.add_plugin(plugin, name)
    return Registry.from_plugins(manager)


def run_zoo(*args: str, env: dict[str, str] | None = None, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``zoo ARGS`` (or Python ``code``, with ARGS as its ``sys.argv[1:]``) in a fresh interpreter."""
    full_env = {**os.environ, **(env or {})}
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "zoo.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=120, check=False)


def run_zoo_at_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, bytes]:
    """Run ``zoo ARGS`` with a terminal (100 columns wide) on every stream; returns its exit status and all it
    wrote to the terminal. It is killed after ``timeout`` seconds, which fails the test."""
    import pty
    import select
    import signal
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing of pytest may run on in it, whatever happens
        try:
            import fcntl
            import struct
            import termios

            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
            os.execve(sys.executable, [sys.executable, "-m", "zoo.cli", *args], {**os.environ, **(env or {})})
        finally:
            os._exit(127)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child has closed the terminal
                break
            if not chunk:
                break
            output += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"zoo {' '.join(args)} ran over {timeout} s; its output: {output[-2000:]!r}")
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), output


PluginFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, str]], Path]:
    """Build real plugin distributions from source and ``pip install`` them into a throwaway folder.

    Takes ``{distribution name: module source}``; returns the folder to put on PYTHONPATH.
    Nothing is installed into the test environment itself.
    """

    def install(sources: dict[str, str]) -> Path:
        base = tmp_path_factory.mktemp("plugins")
        target = base / "site"
        projects = []
        for dist, source in sources.items():
            module = dist.replace("-", "_")
            project = base / dist
            (project / module).mkdir(parents=True)
            (project / module / "__init__.py").write_text(textwrap.dedent(source), encoding="utf-8")
            (project / "pyproject.toml").write_text(textwrap.dedent(f"""
                [build-system]
                requires = ["setuptools>=68"]
                build-backend = "setuptools.build_meta"

                [project]
                name = "{dist}"
                version = "1.2.3"
                dependencies = ["onnx-zoo"]

                [project.entry-points.zoo]
                {module.removeprefix("zoo_")} = "{module}"
            """), encoding="utf-8")
            projects.append(str(project))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--target", str(target), *projects],
            check=True, capture_output=True, text=True, timeout=300,
        )
        return target

    return install

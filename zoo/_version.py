"""Versions: onnx-zoo's own (in a module of its own: the package's modules read it without importing its face), and
those of the installed libraries, read from their distributions' metadata without importing them."""

from __future__ import annotations

from importlib import metadata

__version__ = "0.1.0"


def installed_version(*distributions: str) -> str | None:
    """The version of the first of ``distributions`` that is installed (``onnxruntime``, ``onnxruntime-gpu``, ...),
    or None."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Each distribution's installed version, or None."""
    return {name: installed_version(name) for name in names}

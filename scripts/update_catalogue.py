"""Rewrite registry.toml (at the top of the repository; zoo/registry.toml links to it) from the first-party plugins in plugins/ (installed in this environment).

    python scripts/update_catalogue.py
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoo.catalogue import CatalogueEntry, dump_catalogue
from zoo.plugins import PluginManager, Selection
from zoo.registry import Registry, natural_key


def first_party_plugins() -> dict[str, str]:
    """Entry-point name -> distribution name of every plugin under plugins/."""
    found = {}
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        for name in project.get("entry-points", {}).get("zoo", {}):
            found[name] = project["name"]
    return found


def first_party_catalogue() -> list[CatalogueEntry]:
    """What the catalogue must hold: every model the first-party plugins register."""
    plugins = first_party_plugins()
    manager = PluginManager()
    manager.load_entry_points(Selection(only=frozenset(plugins)))
    failed = [str(info.error) for info in manager.failures()]
    if failed:
        raise SystemExit("first-party plugins failed to load:\n" + "\n".join(failed))
    registry = Registry.from_plugins(manager)
    owned: dict[str, list] = {}  # the models of each owner (timm/...), one entry for them all
    for spec in registry:
        if "/" in spec.name:
            owned.setdefault(spec.name.partition("/")[0], []).append(spec)
    entries = [
        CatalogueEntry(name=s.name, distribution=plugins[s.plugin], task=s.task, license=s.license, summary=s.summary)
        for s in registry if "/" not in s.name
    ]
    for owner, specs in owned.items():
        distributions = {plugins[s.plugin] for s in specs}
        if len(distributions) != 1:
            raise SystemExit(f"the names of owner {owner!r} come from several plugins: {sorted(distributions)}")
        tasks = sorted({s.task for s in specs})
        entries.append(CatalogueEntry(
            name=f"{owner}/*", distribution=distributions.pop(), task=", ".join(tasks),
            license="each model's own (zoo info NAME)",
            summary=f"{len(specs)} models named {owner}/... ({', '.join(tasks)})"))
    return sorted(entries, key=lambda e: natural_key(e.name))


def main() -> None:
    entries = first_party_catalogue()
    path = ROOT / "registry.toml"
    path.write_text(dump_catalogue(entries), encoding="utf-8")
    print(f"wrote {len(entries)} models to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

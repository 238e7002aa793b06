"""Finding and loading plugins through the ``zoo`` entry-point group, each failure isolated.

Which plugins load is decided by two environment variables, as in pytest and llm:

* ``ZOO_LOAD_PLUGINS=a,b``: load only these plugins (entry-point or distribution names;
  set but empty loads none);
* ``ZOO_DISABLE_PLUGIN_AUTOLOAD=1``: load no plugin found by entry points, except those
  that ``ZOO_LOAD_PLUGINS`` names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from zoo import builtin_tasks, hookspecs
from zoo.errors import PluginError
from zoo.settings import env_flag


@dataclass
class PluginInfo:
    """One plugin as ``zoo plugins`` shows it."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    models: int = 0
    error: PluginError | None = None
    #: Model names that another plugin registers too, one line each (see :mod:`zoo.registry`).
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "models": self.models,
            "error": str(self.error) if self.error else None,
            "conflicts": list(self.conflicts),
        }


@dataclass(frozen=True)
class Selection:
    """Which entry-point plugins to load."""

    autoload: bool = True
    only: frozenset[str] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Selection:
        env = os.environ if environ is None else environ
        only = env.get("ZOO_LOAD_PLUGINS")
        names = None if only is None else frozenset(n.strip() for n in only.split(",") if n.strip())
        return cls(autoload=not env_flag("ZOO_DISABLE_PLUGIN_AUTOLOAD", env), only=names)

    def wants(self, ep: EntryPoint) -> bool:
        if self.only is not None:
            dist = ep.dist.name if ep.dist is not None else None
            return ep.name in self.only or dist in self.only
        return self.autoload


class PluginManager(pluggy.PluginManager):
    """A pluggy manager for project ``zoo`` that records, rather than raises, plugin failures."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.register(builtin_tasks, name="zoo.builtin_tasks")  # the built-in tasks, through the plugins' door
        #: Every plugin that was tried, by name, with its error if it failed.
        self.infos: dict[str, PluginInfo] = {}

    def add_plugin(self, plugin: object, name: str, *, module: str = "", distribution: str | None = None,
                   version: str | None = None) -> PluginInfo:
        """Register a plugin object (a module or any object with hook implementations).

        A failure is recorded on the returned :class:`PluginInfo` instead of raised.
        """
        info = self._record(PluginInfo(name=name, module=module or getattr(plugin, "__name__", type(plugin).__name__),
                                       distribution=distribution, version=version))
        try:
            # pluggy validates what is marked with zoo.hookimpl, and only that: arguments a hook does
            # not offer raise at once; a hookimpl whose name is no zoo hook (a typo) has no spec, which
            # pluggy's check_pending() would report later for every plugin at once.
            self.register(plugin, name=name)
            unknown = sorted(c.name for c in self.get_hookcallers(plugin) or () if c.spec is None)
            if unknown:
                self.unregister(name=name)
                hooks = ", ".join(sorted(n for n, c in vars(self.hook).items() if getattr(c, "spec", None)))
                raise pluggy.PluginValidationError(plugin, f"{', '.join(unknown)} is not a zoo hook (a typo?); "
                                                           f"the hooks are {hooks}")
            info.hooks = tuple(sorted(c.name for c in self.get_hookcallers(plugin) or ()))
        except Exception as exc:  # noqa: BLE001 - the point is to isolate any failure
            info.error = PluginError(name, "load", exc)
        return info

    def load_entry_points(self, selection: Selection | None = None) -> None:
        """Import and register every selected plugin of the ``zoo`` entry-point group."""
        selection = Selection.from_env() if selection is None else selection
        found = sorted(entry_points(group=hookspecs.PROJECT), key=lambda ep: (ep.name, ep.value))
        for ep in found:
            if not selection.wants(ep):
                continue
            dist = ep.dist
            distribution, version = (dist.name, dist.version) if dist is not None else (None, None)
            try:
                plugin = ep.load()
            except BaseException as exc:  # a plugin that calls sys.exit() is also a failure
                if isinstance(exc, KeyboardInterrupt):
                    raise
                info = PluginInfo(name=ep.name, module=ep.value, distribution=distribution, version=version)
                self._record(info).error = PluginError(ep.name, "import", exc)
                continue
            self.add_plugin(plugin, ep.name, module=ep.value, distribution=distribution, version=version)
        if selection.only:
            present = {ep.name for ep in found} | {ep.dist.name for ep in found if ep.dist}
            for missing in sorted(selection.only - present):
                self._record(PluginInfo(name=missing, module="")).error = PluginError(missing, "load", LookupError(
                    "ZOO_LOAD_PLUGINS names it, but no installed distribution provides it "
                    "(check the spelling, or pip install it)"))

    def _record(self, info: PluginInfo) -> PluginInfo:
        """Keep ``info``; a second plugin of the same name (from another distribution) gets its own key."""
        key = info.name if info.name not in self.infos else f"{info.name} ({info.distribution or info.module})"
        self.infos[key] = info
        return info

    def failures(self) -> list[PluginInfo]:
        """The plugins that failed to import or to register."""
        return [info for info in self.infos.values() if info.error is not None]

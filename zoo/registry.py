"""The registry: model names to specs, filled by the plugins' ``zoo_register_models`` hooks.

Lookups are case-insensitive and follow aliases. An unknown name raises
:class:`~zoo.errors.UnknownModelError` with close matches, or
:class:`~zoo.errors.PluginNotInstalledError` when the catalogue knows which distribution
provides it.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib.metadata
import re
import threading
from collections.abc import Callable, Iterable, Iterator

from zoo.catalogue import CatalogueEntry, load_catalogue
from zoo.errors import DuplicateModelError, PluginError, PluginNotInstalledError, SpecError, UnknownModelError
from zoo.plugins import PluginManager, Selection
from zoo.spec import ModelSpec

_DIGITS = re.compile(r"(\d+)")


def name_matcher(patterns: str | Iterable[str] | None) -> Callable[[str], bool]:
    """A test for names against glob ``patterns``, case-insensitive; no pattern matches all."""
    if isinstance(patterns, str):
        patterns = [patterns]
    globs = [re.compile(fnmatch.translate(p.strip().lower())) for p in patterns or ()]
    if not globs:
        return lambda name: True
    return lambda name: any(g.match(name) for g in globs)


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that puts ``resnet18`` before ``resnet101``."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name.lower()))


def _is_installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class Registry:
    """Model specs by name, with aliases; built by :meth:`from_plugins` or by hand in tests."""

    def __init__(self, plugin_manager: PluginManager | None = None) -> None:
        self.plugin_manager = plugin_manager if plugin_manager is not None else PluginManager()
        self._specs: dict[str, ModelSpec] = {}
        self._index: dict[str, str] = {}  # lowercased name or alias -> canonical name

    # -- filling -------------------------------------------------------------------------

    def register(self, spec: ModelSpec, plugin: str) -> ModelSpec:
        """Add one spec on behalf of ``plugin``; returns it with its ``plugin`` field set."""
        return self.register_all([spec], plugin)[0]

    def register_all(self, specs: Iterable[object], plugin: str) -> list[ModelSpec]:
        """Add several specs at once: all of them, or none if one is invalid or its name is taken."""
        pending: set[str] = set()
        staged = [self._check(spec, plugin, pending) for spec in specs]
        self._commit(staged)
        return staged

    @classmethod
    def from_plugins(cls, plugin_manager: PluginManager) -> Registry:
        """Run every plugin's ``zoo_register_models`` hook through pluggy, isolating each plugin's failure."""
        registry = cls(plugin_manager)
        hook = plugin_manager.hook.zoo_register_models
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name
            registrar = _Registrar(registry, plugin)
            info = plugin_manager.infos.get(plugin)
            try:
                # One plugin at a time, each with its own register(), through pluggy's executor (so a
                # wrapper=True implementation runs as pluggy runs it); subset_hook_caller would do the
                # same but needs hashable plugin objects.
                plugin_manager._hookexec(hook.name, [impl], {"register": registrar}, False)
            except Exception as exc:  # noqa: BLE001 - a failing plugin must not take the others down
                if info is not None:
                    info.error = PluginError(plugin, "register its models", exc)
                continue
            finally:
                registrar.closed = True
            registry._commit(registrar.staged)
            if info is not None:
                info.models += len(registrar.staged)
        return registry

    def _check(self, spec: object, plugin: str, pending: set[str]) -> ModelSpec:
        """Validate one spec against the registry and the names ``pending`` in the same batch."""
        if not isinstance(spec, ModelSpec):
            raise SpecError("spec", f"register() takes a zoo.ModelSpec, got {type(spec).__name__}", plugin=plugin)
        for key in (spec.name, *spec.aliases):
            owner = self._index.get(key)
            if owner is not None:
                raise DuplicateModelError(key, self._specs[owner].plugin, plugin)
            if key in pending:
                raise DuplicateModelError(key, plugin, plugin)
            pending.add(key)
        if spec.plugin != plugin:
            spec = copy.copy(spec)  # already validated: no need for dataclasses.replace to check again
            object.__setattr__(spec, "plugin", plugin)
        return spec

    def _commit(self, specs: list[ModelSpec]) -> None:
        for spec in specs:
            self._specs[spec.name] = spec
            for key in (spec.name, *spec.aliases):
                self._index[key] = spec.name

    # -- lookup --------------------------------------------------------------------------

    def get(self, name: str) -> ModelSpec:
        """The spec registered under ``name`` or an alias of it, ignoring case."""
        if not isinstance(name, str):
            raise UnknownModelError(repr(name))
        key = name.strip().lower()
        canonical = self._index.get(key)
        if canonical is not None:
            return self._specs[canonical]
        entry = load_catalogue().get(key)
        if entry is not None:
            raise PluginNotInstalledError(name, entry.distribution, installed=_is_installed(entry.distribution))
        raise UnknownModelError(name, difflib.get_close_matches(key, self._index, n=3, cutoff=0.6))

    def names(self, patterns: str | Iterable[str] | None = None, *, task: str | None = None,
              plugin: str | None = None) -> list[str]:
        """Canonical names matching any of the glob ``patterns`` (case-insensitive), naturally sorted.

        ``task`` is matched case-insensitively; ``plugin`` is a plugin's name or its distribution's.
        """
        match = name_matcher(patterns)
        task = task.strip().lower() if task is not None else None
        plugins = self._plugin_names(plugin) if plugin is not None else None
        found = [
            spec.name
            for spec in self._specs.values()
            if match(spec.name) and (task is None or spec.task == task) and (plugins is None or spec.plugin in plugins)
        ]
        return sorted(found, key=natural_key)

    def _plugin_names(self, plugin: str) -> set[str]:
        """The names of the plugins that ``plugin`` designates: itself, or those of a distribution of that name."""
        wanted = plugin.strip().lower()
        names = {wanted}
        for info in self.plugin_manager.infos.values():
            if info.distribution and wanted in (info.distribution.lower(), info.distribution.lower().removeprefix("zoo-")):
                names.add(info.name)
        return names

    def not_installed(self, patterns: str | Iterable[str] | None = None, *, task: str | None = None,
                      plugin: str | None = None) -> list[CatalogueEntry]:
        """Catalogued models that no loaded plugin provides, filtered like :meth:`names`.

        ``plugin`` matches the distribution, with or without its ``zoo-`` prefix.
        """
        match = name_matcher(patterns)
        task = task.strip().lower() if task is not None else None
        found = [
            entry
            for entry in load_catalogue().values()
            if entry.name not in self._index and match(entry.name)
            and (task is None or entry.task == task)
            and (plugin is None or plugin in (entry.distribution, entry.distribution.removeprefix("zoo-")))
        ]
        return sorted(found, key=lambda entry: natural_key(entry.name))

    def variants(self, name: str) -> list[str]:
        """Every registered weights variant of the architecture of ``name``, default first."""
        arch = self.get(name).arch
        return self.names([arch, f"{arch}.*"])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in self._index

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


class _Registrar:
    """The ``register`` callback one plugin's hook receives: one spec per call, only while the hook runs."""

    def __init__(self, registry: Registry, plugin: str) -> None:
        self._registry = registry
        self._plugin = plugin
        self._pending: set[str] = set()
        self.staged: list[ModelSpec] = []
        self.closed = False

    def __call__(self, spec: ModelSpec, /) -> None:
        if self.closed:
            raise PluginError(self._plugin, "register a model", RuntimeError(
                "register() was called after zoo_register_models returned; call it inside the hook"))
        # Checked here, so that an error points at the plugin's own call.
        self.staged.append(self._registry._check(spec, self._plugin, self._pending))

    def __repr__(self) -> str:
        return f"<zoo register() of plugin {self._plugin!r}>"


_default: Registry | None = None
_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry, built on first use from the installed plugins."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                manager = PluginManager()
                manager.load_entry_points(Selection.from_env())
                _default = Registry.from_plugins(manager)
    return _default


def reset_default_registry() -> None:
    """Forget the process-wide registry, so that the next use reloads the plugins."""
    global _default
    with _lock:
        _default = None

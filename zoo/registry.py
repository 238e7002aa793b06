"""The registry: model names to specs and task names to tasks, filled by the plugins' hooks.

Lookups are case-insensitive and follow aliases. An unknown name raises
:class:`~zoo.errors.UnknownModelError` with close matches, or
:class:`~zoo.errors.PluginNotInstalledError` when the catalogue knows which distribution
provides it.

Every model is also reachable by its qualified name ``PLUGIN:NAME`` (``torchvision:resnet18``).
When two plugins register the same name (or alias), only that name is affected: a
first-party plugin (one whose distribution the catalogue lists) keeps it; between two
others the bare name is ambiguous (:class:`~zoo.errors.AmbiguousModelError` lists the
qualified names). Every other model of both plugins stays registered, and each plugin's
:class:`~zoo.plugins.PluginInfo` lists its conflicts.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib.metadata
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from zoo.catalogue import EVERY, CatalogueEntry, catalogued, load_catalogue
from zoo.errors import (
    AmbiguousModelError,
    DuplicateModelError,
    PluginError,
    PluginNotInstalledError,
    SpecError,
    UnknownModelError,
    UsageError,
)
from zoo.plugins import PluginManager, Selection
from zoo.spec import ModelSpec
from zoo.specfile import labels_loaded
from zoo.tasks import Task, accepted_options

_DIGITS = re.compile(r"(\d+)")
#: Between a plugin's name and a model's in a qualified name: ``torchvision:resnet18``.
QUALIFIER = ":"


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
        self._specs: dict[str, ModelSpec] = {}  # qualified name (plugin:name) -> spec
        self._claims: dict[str, list[str]] = {}  # name or alias -> the qualified names registering it, in order
        #: The registered tasks, by name.
        self.tasks: dict[str, Task] = {}
        self._task_plugins: dict[str, str] = {}

    # -- filling -------------------------------------------------------------------------

    def register(self, spec: ModelSpec, plugin: str) -> ModelSpec:
        """Add one spec on behalf of ``plugin``; returns it with its ``plugin`` field set."""
        return self.register_all([spec], plugin)[0]

    def register_all(self, specs: Iterable[object], plugin: str) -> list[ModelSpec]:
        """Add several specs at once: all of them, or none if one is invalid or its name is taken.

        (Plugins loaded by :meth:`from_plugins` share a taken name instead: see the module's docstring.)
        """
        pending: set[str] = set()
        staged = [self._check(spec, plugin, pending, shared=False) for spec in specs]
        self._commit(staged)
        return staged

    @classmethod
    def from_plugins(cls, plugin_manager: PluginManager) -> Registry:
        """Run every plugin's ``zoo_register_tasks``, then ``zoo_register_models`` hook, through pluggy.

        Each plugin runs alone: one that fails is reported on its :class:`PluginInfo` and
        whatever it registered is withdrawn; the others are unaffected. A model name that
        two plugins register is recorded on both plugins' :class:`PluginInfo` ``conflicts``.
        """
        registry = cls(plugin_manager)
        failed: set[str] = set()
        for hook_name, add in (("zoo_register_tasks", registry._add_tasks), ("zoo_register_models", registry._commit)):
            hook = getattr(plugin_manager.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin = impl.plugin_name
                if plugin in failed:
                    continue
                registrar = _Registrar(registry, plugin, hook_name)
                info = plugin_manager.infos.get(plugin)
                try:
                    # One plugin at a time, each with its own register(), through pluggy's executor (so a
                    # wrapper=True implementation runs as pluggy runs it); subset_hook_caller would do the
                    # same but needs hashable plugin objects.
                    plugin_manager._hookexec(hook.name, [impl], {"register": registrar}, False)
                except Exception as exc:  # noqa: BLE001 - a failing plugin must not take the others down
                    failed.add(plugin)
                    registry._withdraw_tasks(plugin)
                    if info is not None:
                        what = "register its tasks" if hook_name == "zoo_register_tasks" else "register its models"
                        info.error = PluginError(plugin, what, exc)
                    continue
                finally:
                    registrar.closed = True
                add(registrar.staged)
                if info is not None and hook_name == "zoo_register_models":
                    info.models += len(registrar.staged)
        for key, claims in registry.conflicts().items():
            for plugin in dict.fromkeys(registry._specs[q].plugin for q in claims):
                if plugin in plugin_manager.infos:
                    plugin_manager.infos[plugin].conflicts.append(registry.describe_conflict(key, plugin))
        return registry

    def _add_tasks(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.tasks[task.name] = task

    def _withdraw_tasks(self, plugin: str) -> None:
        for name in [name for name, owner in self._task_plugins.items() if owner == plugin]:
            self.tasks.pop(name, None)
            del self._task_plugins[name]

    def _check_task(self, task: object, plugin: str, pending: set[str]) -> Task:
        if not isinstance(task, Task):
            raise SpecError("task", f"register() takes a zoo.Task here, got {type(task).__name__}", plugin=plugin)
        if task.name in self.tasks or task.name in pending:
            first = self._task_plugins.get(task.name, plugin)
            raise DuplicateModelError(task.name, first, plugin, what="task")
        pending.add(task.name)
        self._task_plugins[task.name] = plugin
        return task

    def task(self, name: str) -> Task | None:
        """The registered task called ``name``, or None (a model of an unknown task returns its raw outputs)."""
        return self.tasks.get(name)

    def _check(self, spec: object, plugin: str, pending: set[str], *, shared: bool = True) -> ModelSpec:
        """Validate one spec against the registry and the names ``pending`` in the same batch.

        A name another plugin has is an error unless ``shared`` (plugins loaded together share it).
        """
        if not isinstance(spec, ModelSpec):
            raise SpecError("spec", f"register() takes a zoo.ModelSpec, got {type(spec).__name__}", plugin=plugin)
        for key in (spec.name, *spec.aliases):
            if key in pending:
                raise DuplicateModelError(key, plugin, plugin)
            if not shared and key in self._claims:
                raise DuplicateModelError(key, self._specs[self._claims[key][0]].plugin, plugin)
            pending.add(key)
        if QUALIFIER in plugin:
            raise SpecError("plugin", f"a plugin's name cannot hold {QUALIFIER!r} (it separates the plugin's name "
                                      f"from a model's in PLUGIN{QUALIFIER}NAME)", plugin=plugin)
        task = self.tasks.get(spec.task)
        if shared and task is None and spec.postprocess is None and not spec.is_pipeline:
            raise SpecError("task", f"names no registered task ({spec.task!r}) and the spec has no postprocess: give "
                                    f"one, or use a task that a plugin registers: {', '.join(sorted(self.tasks))}",
                            model=spec.name, plugin=plugin)
        if task is not None and task.check_decode is not None and spec.postprocess is None and not spec.is_pipeline:
            try:
                task.check_decode(spec.decode)
            except SpecError as error:
                raise SpecError(f"decode.{error.field}", error.problem, model=spec.name, plugin=plugin) from None
        if spec.options:
            accepted_options(spec, task)  # the spec's option defaults are options its postprocessing (or run) takes
        if spec.plugin != plugin:
            spec = copy.copy(spec)  # already validated: no need for dataclasses.replace to check again
            object.__setattr__(spec, "plugin", plugin)
        return spec

    def _commit(self, specs: list[ModelSpec]) -> None:
        for spec in specs:
            qualified = f"{spec.plugin}{QUALIFIER}{spec.name}"
            self._specs[qualified] = spec
            for key in (spec.name, *spec.aliases):
                self._claims.setdefault(key, []).append(qualified)

    # -- names shared by plugins ---------------------------------------------------------

    def _first_party(self, plugin: str) -> bool:
        """Whether ``plugin`` comes from a distribution of this repository (the catalogue lists its models)."""
        info = self.plugin_manager.infos.get(plugin)
        return info is not None and info.distribution in {e.distribution for e in load_catalogue().values()}

    def _loaded(self) -> set[str]:
        """The distributions of the plugins that registered their models."""
        return {info.distribution for info in self.plugin_manager.infos.values() if info.error is None}

    def _owner(self, key: str) -> str | None:
        """The qualified name that the bare ``key`` designates, or None; :class:`AmbiguousModelError` if several."""
        claims = self._claims.get(key)
        if not claims:
            return None
        if len(claims) > 1:
            first_party = [q for q in claims if self._first_party(self._specs[q].plugin)]
            if len(first_party) != 1:
                raise AmbiguousModelError(key, claims)
            return first_party[0]
        return claims[0]

    def conflicts(self) -> dict[str, list[str]]:
        """Each name or alias that several plugins register, with their qualified names."""
        return {key: list(claims) for key, claims in self._claims.items()
                if len({self._specs[q].plugin for q in claims}) > 1}

    def describe_conflict(self, key: str, plugin: str) -> str:
        """One line on the conflict over ``key``, as ``plugin`` sees it (``zoo plugins`` shows it)."""
        claims = self._claims[key]
        mine = next(q for q in claims if self._specs[q].plugin == plugin)
        others = [q for q in claims if self._specs[q].plugin != plugin]
        try:
            owner = self._owner(key)
        except AmbiguousModelError:
            return f"{key!r} is also registered by {', '.join(others)}: ambiguous, use {mine} or {others[0]}"
        if owner == mine:
            return f"{key!r} is also registered by {', '.join(others)}; this plugin's keeps the name"
        return f"{key!r} belongs to {owner} (first-party); this plugin's is {mine}"

    def reference(self, spec: ModelSpec) -> str:
        """The name that finds ``spec`` again: its own, or ``PLUGIN:NAME`` where that name is another's."""
        qualified = f"{spec.plugin}{QUALIFIER}{spec.name}"
        try:
            return spec.name if self._owner(spec.name) == qualified else qualified
        except AmbiguousModelError:
            return qualified

    # -- lookup --------------------------------------------------------------------------

    def get(self, name: str) -> ModelSpec:
        """The spec registered under ``name``, an alias of it or ``PLUGIN:NAME``, ignoring case."""
        if not isinstance(name, str):
            raise UnknownModelError(repr(name))
        key = name.strip().lower()
        if QUALIFIER in key:
            found = self._qualified(key)
            if found is None:
                raise UnknownModelError(name, difflib.get_close_matches(key, self._specs, n=3, cutoff=0.6))
            return labels_loaded(found)
        owner = self._owner(key)
        if owner is not None:
            return labels_loaded(self._specs[owner])
        entry = catalogued(key)
        if entry is not None and not (entry.name.endswith(EVERY) and entry.distribution in self._loaded()):
            raise PluginNotInstalledError(name, entry.distribution, installed=_is_installed(entry.distribution))
        raise UnknownModelError(name, difflib.get_close_matches(key, self._claims, n=3, cutoff=0.6))

    def _qualified(self, key: str) -> ModelSpec | None:
        """The spec that ``PLUGIN:NAME`` (lowercased; NAME may be an alias) designates, or None."""
        plugin, _, bare = key.partition(QUALIFIER)
        for qualified in self._claims.get(bare, ()):
            if self._specs[qualified].plugin.lower() == plugin:
                return self._specs[qualified]
        return None

    def names(self, patterns: str | Iterable[str] | None = None, *, task: str | None = None,
              plugin: str | None = None) -> list[str]:
        """Names matching any of the glob ``patterns`` (case-insensitive), naturally sorted.

        A model whose name another plugin has is listed as ``PLUGIN:NAME``. ``task`` is
        matched case-insensitively; ``plugin`` is a plugin's name or its distribution's.
        """
        return [name for name, _ in self.listed(patterns, task=task, plugin=plugin)]

    def listed(self, patterns: str | Iterable[str] | None = None, *, task: str | None = None,
               plugin: str | None = None) -> list[tuple[str, ModelSpec]]:
        """:meth:`names` with each one's spec as registered: its labels not read yet (``labels_from``), which a
        listing does not need and :meth:`get` reads."""
        match = name_matcher(patterns)
        found = [(self.reference(spec), spec) for spec in self._specs.values()
                 if (match(spec.name) or match(f"{spec.plugin}{QUALIFIER}{spec.name}")) and self._kept(spec, task, plugin)]
        # By model name, the one that has the bare name first: resnet18, broken:resnet18, resnet34.
        return sorted(found, key=lambda item: (natural_key(item[0].rpartition(QUALIFIER)[2]), QUALIFIER in item[0],
                                               item[0]))

    def select(self, patterns: Iterable[str] | None = None, *, task: str | None = None,
               plugin: str | None = None) -> list[str]:
        """The names that ``patterns`` (names, ``PLUGIN:NAME`` or globs; none: every model) select among the models
        of ``task`` and ``plugin``, each once, in the patterns' order.

        An unknown name raises :class:`UnknownModelError` (with suggestions) and a pattern that selects nothing a
        :class:`UsageError`, before the caller fetches anything.
        """
        names: list[str] = []
        for pattern in patterns or [None]:
            if pattern is not None and not any(char in pattern for char in "*?["):
                spec = self.get(pattern)
                found = [self.reference(spec)] if self._kept(spec, task, plugin) else []
            else:
                found = self.names(pattern, task=task, plugin=plugin)
            if not found:
                raise UsageError(f"no model matches {pattern or 'the filters'}{f' of task {task}' if task else ''}"
                                 f"{f' from plugin {plugin}' if plugin else ''}; 'zoo list' shows them")
            names += [name for name in found if name not in names]
        return names

    def _kept(self, spec: ModelSpec, task: str | None, plugin: str | None) -> bool:
        """Whether ``spec`` is of ``task`` (any case) and from ``plugin`` (its name or its distribution's), when given."""
        return ((task is None or spec.task == task.strip().lower())
                and (plugin is None or spec.plugin in self._plugin_names(plugin)))

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
        loaded = self._loaded()
        found = [
            entry
            for entry in load_catalogue().values()
            if entry.name not in self._claims and match(entry.name)
            and not (entry.name.endswith(EVERY) and entry.distribution in loaded)  # an owner's other names: none
            and (task is None or task in entry.task.split(", "))
            and (plugin is None or plugin in (entry.distribution, entry.distribution.removeprefix("zoo-")))
        ]
        return sorted(found, key=lambda entry: natural_key(entry.name))

    def parts(self, spec: ModelSpec) -> list[ModelSpec]:
        """The models ``spec`` is made of: those a pipeline requires (aliases resolved), else ``spec`` itself."""
        if not spec.is_pipeline:
            return [spec]  # a name the pipeline's own plugin registers is its own, whoever has the bare name
        return [labels_loaded(self._qualified(f"{spec.plugin}{QUALIFIER}{name}".lower()) or self.get(name))
                for name in spec.requires]

    def variants(self, name: str) -> list[str]:
        """Every weights variant of the architecture of ``name`` that its plugin registers for its task, default
        first."""
        spec = self.get(name)
        return self.names([spec.arch, f"{spec.arch}.*"], plugin=spec.plugin, task=spec.task)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.strip().lower()
        return self._qualified(key) is not None if QUALIFIER in key else key in self._claims

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


class _Registrar:
    """The ``register`` callback one plugin's hook receives: one item per call, only while the hook runs."""

    def __init__(self, registry: Registry, plugin: str, hook: str = "zoo_register_models") -> None:
        self._registry = registry
        self._plugin = plugin
        self._hook = hook
        self._pending: set[str] = set()
        self.staged: list[Any] = []
        self.closed = False

    def __call__(self, item: Any, /) -> None:
        if self.closed:
            raise PluginError(self._plugin, "register a task" if self._hook == "zoo_register_tasks" else
                              "register a model", RuntimeError(
                f"register() was called after {self._hook} returned; call it inside the hook"))
        # Checked here, so that an error points at the plugin's own call.
        check = self._registry._check_task if self._hook == "zoo_register_tasks" else self._registry._check
        self.staged.append(check(item, self._plugin, self._pending))

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


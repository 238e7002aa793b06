"""``zoo cache``: show, verify and clean the cache."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zoo import cache
from zoo.cli.arguments import (
    Commands,
)
from zoo.cli.render import (
    built_from,
    human_size,
    print_json,
    print_table,
)
from zoo.errors import UsageError
from zoo.registry import default_registry


def cmd_cache_dir(args: argparse.Namespace) -> int:
    print(cache.cache_root())
    return 0


def cmd_cache_list(args: argparse.Namespace) -> int:
    entries = cache.entries()
    files = cache.downloads()
    if args.json:
        print_json({"dir": str(cache.cache_root()), "models": [e.to_dict() for e in entries],
                     "downloads": [{"path": str(p), "size": p.stat().st_size} for p in files]})
        return 0
    total = sum(e.size for e in entries) + sum(p.stat().st_size for p in files)
    if entries:
        rows = [[f"{e.name}/{e.key}", human_size(e.size), d["created"] or "-",
                 "ok" if e.ok else "incomplete or damaged", built_from(d) if e.ok else "-"]
                for e, d in ((e, e.to_dict()) for e in entries)]
        print_table(["ENTRY", "SIZE", "CREATED", "STATE", "BUILT FROM"], rows)
    if files:
        print()
        print_table(["DOWNLOAD", "SIZE"], [[p.name, human_size(p.stat().st_size)] for p in files])
    print(f"{len(entries)} model(s), {len(files)} download(s), {human_size(total)} in {cache.cache_root()}; "
          f"'zoo cache rm NAME/KEY' removes one entry", file=sys.stderr)
    return 0


def selected_entries(names: Sequence[str], *, full: bool = False) -> list[cache.Entry]:
    """The entries that ``NAME`` (every entry of a model, or of each model of a pipeline; ``PLUGIN:NAME`` that
    plugin's model's) or ``NAME/KEY`` (one entry) arguments designate.

    An argument that designates nothing is an error naming it.
    """
    from zoo.errors import CacheError

    selected: list[cache.Entry] = []
    registry = default_registry()
    for argument in names:
        match = cache.ENTRY.fullmatch(argument.strip())
        name, key = (match["name"], match["key"]) if match else (argument.strip(), "")
        head, _, tail = name.rpartition("/")
        if not match and head in registry and name not in registry:
            raise CacheError(f"{tail!r} is not a cache key ({cache.KEY_LENGTH} hex digits), in {argument!r}")
        if name in registry:  # an installed model: its own plugin's builds (or a pipeline's models')
            found = [e for part in registry.parts(registry.get(name))
                     for e in cache.entries(part.name, full=full, plugin=part.plugin)]
        else:  # a model whose plugin is gone (a name that is no model's name, a path, is refused here)
            found = cache.entries(name.strip().lower(), full=full)
        found = [e for e in found if not key or e.key == key.lower()]
        if not found:
            raise CacheError(f"{argument!r} has nothing in the cache; 'zoo cache list' shows what has (NAME or "
                             f"NAME/KEY)")
        selected += found
    return selected


def cmd_cache_verify(args: argparse.Namespace) -> int:
    entries = selected_entries(args.names, full=True) if args.names else cache.entries(full=True)
    results = []
    for entry in entries:  # each model, and the optimised graphs that runtimes saved beside it
        if entry.incomplete:  # an interrupted build: not damage, just not there yet
            results.append({"path": str(entry.folder / cache.MODEL_FILE), "ok": True, "state": "incomplete"})
            continue
        results.append({"path": str(entry.folder / cache.MODEL_FILE), "ok": entry.ok,
                        "state": "ok" if entry.ok else "damaged"})
        results += [{"path": str(path), "ok": ok, "state": "ok" if ok else "damaged"}
                    for path, ok in cache.optimized_checks(entry.folder)]
    if not args.names:
        results += [{"path": str(p), "ok": ok, "state": "ok" if ok else "damaged"} for p in cache.downloads()
                    if not p.name.endswith(".part") for ok in [cache.verify_download(p)]]
    bad = [r for r in results if not r["ok"]]
    if args.json:
        print_json(results)
    else:
        shown = {"ok": "ok        ", "damaged": "DAMAGED   ", "incomplete": "incomplete"}
        for r in results:
            print(f"{shown[r['state']]}  {r['path']}"
                  + ("  (an interrupted build: rebuilt on next use)" if r["state"] == "incomplete" else ""))
        print(f"{len(results)} file(s) checked by sha256, {len(bad)} damaged"
              + ("; 'zoo cache prune' removes them, and the next use rebuilds them" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


def cmd_cache_rm(args: argparse.Namespace) -> int:
    freed = 0
    for entry in selected_entries(args.names):
        freed += cache.remove(entry.folder)
        print(f"removed {entry.name}/{entry.key}")
    print(f"freed {human_size(freed)}", file=sys.stderr)
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from zoo.convert import is_current

    registry = default_registry()
    removed = cache.prune(lambda entry: is_current(entry, registry), downloads_too=args.downloads,
                          dry_run=args.dry_run)
    if args.json:
        print_json([{"path": str(p), "size": n} for p, n in removed])
        return 0
    for path, size in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path} ({human_size(size)})")
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {human_size(sum(n for _, n in removed))}", file=sys.stderr)
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    root = cache.cache_root()
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"'zoo cache clear' deletes every cached model and download in {root}; "
                             f"pass --yes to confirm when not at a terminal")
        if input(f"delete every cached model and download in {root}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    freed = sum(cache.remove(e.folder) for e in cache.entries())
    freed += sum(cache.remove(p) for p in cache.downloads())
    freed += sum(cache.remove(p) for p in cache.file_folders())  # optimised graphs of files used in place
    freed += sum(cache.remove(p, wait=False) for p in cache.staging_folders())  # an import running now is kept
    cache.remove_free_locks()
    print(f"freed {human_size(freed)} in {root}", file=sys.stderr)
    return 0


def add_parsers(commands: Commands) -> None:
    """Add this module's commands to the ``zoo`` parser."""
    command = commands.command
    p = command("cache", None, "show, verify and clean the cache",
                "Manage the cache of converted models and downloads. Its location is ZOO_CACHE_DIR, else the "
                "user cache directory ('zoo cache dir').")
    action = commands.actions(p)

    action("dir", cmd_cache_dir, "print the cache directory")
    a = action("list", cmd_cache_list, "list cached models (NAME/KEY) and downloads with what each was built from")
    a.add_argument("--json", action="store_true", help="print JSON instead of tables")
    a = action("verify", cmd_cache_verify, "check every cached file against its sha256 (exit status 1 if one is damaged)")
    a.add_argument("names", nargs="*", metavar="NAME[/KEY]", help="only these models or entries (default: everything)")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    a = action("rm", cmd_cache_rm, "remove the cached files of models, or single entries")
    a.add_argument("names", nargs="+", metavar="NAME[/KEY]",
                   help="model name or alias (all its entries), or NAME/KEY as 'zoo cache list' prints it (one entry)")
    a = action("prune", cmd_cache_prune, "remove damaged, outdated or superseded entries, leftovers of interrupted "
                                         "work and unused lock files")
    a.add_argument("--downloads", action="store_true", help="also remove downloaded weights (fetched again if needed)")
    a.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    a = action("clear", cmd_cache_clear, "remove everything in the cache")
    a.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

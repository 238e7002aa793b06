"""``zoo pull`` and ``zoo bundle``: models fetched ahead of time, and carried to machines without internet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo import cache
from zoo.cli.arguments import (
    Commands,
    build_options,
    check_one_model,
    selected_names,
    selection_arguments,
    weights_arguments,
)
from zoo.cli.cache import selected_entries
from zoo.cli.render import (
    human_size,
    print_json,
    progress,
    write,
)
from zoo.errors import CacheError, UsageError, ZooError
from zoo.registry import default_registry


def cmd_pull(args: argparse.Namespace) -> int:
    registry = default_registry()
    names = selected_names(args, registry, "pull")
    check_one_model(args, names, "pull them one at a time")
    from zoo.model import prepare

    failed: dict[str, str] = {}
    with progress(len(names), args, unit="model") as bar:
        for name in names:
            spec = registry.get(name)
            try:
                for part in registry.parts(spec):
                    _, converted = prepare(part, build_options(args))
                    write(f"{name}: {converted.path}" if part is spec else f"{name}: {part.name} at {converted.path}",
                           bar)
            except ZooError as error:
                failed[name] = str(error)
                write(f"{name}: FAILED: {error}", bar, sys.stderr)
            bar.update()
    print(f"pulled {len(names) - len(failed)} of {len(names)} model(s) into {cache.cache_root()}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bundle_export(args: argparse.Namespace) -> int:
    from zoo import bundle
    from zoo.convert import is_current
    from zoo.model import check_entry, prepare

    registry = default_registry()
    output = Path(args.output)
    if not output.parent.is_dir():
        raise UsageError(f"-o {args.output!r}: folder {str(output.parent)!r} does not exist")
    chosen: dict[Path, cache.Entry] = {}
    entries = [name for name in args.names if cache.ENTRY.fullmatch(name)]  # NAME/KEY: that entry
    for entry in selected_entries(entries):
        if not entry.ok:
            raise CacheError(f"{entry.name}/{entry.key} is incomplete or damaged: 'zoo cache verify' checks it")
        chosen[entry.folder] = entry
    args.names = [name for name in args.names if name not in entries]
    names = selected_names(args, registry, "bundle") if args.names or not entries else []
    check_one_model(args, names, "export a bundle of each (or of their NAME/KEY entries, 'zoo cache list')")
    build = build_options(args)
    for name in names:
        spec = registry.get(name)
        for part in registry.parts(spec):
            current = [e for e in cache.entries(part.name, plugin=part.plugin) if e.ok and is_current(e, registry)
                       and cache.precision_of(e.metadata) == args.precision] if not build.chosen else []
            if not current:  # nothing cached yet (or your weights: their entry alone), pulled now as 'zoo pull' would
                _, converted = prepare(part, build)
                current = [e for e in cache.entries(part.name) if e.folder == converted.path.parent]
            chosen.update((e.folder, e) for e in current)
    with_sources = bundle.with_sources(chosen.values())
    for entry in with_sources:  # an int8 file leaves compared on this machine, as 'zoo pull' and 'zoo export' leave it
        if entry.metadata is not None and cache.compared_by_task(entry.metadata):
            check_entry(f"{entry.name}/{entry.key}", registry)
    with progress(sum(e.size for e in with_sources), args, unit="B") as bar:
        manifest = bundle.export_bundle(with_sources, output, progress=bar.update)
    for entry in manifest["entries"]:
        print(f"{entry['name']}/{entry['key']}  {entry['precision']}  "
              f"{human_size(sum(f['size'] for f in entry['files'].values()))}")
    print(f"wrote {len(manifest['entries'])} entr{'y' if len(manifest['entries']) == 1 else 'ies'} to {output} "
          f"({human_size(output.stat().st_size)})", file=sys.stderr)
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    from zoo import bundle

    path = Path(args.bundle)
    with progress(path.stat().st_size if path.is_file() else 0, args, unit="B") as bar:
        done = bundle.import_bundle(path, progress=bar.update)
    for item in done:
        print(f"{item.name}/{item.key}  {item.precision}  {'added' if item.added else 'already cached'}")
    print(f"imported {sum(i.added for i in done)} of {len(done)} entr{'y' if len(done) == 1 else 'ies'} into "
          f"{cache.cache_root()}", file=sys.stderr)
    return 0


def cmd_bundle_list(args: argparse.Namespace) -> int:
    from zoo import bundle

    manifest = bundle.read_manifest(Path(args.bundle))
    if args.json:
        print_json(manifest)
        return 0
    print(f"made by onnx-zoo {manifest['zoo']} on {manifest.get('created', '?')}")
    for entry in manifest["entries"]:
        print(f"{entry['name']}/{entry['key']}  {entry['precision']}  "
              f"{human_size(sum(f['size'] for f in entry['files'].values()))}")
    return 0


def add_parsers(commands: Commands) -> None:
    """Add this module's commands to the ``zoo`` parser."""
    command = commands.command
    p = command("pull", cmd_pull, "download and convert models ahead of time (a container build step)",
                "Fetch the weights and export each model (or fetch its prebuilt file) into the cache, as the first "
                "'zoo predict' would, so that later runs start at once, offline too (ZOO_OFFLINE=1). NAME is a name or "
                "a glob; --task and --plugin select or filter. A model that fails is reported and the others go on; the "
                "exit status is 1 if any failed.")
    p.add_argument("names", nargs="*", metavar="NAME", help="model names or globs (default with --task/--plugin: all)")
    selection_arguments(p)
    weights_arguments(p)

    p = command("bundle", None, "move cached models to machines without internet, in one verified archive",
                "Write cached models into one archive (a bundle), and add a bundle's models to this machine's cache. "
                "'zoo bundle export resnet50 -o models.zoo' on a machine with internet (models not cached yet are "
                "pulled first), then 'zoo bundle import models.zoo' on the offline one: every file is checked "
                "against the manifest's sha256 before anything enters the cache, and ZOO_OFFLINE=1 zoo predict then "
                "needs no network.")
    bundle_action = commands.actions(p)

    a = bundle_action("export", cmd_bundle_export, "write the cached entries of models (pulled first if not cached) "
                                                   "into a bundle")
    a.add_argument("names", nargs="*", metavar="NAME", help="model names or globs (default with --task/--plugin: all)")
    a.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write, e.g. models.zoo")
    selection_arguments(a)
    weights_arguments(a)
    a = bundle_action("import", cmd_bundle_import, "verify a bundle and add its entries to the cache")
    a.add_argument("bundle", metavar="FILE", help="a bundle written by 'zoo bundle export'")
    a = bundle_action("list", cmd_bundle_list, "list the entries of a bundle and the zoo version that made it")
    a.add_argument("bundle", metavar="FILE", help="a bundle written by 'zoo bundle export'")
    a.add_argument("--json", action="store_true", help="print the manifest as JSON")

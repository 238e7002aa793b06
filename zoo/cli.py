"""The ``zoo`` command: thin subcommands over the public API.

Every :class:`~zoo.errors.ZooError` is turned into one line on stderr and the error's exit
code in :func:`main`, the only place that does so. ``--json`` prints machine-readable
output on stdout; warnings and errors always go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

import zoo
from zoo import cache
from zoo.errors import ZooError
from zoo.registry import Registry, default_registry, natural_key


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Aligned columns; the last column is cut to the terminal's width when stdout is one."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    room = None
    if sys.stdout.isatty():
        room = shutil.get_terminal_size().columns - sum(w + 2 for w in widths[:-1])
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)]
        last = row[-1]
        if room is not None and len(last) > max(room, 10):
            last = last[: max(room, 10) - 1] + "…"
        print("  ".join([*cells, last]).rstrip())


def _warn_failed_plugins(registry: Registry) -> None:
    for info in registry.plugin_manager.failures():
        print(f"zoo: warning: {info.error} ('zoo plugins' shows every plugin)", file=sys.stderr)


# -- commands ----------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    registry = default_registry()
    _warn_failed_plugins(registry)
    specs = [registry.get(n) for n in registry.names(args.pattern or None, task=args.task, plugin=args.plugin)]
    rows: list[dict[str, Any]] = [
        {"name": s.name, "task": s.task, "plugin": s.plugin, "installed": True, "license": s.license,
         "summary": s.summary}
        for s in specs
    ]
    if args.available:
        rows += [
            {"name": e.name, "task": e.task, "plugin": e.distribution, "installed": False, "license": e.license,
             "summary": e.summary}
            for e in registry.not_installed(args.pattern or None, task=args.task, plugin=args.plugin)
        ]
        rows.sort(key=lambda r: natural_key(r["name"]))
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no models match; 'zoo list --available' also shows models whose plugin is not installed",
              file=sys.stderr)
        return 0
    headers = ["NAME", "TASK", "PLUGIN", "SUMMARY"]
    table = []
    for r in rows:
        plugin = r["plugin"] if r["installed"] else f"pip install {r['plugin']}"
        table.append([r["name"], r["task"], plugin, r["summary"]])
    _print_table(headers, table)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    registry = default_registry()
    spec = registry.get(args.name)
    files = cache.cached_files(spec.name)
    data = spec.to_dict()
    data["variants"] = registry.variants(spec.name)
    data["cache"] = {
        "dir": str(cache.model_dir(spec.name)),
        "files": [{"path": str(p), "size": p.stat().st_size} for p in files],
    }
    if args.json:
        _print_json(data)
        return 0
    pre = spec.preprocess
    resize = "none" if pre.resize is None else (
        f"shorter side to {pre.resize}" if isinstance(pre.resize, int) else f"exactly {pre.resize[0]}x{pre.resize[1]}")
    lines = [
        ("name", spec.name),
        ("aliases", ", ".join(spec.aliases) or "-"),
        ("variants", ", ".join(data["variants"])),
        ("task", spec.task),
        ("summary", spec.summary),
        ("plugin", spec.plugin),
        ("license", spec.license),
        ("homepage", spec.homepage or "-"),
        ("input", f"{pre.layout} {pre.dtype} {'x'.join(map(str, pre.input_shape))}, {pre.channels}"),
        ("resize", f"{resize}, {pre.interpolation}{' with antialias' if pre.antialias else ''}"),
        ("crop", "none" if pre.crop is None else f"centre {pre.crop[0]}x{pre.crop[1]}"),
        ("normalise", f"(pixel * {pre.scale:.6g} - mean {list(pre.mean)}) / std {list(pre.std)}"),
        ("labels", str(len(spec.labels))),
        ("outputs", ", ".join(spec.outputs)),
        ("weights", f"{spec.weights.url} (sha256 {spec.weights.sha256})" if spec.weights else "none"),
        ("onnx", f"{spec.onnx.url} (sha256 {spec.onnx.sha256})" if spec.onnx else "exported on first use"),
        ("parity", f"atol {spec.atol:g}, rtol {spec.rtol:g}"),
    ]
    lines += [(f"  {k}", f"{v:,.0f}" if float(v).is_integer() else f"{v:g}") for k, v in spec.metrics.items()]
    if files:
        size = sum(f["size"] for f in data["cache"]["files"])
        lines.append(("cache", f"{len(files)} file(s), {size / 1e6:.1f} MB in {data['cache']['dir']}"))
    else:
        lines.append(("cache", f"not cached ({data['cache']['dir']})"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = zoo.plugins()
    if args.json:
        _print_json([i.to_dict() for i in infos])
        return 0
    if not infos:
        print("no plugins loaded; install one (pip install zoo-torchvision), or check ZOO_LOAD_PLUGINS "
              "and ZOO_DISABLE_PLUGIN_AUTOLOAD", file=sys.stderr)
        return 0
    rows = [
        [i.name, i.distribution or "-", i.version or "-", str(i.models),
         f"FAILED: {i.error}" if i.error else ", ".join(i.hooks)]
        for i in infos
    ]
    _print_table(["PLUGIN", "DISTRIBUTION", "VERSION", "MODELS", "HOOKS"], rows)
    return 0


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="Vision models by name, as verified and cached ONNX files.",
        epilog="Environment: ZOO_CACHE_DIR (cache location), ZOO_LOAD_PLUGINS=a,b (load only these plugins), "
        "ZOO_DISABLE_PLUGIN_AUTOLOAD=1 (load no plugin by entry point). 'zoo COMMAND --help' explains a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {zoo.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description)
        sub.set_defaults(func=func)
        return sub

    p = command("list", cmd_list, "list the models the installed plugins provide",
                "List models, naturally sorted. PATTERN is a glob such as 'resnet*', matched case-insensitively; "
                "several patterns match any of them.")
    p.add_argument("pattern", nargs="*", metavar="PATTERN", help="glob on model names (default: all)")
    p.add_argument("--task", help="only models of this task, e.g. image-classification")
    p.add_argument("--plugin", help="only models registered by this plugin")
    p.add_argument("--available", action="store_true",
                   help="also list catalogued models whose plugin is not installed, with what to install")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    p = command("info", cmd_info, "show a model's spec, preprocessing, weights and cache state",
                "Show everything the zoo knows about one model. NAME is matched case-insensitively and through aliases.")
    p.add_argument("name", metavar="NAME", help="model name or alias")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = command("plugins", cmd_plugins, "list plugins with their distribution, version, hooks and errors",
                "List every plugin that was tried, including those that failed to import or register, with the reason.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ZooError as error:
        print(f"zoo: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `zoo list | head` closed our stdout: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``zoo`` command: thin subcommands over the public API.

Every :class:`~zoo.errors.ZooError` is turned into one line on stderr and the error's exit
code in :func:`main`, the only place that does so. ``--json`` prints machine-readable
output on stdout; warnings and errors always go to stderr.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
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


def _size(n: int) -> str:
    """Bytes for people: 4.7 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


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
    entries = cache.entries(spec.name)
    data = spec.to_dict()
    data["variants"] = registry.variants(spec.name)
    data["cache"] = {"dir": str(cache.model_dir(spec.name)), "entries": [e.to_dict() for e in entries]}
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
    for entry in entries:
        meta = entry.metadata or {}
        state = (f"{meta.get('exporter') or 'prebuilt'}, {_size(entry.size)}, {meta.get('created')}" if entry.ok
                 else "incomplete or damaged: rebuilt on next use")
        lines.append(("cache", f"{entry.folder / cache.MODEL_FILE} ({state})"))
    if not entries:
        lines.append(("cache", f"not cached yet ({data['cache']['dir']})"))
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


def _parity_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    if "parity" not in meta:
        return [("source", f"prebuilt ONNX {meta['key_inputs']['source']['url']} (sha256 verified)")]
    lines = [("export", f"{meta['exporter']} exporter, opset {meta['opset']}, {meta['simplify_note']}")]
    for output, p in meta["parity"].items():
        top1 = f", top-1 agreement {p['top1_agreement']:.0%}" if p["top1_agreement"] is not None else ""
        detail = f"max abs diff {p['max_abs']:.3g}, max rel diff {p['max_rel']:.3g}{top1}"
        lines.append(("parity", f"{output}: {detail} ({meta['samples']} inputs: random and a photo)"))
    return lines


def cmd_export(args: argparse.Namespace) -> int:
    from zoo.model import prepare

    spec, converted = prepare(args.name, weights=args.weights, sha256=args.sha256, opset=args.opset,
                              exporter=args.exporter, simplify=not args.no_simplify)
    meta = converted.metadata
    path = converted.path
    if args.output:
        path = _copy_model(converted.path, args.output, spec.name)
    if args.json:
        _print_json({"name": spec.name, "path": str(path), "cache_path": str(converted.path), **meta})
        return 0
    record = meta["files"][cache.MODEL_FILE]
    lines = [("model", spec.name), ("file", str(path)),
             ("size", f"{_size(record['size'])}, sha256 {record['sha256']}"), *_parity_lines(meta)]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _copy_model(source: Path, output: str, name: str) -> Path:
    """Copy a cached model (and its external data, whose names the model refers to) to ``output``.

    ``output`` is a folder (existing, or written with a trailing slash) or a file name.
    """
    is_folder = Path(output).is_dir() or output.endswith(("/", os.sep))
    target = Path(output) / f"{name}.onnx" if is_folder else Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    for data in cache.check_external_data(source):
        shutil.copyfile(source.parent / data, target.parent / data)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, temp)
    os.replace(temp, target)
    return target


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".pbm", ".pgm", ".ppm")


def _expand_images(patterns: Sequence[str]) -> list[str]:
    """Paths from the command line: folders give their image files, globs their matches, sorted."""
    found: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif not path.exists() and any(c in pattern for c in "*?["):
            found += sorted(glob.glob(pattern, recursive=True)) or [pattern]  # no match: reported as missing
        else:
            found.append(pattern)
    return found


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from zoo.errors import ZooInputError

    model = zoo.get(args.name, weights=args.weights, sha256=args.sha256, runtime=args.runtime,
                    batch_size=args.batch_size)
    paths = _expand_images(args.images)
    if not paths:
        raise ZooInputError(f"no image files in {' '.join(args.images)}")
    rows: list[dict[str, Any]] = []
    failed = 0
    for start in range(0, len(paths), model.batch_size):  # a batch at a time: memory stays flat
        chunk: list[dict[str, Any]] = []
        inputs = []
        for path in paths[start:start + model.batch_size]:
            try:
                inputs.append(model.preprocess(path))
                chunk.append({"image": path})
            except ZooInputError as error:
                print(f"zoo: error: {error}", file=sys.stderr)
                chunk.append({"image": path, "error": str(error)})
                failed += 1
        results = iter(model.postprocess(model.run(np.concatenate(inputs)), topk=args.topk) if inputs else [])
        for row in chunk:
            if "error" not in row:
                row["result"] = next(results)
                if not args.json:
                    _print_result(row["image"], row["result"])
        rows += chunk
    if args.json:
        _print_json([{**row, "result": _jsonable(row["result"])} if "result" in row else row for row in rows])
    if failed:
        print(f"zoo: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _jsonable(result: Any) -> Any:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, dict):
        return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in result.items()}
    return result


def _print_result(image: str, result: Any) -> None:
    from zoo.results import Classification, Regression

    if isinstance(result, Classification):
        print(f"{image}")
        for p in result.topk:
            print(f"  {p.score:7.2%}  {p.label} ({p.class_id})")
    elif isinstance(result, Regression):
        unit = f" {result.unit}" if result.unit else ""
        print(f"{image}: {result.value:.1f}{unit} [{result.low:.1f}, {result.high:.1f}]")
    else:
        print(f"{image}: {json.dumps(_jsonable(result))}")


def cmd_cache_dir(args: argparse.Namespace) -> int:
    print(cache.cache_root())
    return 0


def cmd_cache_list(args: argparse.Namespace) -> int:
    entries = cache.entries()
    files = cache.downloads()
    if args.json:
        _print_json({"dir": str(cache.cache_root()), "models": [e.to_dict() for e in entries],
                     "downloads": [{"path": str(p), "size": p.stat().st_size} for p in files]})
        return 0
    total = sum(e.size for e in entries) + sum(p.stat().st_size for p in files)
    if entries:
        rows = [[e.name, e.key, _size(e.size), d["created"] or "-", d["exporter"] or d["source"] or "-",
                 "ok" if e.ok else "incomplete or damaged"] for e, d in ((e, e.to_dict()) for e in entries)]
        _print_table(["MODEL", "KEY", "SIZE", "CREATED", "SOURCE", "STATE"], rows)
    if files:
        print()
        _print_table(["DOWNLOAD", "SIZE"], [[p.name, _size(p.stat().st_size)] for p in files])
    print(f"{len(entries)} model(s), {len(files)} download(s), {_size(total)} in {cache.cache_root()}",
          file=sys.stderr)
    return 0


def cmd_cache_verify(args: argparse.Namespace) -> int:
    entries = [e for name in args.names for e in cache.entries(_cached_name(name), full=True)] if args.names \
        else cache.entries(full=True)
    results = [{"path": str(e.folder / cache.MODEL_FILE), "ok": e.ok} for e in entries]
    if not args.names:
        results += [{"path": str(p), "ok": cache.verify_download(p)} for p in cache.downloads()
                    if not p.name.endswith(".part")]
    bad = [r for r in results if not r["ok"]]
    if args.json:
        _print_json(results)
    else:
        for r in results:
            print(f"{'ok     ' if r['ok'] else 'DAMAGED'}  {r['path']}")
        print(f"{len(results)} file(s) checked by sha256, {len(bad)} damaged"
              + ("; 'zoo cache prune' removes them, and the next use rebuilds them" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


def _cached_name(name: str) -> str:
    """The canonical name of an installed model, else ``name`` itself (a model whose plugin is gone)."""
    registry = default_registry()
    return registry.get(name).name if name in registry else name.strip().lower()


def cmd_cache_rm(args: argparse.Namespace) -> int:
    freed = 0
    for name in args.names:
        entries = cache.entries(_cached_name(name))
        if not entries:
            raise ZooError(f"{name!r} has nothing in the cache; 'zoo cache list' shows what has")
        for entry in entries:
            freed += cache.remove(entry.folder)
            print(f"removed {entry.folder}")
    print(f"freed {_size(freed)}", file=sys.stderr)
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from zoo.convert import is_current

    removed = cache.prune(is_current, downloads_too=args.downloads, dry_run=args.dry_run)
    if args.json:
        _print_json([{"path": str(p), "size": n} for p, n in removed])
        return 0
    for path, size in removed:
        print(f"{'would remove' if args.dry_run else 'removed'} {path} ({_size(size)})")
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {_size(sum(n for _, n in removed))}", file=sys.stderr)
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    root = cache.cache_root()
    if not args.yes:
        if not sys.stdin.isatty():
            raise ZooError(f"'zoo cache clear' deletes every cached model and download in {root}; "
                           f"pass --yes to confirm when not at a terminal")
        if input(f"delete every cached model and download in {root}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    freed = sum(cache.remove(e.folder) for e in cache.entries())
    freed += sum(cache.remove(p) for p in cache.downloads())
    print(f"freed {_size(freed)} in {root}", file=sys.stderr)
    return 0


# -- parser ------------------------------------------------------------------------------


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="W",
                        help="a weights variant tag, a checkpoint file, or a URL (with --sha256)")
    parser.add_argument("--sha256", metavar="HEX", help="sha256 of the --weights file or URL")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="Vision models by name, as verified and cached ONNX files.",
        epilog="Environment: ZOO_CACHE_DIR (cache location), ZOO_OFFLINE=1 (no network), ZOO_MIRROR=URL (fetch "
        "files from this base URL), ZOO_LOAD_PLUGINS=a,b (load only these plugins), ZOO_DISABLE_PLUGIN_AUTOLOAD=1 "
        "(load no plugin by entry point). 'zoo COMMAND --help' explains a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {zoo.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int] | None, help: str,
                description: str) -> argparse.ArgumentParser:
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

    p = command("export", cmd_export, "convert a model to ONNX (or fetch its prebuilt file) and show its parity report",
                "Convert NAME to a verified ONNX file in the cache (or reuse the cached one) and print where it is, "
                "its size and sha256, and how closely it reproduces PyTorch.")
    p.add_argument("name", metavar="NAME", help="model name or alias")
    p.add_argument("-o", "--output", metavar="PATH", help="also copy the file here (a folder or a file name)")
    _weights_arguments(p)
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the model's, else 17)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), help="torch.onnx exporter (default: torchscript)")
    p.add_argument("--no-simplify", action="store_true", help="keep the model as exported, without onnxsim")
    p.add_argument("--json", action="store_true", help="print the cache metadata as JSON")

    p = command("predict", cmd_predict, "predict images with a model (top-k classes, ages, ...)",
                "Run NAME on images: files, folders (their image files) and globs. An image that cannot be read is "
                "reported on stderr and the others go on; the exit status is 1 if any failed.")
    p.add_argument("name", metavar="NAME", help="model name or alias")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file, folder or glob")
    p.add_argument("-k", "--topk", type=int, default=5, metavar="K", help="classes to show per image (default 5)")
    p.add_argument("--runtime", choices=("onnxruntime", "opencv"), default="onnxruntime",
                   help="inference engine (default onnxruntime)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per batch (default 8)")
    _weights_arguments(p)
    p.add_argument("--json", action="store_true", help="print a JSON list, one entry per image")

    p = command("cache", None, "show, verify and clean the cache",
                "Manage the cache of converted models and downloads. Its location is ZOO_CACHE_DIR, else the "
                "user cache directory ('zoo cache dir').")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        sub.set_defaults(func=func)
        return sub

    action("dir", cmd_cache_dir, "print the cache directory")
    a = action("list", cmd_cache_list, "list cached models and downloads with their sizes")
    a.add_argument("--json", action="store_true", help="print JSON instead of tables")
    a = action("verify", cmd_cache_verify, "check every cached file against its sha256 (exit status 1 if one is damaged)")
    a.add_argument("names", nargs="*", metavar="NAME", help="only these models (default: everything)")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    a = action("rm", cmd_cache_rm, "remove the cached files of models")
    a.add_argument("names", nargs="+", metavar="NAME", help="model name or alias")
    a = action("prune", cmd_cache_prune, "remove damaged or outdated entries and leftovers of interrupted work")
    a.add_argument("--downloads", action="store_true", help="also remove downloaded weights (fetched again if needed)")
    a.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    a.add_argument("--json", action="store_true", help="print JSON instead of text")
    a = action("clear", cmd_cache_clear, "remove everything in the cache")
    a.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = command("plugins", cmd_plugins, "list plugins with their distribution, version, hooks and errors",
                "List every plugin that was tried, including those that failed to import or register, with the reason.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="zoo: %(message)s")
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

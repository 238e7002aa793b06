"""``zoo list``, ``zoo info`` and ``zoo plugins``: what is installed, and what the zoo knows of a model."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any

import zoo
from zoo import cache
from zoo.cli.arguments import (
    Commands,
    build_options,
    described,
    file_arguments,
    weights_arguments,
)
from zoo.cli.render import (
    built_from,
    check_lines,
    human_size,
    parity_lines,
    preprocess_lines,
    print_json,
    print_lines,
    print_table,
    show_options,
)
from zoo.registry import Registry, default_registry, natural_key

if TYPE_CHECKING:
    from zoo.convert import Converted


def _warn_failed_plugins(registry: Registry) -> None:
    for info in registry.plugin_manager.failures():
        print(f"zoo: warning: {info.error} ('zoo plugins' shows every plugin)", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    registry = default_registry()
    _warn_failed_plugins(registry)
    rows: list[dict[str, Any]] = [
        {"name": n, "task": s.task, "plugin": s.plugin, "installed": True, "license": s.license, "summary": s.summary}
        for n, s in registry.listed(args.pattern or None, task=args.task, plugin=args.plugin)
    ]
    if args.available:
        rows += [
            {"name": e.name, "task": e.task, "plugin": e.distribution, "installed": False, "license": e.license,
             "summary": e.summary}
            for e in registry.not_installed(args.pattern or None, task=args.task, plugin=args.plugin)
        ]
        rows.sort(key=lambda r: natural_key(r["name"]))
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        bare = [p for p in args.pattern if not any(c in p for c in "*?[")]
        hint = f"; try {' '.join(repr(f'*{p}*') for p in bare)} to match inside names" if bare else ""
        print(f"no models match{hint}; 'zoo list --available' also shows models whose plugin is not installed",
              file=sys.stderr)
        return 0
    headers = ["NAME", "TASK", "PLUGIN", "SUMMARY"]
    table = []
    for r in rows:
        plugin = r["plugin"] if r["installed"] else f"pip install ./plugins/{r['plugin']}"
        table.append([r["name"], r["task"], plugin, r["summary"]])
    print_table(headers, table)
    if any(not r["installed"] for r in rows):
        print("zoo: the plugins are not on a package index yet: install them from a clone of the onnx-zoo repository "
              "as shown", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from zoo.model import describe, info_of

    registry = default_registry()
    spec, built = describe(args.name, build_options(args), registry=registry, **described(args))
    data = info_of(spec, built, registry)
    if args.json:
        print_json(data)
        return 0
    if spec.is_pipeline:
        lines = [("name", spec.name), ("task", spec.task), ("summary", spec.summary), ("plugin", spec.plugin),
                 ("pipeline of", ", ".join(spec.requires)), ("options", show_options(data["options"])),
                 ("cache", "that of its models: 'zoo info NAME' for each")]
        print_lines(lines)
        return 0
    in_place = built is not None and built.in_place
    lines = [
        ("name", spec.name),
        *([] if in_place else [("aliases", ", ".join(spec.aliases) or "-"), ("variants", ", ".join(data["variants"]))]),
        ("task", spec.task),
        ("summary", spec.summary),
        ("plugin", spec.plugin or "-"),
        ("license", spec.license),
        ("homepage", spec.homepage or "-"),
        *preprocess_lines(spec.preprocess),
        ("normalise", f"(pixel * {spec.preprocess.scale:.6g} - mean {list(spec.preprocess.mean)}) / std {list(spec.preprocess.std)}"),
        ("labels", f"from the file's metadata ({spec.labels_from})" if spec.labels_from else str(len(spec.labels))),
        ("outputs", ", ".join(f"{o} (as {spec.rename_outputs[o]})" if o in spec.rename_outputs else o
                              for o in spec.outputs) + ("" if spec.batch_axis else ", one image at a time")),
        *([("decode", json.dumps(dict(spec.decode)))] if spec.decode else []),
        ("options", show_options(data["options"])),
        *([] if in_place else _source_lines(spec, args.weights if not spec.metrics else None)),  # not a variant
        *[("not on", f"{runtime}: {why}") for runtime, why in spec.unsupported.items()],
    ]
    if spec.metrics:
        lines.append(("published", "metrics of the published weights above, not of other checkpoints"))
    lines += [(f"  {k}", f"{v:,.0f}" if float(v).is_integer() else f"{v:g}") for k, v in spec.metrics.items()]
    lines += _built_lines(built, spec, registry.task(spec.task))
    if not in_place:
        for record in data["cache"]["entries"]:
            state = (f"{built_from(record)}, {human_size(record['size'])}, {record['created']}" if record["ok"]
                     else "incomplete or damaged: rebuilt on next use")
            lines.append(("cache", f"{record['id']}: {state}"))
        if not data["cache"]["entries"]:
            lines.append(("cache", f"not cached yet ({data['cache']['dir']})"))
    print_lines(lines)
    return 0


def _source_lines(spec: zoo.ModelSpec, weights: str | None) -> list[tuple[str, str]]:
    """Where a registered model's weights (``weights``: those given) and file come from, and its parity tolerance."""
    return [
        ("weights", f"given: {weights}" if weights else
         shown(spec.weights) if spec.weights else
         "none published: --weights FILE (or --weights random)" if spec.build is not None and not spec.onnx else "none"),
        ("onnx", shown(spec.onnx) if spec.onnx else "exported on first use"),
        ("parity", f"atol {spec.atol:g}, rtol {spec.rtol:g}"),
    ]


def shown(artifact: zoo.Artifact | zoo.HubFile) -> str:
    """Where a file comes from, and its sha256: ``URL (sha256 HEX)``, or ``MEMBER (sha256 HEX) in URL``; a Hub
    file's sha256 is the one its revision has when it is fetched."""
    if isinstance(artifact, zoo.HubFile):
        return f"{artifact.url} on the Hugging Face Hub (sha256 {artifact.sha256 or 'as the Hub gives it'})"
    if artifact.member:
        return f"{artifact.member} (sha256 {artifact.member_sha256}) in {artifact.url} (sha256 {artifact.sha256})"
    return f"{artifact.url} (sha256 {artifact.sha256})"


def _built_lines(built: Converted | None, spec: zoo.ModelSpec, task: Any) -> list[tuple[str, str]]:
    """The file these arguments run: a file used in place (its hash, the weights it says it has), or the entry with
    its weights and the export's parity figures; nothing until it is built."""
    if built is None:
        return []
    meta = built.metadata
    record = meta["files"][built.path.name]
    lines = [("file", f"{built.path} ({human_size(record['size'])}, sha256 {record['sha256']})")]
    weights = meta.get("weights") or {}
    if built.in_place:
        if weights.get("tag") == "random":
            lines.append(("weights", "RANDOM, as the file's onnx-zoo metadata says"))
        elif weights:
            lines.append(("weights", f"{weights.get('file') or weights.get('tag')} (sha256 {weights.get('sha256')}), "
                                     f"as the file's onnx-zoo metadata says"))
        folder = cache.file_folder_of(record["sha256"])
        lines.append(("cache", f"used where it is; its optimised graph kept in {folder}"))
        with contextlib.suppress(OSError, ValueError):  # what was measured of it here, kept in its folder
            return lines + measured_lines(cache.read_metadata(folder), spec, task)
        return lines
    if weights.get("file") and not weights.get("tag"):
        lines.append(("built from", f"your {weights['file']} (sha256 {weights.get('sha256')}); no published metrics"))
    return lines + parity_lines(meta) + measured_lines(meta, spec, task)


def measured_lines(meta: dict[str, Any], spec: zoo.ModelSpec, task: Any) -> list[tuple[str, str]]:
    """The checks (judged by today's limits, as opening the model judges them) and tunings recorded for this
    machine (none: nothing to say, and no machine to describe)."""
    if not (meta.get("checks") or meta.get("tuned")):
        return []
    from zoo.gate import machine_key, rejudge

    checks = {key: rejudge(spec, task, record) for key, record in meta.get("checks", {}).items()}
    return check_lines({**meta, "checks": checks}, machine_key())


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = zoo.list_plugins()
    if args.json:
        print_json([i.to_dict() for i in infos])
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
    print_table(["PLUGIN", "DISTRIBUTION", "VERSION", "MODELS", "HOOKS"], rows)
    conflicts = [f"  {i.name}: {line}" for i in infos for line in i.conflicts]
    if conflicts:
        print("\nmodel names that several plugins register (PLUGIN:NAME chooses one):")
        print("\n".join(conflicts))
    return 0


def add_parsers(commands: Commands) -> None:
    """Add this module's commands to the ``zoo`` parser."""
    command = commands.command
    p = command("list", cmd_list, "list the models the installed plugins provide",
                "List models, naturally sorted. PATTERN is a glob such as 'resnet*', matched case-insensitively; "
                "several patterns match any of them.")
    p.add_argument("pattern", nargs="*", metavar="PATTERN", help="glob on model names (default: all)")
    p.add_argument("--task", help="only models of this task, e.g. image-classification (any case)")
    p.add_argument("--plugin", help="only models of this plugin: its name or its distribution's, as 'zoo plugins' "
                                    "shows them")
    p.add_argument("--available", action="store_true",
                   help="also list catalogued models whose plugin is not installed, with what to install")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    p = command("info", cmd_info, "show a model's spec, preprocessing, weights and cache state",
                "Show everything the zoo knows about one model, without building it. NAME is matched "
                "case-insensitively and through aliases; with --weights, the model built from your checkpoint: its "
                "file, hash and parity figures once it is built, and no published metrics.")
    p.add_argument("name", metavar="NAME", help="a model's name or alias, NAME/KEY (a cache entry) or an ONNX file")
    weights_arguments(p, precision=False)
    file_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = command("plugins", cmd_plugins, "list plugins with their distribution, version, hooks and errors",
                "List every plugin that was tried, including those that failed to import or register, with the reason.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

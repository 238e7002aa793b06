"""``zoo export``: a model converted (or fetched) into the cache, its parity report, and a copy of the file."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from zoo import cache
from zoo.cli.arguments import (
    Commands,
    build_options,
    runtime_arguments,
    weights_arguments,
)
from zoo.cli.render import (
    human_size,
    parity_lines,
    print_json,
    print_lines,
)
from zoo.errors import UsageError
from zoo.registry import default_registry
from zoo.spec import ModelSpec


def cmd_export(args: argparse.Namespace) -> int:
    from zoo._fields import check_count
    from zoo.runtime import check_runtime

    check_count("--threads", args.threads, optional=True)
    check_runtime("onnxruntime", args.providers)  # before the export, not after it
    registry = default_registry()
    spec = registry.get(args.name)
    if spec.is_pipeline:  # a pipeline is exported as its models
        chosen = [flag for flag, value in (("-o", args.output), ("--weights", args.weights), ("--sha256", args.sha256),
                                           ("--labels", args.labels)) if value]
        if chosen:
            raise UsageError(f"{spec.name} is a pipeline of {', '.join(spec.requires)}; {', '.join(chosen)} "
                             f"cannot apply to it: export each of its models")
    exported = [_export_one(args, part) for part in registry.parts(spec)]
    if args.json:
        print_json(exported[0][0] if not spec.is_pipeline else [data for data, _ in exported])
        return 0
    for _, lines in exported:
        print_lines(lines)
    return 0


def _export_one(args: argparse.Namespace, model: ModelSpec) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Export (or find cached) one model as the arguments say: its JSON data and its lines for the terminal."""
    from zoo.model import prepare
    from zoo.runtime import open_session

    spec, converted = prepare(model, build_options(args))
    meta = converted.metadata
    path = converted.path
    providers = None
    if args.providers or args.threads:  # the file must also open where it will run
        providers = getattr(open_session(path, "onnxruntime", spec.outputs, providers=args.providers,
                                         threads=args.threads), "providers", None)
    if args.output:
        path = _copy_model(converted.path, args.output, spec.name)
        from zoo import onnxmeta

        if not onnxmeta.carried(meta["key_inputs"]) and not cache.check_external_data(path):  # a prebuilt file's copy
            onnxmeta.write(path, onnxmeta.properties(spec, meta))  # says what it is too, wherever it goes
    data = {"name": spec.name, "path": str(path), "cache_path": str(converted.path), **meta,
            **({"providers": providers} if providers else {})}
    record = meta["files"][cache.MODEL_FILE]
    lines = [("model", spec.name), ("file", str(path)),
             ("size", f"{human_size(record['size'])}, sha256 {record['sha256']}"), *parity_lines(meta)]
    if providers:
        lines.append(("opens on", ", ".join(providers)))
    return data, lines


def _copy_model(source: Path, output: str, name: str) -> Path:
    """Copy a cached model (and its external data, whose names the model refers to) to ``output``.

    ``output`` is a folder (existing, or written with a trailing slash) or a file name.
    """
    from zoo._files import replacing
    from zoo.errors import NotWritableError

    is_folder = Path(output).is_dir() or output.endswith(("/", os.sep))
    target = Path(output) / f"{cache.folder_name(name)}.onnx" if is_folder else Path(output)  # timm--x.onnx
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for data in cache.check_external_data(source):
            shutil.copyfile(source.parent / data, target.parent / data)
        with replacing(target) as temp:
            shutil.copyfile(source, temp)
    except OSError as error:
        raise NotWritableError(f"cannot write the model to {target} ({error.strerror or error}); choose another "
                               f"place with -o/--output (the cached file is {source})") from None
    return target


def add_parsers(commands: Commands) -> None:
    """Add this module's commands to the ``zoo`` parser."""
    command = commands.command
    p = command("export", cmd_export, "convert a model to ONNX (or fetch its prebuilt file) and show its parity report",
                "Convert NAME to a verified ONNX file in the cache (or reuse the cached one) and print where it is, "
                "its size and sha256, and how closely it reproduces PyTorch.")
    p.add_argument("name", metavar="NAME", help="model name or alias")
    p.add_argument("-o", "--output", metavar="PATH", help="also copy the file here (a folder or a file name)")
    weights_arguments(p)
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the model's, else 17)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), help="torch.onnx exporter (default: torchscript)")
    p.add_argument("--no-simplify", action="store_true", help="keep the model as exported, without onnxsim")
    runtime_arguments(p)
    p.add_argument("--json", action="store_true", help="print the cache metadata as JSON")

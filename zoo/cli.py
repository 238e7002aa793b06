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
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zoo
from zoo import cache
from zoo.errors import UsageError, ZooError, weights_hint
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
    names = registry.names(args.pattern or None, task=args.task, plugin=args.plugin)
    rows: list[dict[str, Any]] = [
        {"name": n, "task": s.task, "plugin": s.plugin, "installed": True, "license": s.license, "summary": s.summary}
        for n, s in ((n, registry.get(n)) for n in names)
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
    _print_table(headers, table)
    if any(not r["installed"] for r in rows):
        print("zoo: the plugins are not on a package index yet: install them from a clone of the onnx-zoo repository "
              "as shown", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    data = zoo.info(args.name)
    spec = default_registry().get(args.name)
    if args.json:
        _print_json(data)
        return 0
    if spec.is_pipeline:
        lines = [("name", spec.name), ("task", spec.task), ("summary", spec.summary), ("plugin", spec.plugin),
                 ("pipeline of", ", ".join(spec.requires)), ("options", _show_options(data["options"])),
                 ("cache", "that of its models: 'zoo info NAME' for each")]
        _print_lines(lines)
        return 0
    lines = [
        ("name", spec.name),
        ("aliases", ", ".join(spec.aliases) or "-"),
        ("variants", ", ".join(data["variants"])),
        ("task", spec.task),
        ("summary", spec.summary),
        ("plugin", spec.plugin),
        ("license", spec.license),
        ("homepage", spec.homepage or "-"),
        *_preprocess_lines(spec.preprocess),
        ("normalise", f"(pixel * {spec.preprocess.scale:.6g} - mean {list(spec.preprocess.mean)}) / std {list(spec.preprocess.std)}"),
        ("labels", str(len(spec.labels))),
        ("outputs", ", ".join(f"{o} (as {spec.rename_outputs[o]})" if o in spec.rename_outputs else o
                              for o in spec.outputs) + ("" if spec.batch_axis else ", one image at a time")),
        *([("decode", json.dumps(dict(spec.decode)))] if spec.decode else []),
        ("options", _show_options(data["options"])),
        ("weights", f"{spec.weights.url} (sha256 {spec.weights.sha256})" if spec.weights else
         "none published: --weights FILE (or --weights random)" if spec.build is not None and not spec.onnx else "none"),
        ("onnx", f"{spec.onnx.url} (sha256 {spec.onnx.sha256})" if spec.onnx else "exported on first use"),
        ("parity", f"atol {spec.atol:g}, rtol {spec.rtol:g}"),
        *[("not on", f"{runtime}: {why}") for runtime, why in spec.unsupported.items()],
    ]
    if spec.metrics:
        lines.append(("published", "metrics of the published weights above, not of other checkpoints"))
    lines += [(f"  {k}", f"{v:,.0f}" if float(v).is_integer() else f"{v:g}") for k, v in spec.metrics.items()]
    for record in data["cache"]["entries"]:
        state = (f"{_built_from(record)}, {_size(record['size'])}, {record['created']}" if record["ok"]
                 else "incomplete or damaged: rebuilt on next use")
        lines.append(("cache", f"{record['id']}: {state}"))
    if not data["cache"]["entries"]:
        lines.append(("cache", f"not cached yet ({data['cache']['dir']})"))
    _print_lines(lines)
    return 0


def _print_lines(lines: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def _show_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "none"


def _preprocess_lines(pre: Any) -> list[tuple[str, str]]:
    """How ``zoo info`` states a :class:`~zoo.preprocess.Preprocess`."""
    if pre.resize is None:
        resize = "none (the image's own size" + (f", padded to a multiple of {pre.multiple})" if pre.multiple > 1
                                                 else ")")
    elif pre.resize == "cover":
        resize = "scaled to cover the crop (cv2.dnn.blobFromImage with crop=True)"
    elif pre.resize == "letterbox":
        resize = (f"letterbox: fit inside {pre.size[0]}x{pre.size[1]}, padded with {pre.pad_value:g}"
                  f"{' (after normalisation)' if pre.pad_normalized else ''}, image at the {pre.pad_position}")
    elif pre.resize in ("longer", "shorter"):
        limit = "at most" if pre.resize == "longer" else "at least"
        resize = f"{pre.resize} side {limit} {pre.size}, each side rounded to a multiple of {pre.multiple}"
    elif isinstance(pre.resize, int):
        resize = f"shorter side to {pre.resize}"
    else:
        resize = f"exactly {pre.resize[0]}x{pre.resize[1]}"
    shape = "x".join("?" if d is None else str(d) for d in pre.input_shape)
    lines = [("input", f"{pre.layout} {pre.dtype} {shape}, {pre.channels}"
                       + (f" (any size; batched: {pre.batching})" if pre.dynamic else "")),
             ("resize", f"{resize}, {pre.interpolation}{' with antialias' if pre.antialias else ''}")]
    lines.append(("crop", "none" if pre.crop is None else f"centre {pre.crop[0]}x{pre.crop[1]}"))
    return lines


def _built_from(entry: dict[str, Any]) -> str:
    """What a cache entry was made from: ``weights imagenet1k_v2 (resnet50-11ad3fa6.pth, 11ad3fa6), torchscript
    opset 17, simplified`` or ``prebuilt digits.onnx (31773508)``."""
    if entry.get("precision", "fp32") != "fp32":
        return f"{entry['precision']} of entry {entry.get('source_entry')}"
    if entry["source"] == "prebuilt":
        onnx = entry.get("onnx") or {}
        return f"prebuilt {onnx.get('file', 'file')} ({str(onnx.get('sha256', ''))[:8]})"
    weights = entry.get("weights")
    if not weights:
        made = "no weights (the model has no parameters)"
    elif weights.get("tag") == "random":
        made = "RANDOM weights (asked for with --weights random)"
    elif weights.get("tag"):
        made = f"weights {weights['tag']} ({weights['file']}, {str(weights.get('sha256') or '')[:8]})"
    else:  # the published metrics are not this file's
        made = f"your weights {weights['file']} ({str(weights.get('sha256') or '')[:8]}; no published metrics)"
    simplified = "simplified" if entry.get("simplified") else "not simplified"
    parity = ", parity NOT COMPARED (nothing to compare)" if entry.get("parity") == "not compared" else ""
    return f"{made}, {entry.get('exporter')} opset {entry.get('opset')}, {simplified}{parity}"


def cmd_plugins(args: argparse.Namespace) -> int:
    infos = zoo.list_plugins()
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
    conflicts = [f"  {i.name}: {line}" for i in infos for line in i.conflicts]
    if conflicts:
        print("\nmodel names that several plugins register (PLUGIN:NAME chooses one):")
        print("\n".join(conflicts))
    return 0


def _int8_speed(q: dict[str, Any]) -> str:
    """The speed-up an int8 entry's report stores, with its spread over the interleaved blocks it was measured
    in (a report from before they were measured so says it is one pair of medians)."""
    times = f"{q['int8_ms']:.3g} ms against {q['fp32_ms']:.3g} ms in float32"
    if "timing" not in q:
        return f"{times} ({q['speedup']:.2f}x), one image, one pair of medians: not a reliable speed-up"
    low, high = q["speedup_range"]
    spread = f"{low:.2f}x to {high:.2f}x over {q['timing']['blocks']} interleaved blocks"
    return f"{q['speedup']:.2f}x float32's ({spread}; {times}), one image, measured once, where the entry was built"


def _parity_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    if "int8" in meta:
        q = meta["int8"]
        settings = meta["key_inputs"]["precision"]
        made = (f"{settings['format']}, {settings['method']} calibration on {q['calibration_images']} images, from "
                f"entry {meta['source_entry']}")
        agrees = (f"top-1 agrees with float32 on {q['agreement']:.1%} of {q['held_images']} held images, largest "
                  f"output change {q['max_difference']:.1%} of the outputs' range")
        speed = _int8_speed(q)
        return [("int8", made), ("agreement", agrees), ("speed", speed)]
    if "parity" not in meta:
        onnx = meta.get("onnx", {})
        return [("source", f"prebuilt ONNX {onnx.get('file')} (sha256 {onnx.get('sha256')}, verified)")]
    lines = [("export", f"{meta['exporter']} exporter, opset {meta['opset']}, {meta['simplify_note']}")]
    if meta.get("not_compared"):
        lines.append(("parity", f"NOT COMPARED: PyTorch gave nothing to compare on any of the {meta['samples']} "
                                f"inputs ({_counted(meta['compared'])}); the export is unverified"))
        return lines
    for output, p in meta["parity"].items():
        if p["max_abs"] is None:  # detections of variable count, matched one by one by the task
            detail = p["note"] or "compared as results"
        else:
            top1 = f", top-1 agreement {p['top1_agreement']:.0%}" if p["top1_agreement"] is not None else ""
            detail = f"max abs diff {p['max_abs']:.3g}, max rel diff {p['max_rel']:.3g}{top1}"
        lines.append(("parity", f"{output}: {detail} ({meta['samples']} inputs: random and a photo)"))
    if any(meta.get("compared", ())):
        lines.append(("compared", _counted(meta["compared"])))
    return lines


def _counted(compared: list[dict[str, int]]) -> str:
    """What an export's parity inputs held, input by input: ``detections 0, 7, 3; masks 0, 7, 3``."""
    kinds = dict.fromkeys(kind for counts in compared for kind in counts)
    return "; ".join(f"{kind} per input {', '.join(str(c.get(kind, 0)) for c in compared)}" for kind in kinds)


def _labels(args: argparse.Namespace) -> list[str] | None:
    from zoo.model import read_labels

    return read_labels(args.labels) if args.labels else None


def _build_options(args: argparse.Namespace) -> Any:
    """The build options a command's flags give (those it has): a :class:`zoo.convert.BuildOptions`."""
    from zoo.convert import BuildOptions

    return BuildOptions(weights=getattr(args, "weights", None), sha256=getattr(args, "sha256", None),
                        labels=_labels(args) if getattr(args, "labels", None) else None,
                        opset=getattr(args, "opset", None), exporter=getattr(args, "exporter", None),
                        simplify=not getattr(args, "no_simplify", False), precision=args.precision)


def cmd_export(args: argparse.Namespace) -> int:
    from zoo._fields import check_count
    from zoo.runtime import check_runtime

    check_count("--threads", args.threads, optional=True)
    check_runtime("onnxruntime", args.providers)  # before the export, not after it
    spec = default_registry().get(args.name)
    names = [spec.name]
    if spec.is_pipeline:  # a pipeline is exported as its models
        chosen = [flag for flag, value in (("-o", args.output), ("--weights", args.weights), ("--sha256", args.sha256),
                                           ("--labels", args.labels)) if value]
        if chosen:
            raise UsageError(f"{spec.name} is a pipeline of {', '.join(spec.requires)}; {', '.join(chosen)} "
                             f"cannot apply to it: export each of its models")
        names = list(spec.requires)
    exported = [_export_one(args, name) for name in names]
    if args.json:
        _print_json(exported[0][0] if not spec.is_pipeline else [data for data, _ in exported])
        return 0
    for _, lines in exported:
        _print_lines(lines)
    return 0


def _export_one(args: argparse.Namespace, name: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Export (or find cached) one model as the arguments say: its JSON data and its lines for the terminal."""
    from zoo.model import prepare
    from zoo.runtime import open_session

    spec, converted = prepare(name, _build_options(args))
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
             ("size", f"{_size(record['size'])}, sha256 {record['sha256']}"), *_parity_lines(meta)]
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
    target = Path(output) / f"{name}.onnx" if is_folder else Path(output)
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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".pbm", ".pgm", ".ppm")


#: Cloud storage that Ray Data reads (``zoo predict --ray``) and plain ``zoo predict`` does not.
REMOTE_SCHEMES = ("s3", "gs", "gcs", "abfs", "hdfs")


def _expand_images(patterns: Sequence[str], *, remote: bool = False) -> list[str]:
    """Paths from the command line: folders give their image files, globs their matches, sorted.

    Every argument is checked before any model is built or downloaded: a typo must not
    cost an export first. Raises :class:`~zoo.errors.ZooInputError` naming each bad one.
    ``remote`` passes cloud storage URIs (``s3://``, ``gs://``, ...) through, for Ray to list.
    """
    from urllib.parse import urlsplit

    from zoo.errors import ZooInputError

    found: list[str] = []
    problems: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if remote and urlsplit(pattern).scheme in REMOTE_SCHEMES:
            found.append(pattern)
        elif urlsplit(pattern).scheme in ("http", "https", "ftp", *REMOTE_SCHEMES):
            problems.append(f"{pattern!r} is a URL; URLs are not fetched: download the image and pass the file")
        elif path.is_dir():
            images = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                problems.append(f"folder {pattern!r} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...)")
            found += images
        elif path.exists():
            if not path.is_file():
                problems.append(f"{pattern!r} is not a file")
            elif not os.access(path, os.R_OK):
                problems.append(f"{pattern!r} cannot be read (permission denied)")
            else:
                found.append(pattern)
        elif any(c in pattern for c in "*?["):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not matches:
                problems.append(f"no file matches {pattern!r}")
            found += matches
        else:
            problems.append(f"{pattern!r} does not exist")
    if problems:
        raise ZooInputError("; ".join(problems) + ("" if len(problems) == 1 else f" ({len(problems)} arguments)"))
    return found


def cmd_predict(args: argparse.Namespace) -> int:
    from zoo import images
    from zoo._fields import check_count
    from zoo.errors import ZooInputError
    from zoo.results import jsonable
    from zoo.runtime import check_runtime

    check_count("--batch-size", args.batch_size)
    check_runtime(args.runtime, args.providers)  # with --ray too, before any worker starts
    check_count("--topk", args.topk, optional=True)
    check_count("--max-detections", args.max_detections, optional=True)
    for flag, value in (("--score-threshold", args.score_threshold), ("--iou-threshold", args.iou_threshold)):
        if value is not None and not 0 <= value <= 1:
            raise UsageError(f"{flag} must be a number from 0 to 1, got {value}")
    options = _options(args)
    if args.ray is not None and not _ray_address(args.ray):  # `--ray photos/`: the folder, not an address
        args.images, args.ray = [args.ray, *args.images], ""
    if args.ray is not None:
        return _predict_on_ray(args, options)
    if args.output is not None:
        raise UsageError("--output writes the Parquet file of a --ray run; without --ray use --json or --jsonl")
    paths = _expand_images(args.images)
    saved = _save_paths(paths, args.save, overwrite=args.overwrite) if args.save else {}
    from zoo.model import open_model, predict_each

    model = open_model(args.name, _build_options(args), runtime=args.runtime, providers=args.providers,
                       threads=args.threads, batch_size=args.batch_size)
    from zoo.tasks import merge_options

    merge_options(model.spec, model.options, options)  # a wrong option fails before any image is read
    if args.save and model.task is not None and not hasattr(model.task.result, "draw"):
        raise UsageError(f"the results of {model.spec.name} ({model.task.result.__name__}) have no draw(); --save "
                         f"cannot picture them")
    rows: list[dict[str, Any]] = []
    failed = 0
    with _progress(len(paths), args) as bar:
        for start in range(0, len(paths), args.batch_size):  # a batch at a time: memory stays flat
            chunk: list[dict[str, Any]] = []
            pixels = []
            for path in paths[start:start + args.batch_size]:
                try:
                    pixels.append(images.load(path))
                    chunk.append({"image": path})
                except ZooInputError as error:
                    _write(f"zoo: error: {error}", bar, sys.stderr)
                    chunk.append({"image": path, "error": str(error)})
                    failed += 1
            answers = iter(zip(predict_each(model, pixels, **options), pixels))
            for row in chunk:
                if "error" not in row:
                    result, image = next(answers)
                    if isinstance(result, ZooInputError):  # this image alone could not be used
                        _write(f"zoo: error: {result}", bar, sys.stderr)
                        row["error"] = str(result)
                        failed += 1
                    else:
                        if args.save:
                            row["saved"] = _save(result, image, saved[row["image"]])
                            if not args.quiet:
                                _write(f"zoo: saved {row['image']} as {row['saved']}", bar, sys.stderr)
                        row["result"] = jsonable(result) if args.json or args.jsonl else result
                if args.jsonl:
                    _write(json.dumps(row, default=str, ensure_ascii=False), bar)
                elif args.json:
                    rows.append(row)
                elif "result" in row:
                    _write(_format_result(row["image"], row["result"]), bar)
            bar.update(len(chunk))
    if args.json:
        _print_json(rows)
    if failed:
        print(f"zoo: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _ray_address(text: str) -> bool:
    """Whether ``--ray``'s value is a Ray address ('auto', 'local', HOST:PORT, ray://...) rather than an image."""
    return text in ("", "auto", "local") or text.startswith("ray://") or bool(re.fullmatch(r"[\w.-]+:\d+", text))


def _predict_on_ray(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """``zoo predict --ray``: the images through :func:`zoo.ray.predict_files` into ``--output``."""
    from zoo._fields import check_count

    check_count("--workers", args.workers)
    for flag, given in (("--save", args.save), ("--json", args.json), ("--jsonl", args.jsonl),
                        ("--runtime opencv", args.runtime != "onnxruntime")):
        if given:
            raise UsageError(f"{flag} does not go with --ray: the results go to the --output Parquet file")
    if not args.output or not args.output.endswith(".parquet"):
        raise UsageError("--ray writes its results to a Parquet file: add --output FILE.parquet")
    output = Path(args.output)
    if not output.parent.is_dir():
        raise UsageError(f"--output {args.output!r}: folder {str(output.parent)!r} does not exist")
    try:
        import ray.data  # noqa: F401  (it sets up its logger on import: the level below comes after)

        import zoo.ray
    except ImportError as error:
        raise UsageError(f"--ray needs Ray Data ({error}): pip install 'onnx-zoo[ray]'") from None
    if not args.verbose:  # Ray Data's 'execution finished' line would cut through the progress bar
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    paths = [p if "://" in p else str(Path(p).resolve()) for p in _expand_images(args.images, remote=True)]
    with _progress(0 if any("://" in p for p in paths) else len(paths), args) as bar:  # a URI: a folder, size unknown
        rows, failed = zoo.ray.predict_files(
            paths, args.name, output, address=args.ray or None, progress=bar.update,
            batch_size=args.batch_size, concurrency=args.workers, options=options, weights=args.weights,
            sha256=args.sha256, labels=_labels(args), precision=args.precision, providers=args.providers,
            threads=args.threads)
    if not args.quiet:
        print(f"zoo: {rows} row(s) written to {output}" + (f", {failed} of them errors" if failed else ""),
              file=sys.stderr)
    return 1 if failed else 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The prediction options given on the command line: the named flags, then each ``--option KEY=VALUE``, its
    text read by the type of the option's default (:func:`zoo.tasks.option_from_text`), so that a wrong name or
    value fails here, before any model is built."""
    from zoo.tasks import accepted_options, options_from_text

    options = {name: getattr(args, name) for name in ("topk", "score_threshold", "iou_threshold", "max_detections")
               if getattr(args, name) is not None}
    texts: dict[str, str] = {}
    for item in args.option or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option takes KEY=VALUE (e.g. --option score_threshold=0.3), got {item!r}")
        texts[key.strip()] = text
    if texts:
        registry = default_registry()
        spec = registry.get(args.name)
        options.update(options_from_text(spec, accepted_options(spec, registry.task(spec.task)), texts))
    return options


def _save_paths(paths: Sequence[str], folder: str, *, overwrite: bool = False) -> dict[str, Path]:
    """Where each input's annotated picture goes: ``folder`` with the same file name (PNG where the format is
    another), a number added (``x-2.png``, ``x-3.png``) where another image of the run, or an input image itself,
    has that name: an input is never written over. An existing file is refused unless ``overwrite``. All is
    checked, and the folder made, now: a bad ``--save`` fails before the model is built and before anything is
    written."""
    target = Path(folder)
    inputs = {_file_id(Path(path)) for path in paths} - {None}
    chosen: dict[str, Path] = {}
    taken: set[str] = set()
    for path in paths:
        name = Path(path)
        suffix = name.suffix if name.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
        candidate, n = target / (name.stem + suffix), 1
        while candidate.name.casefold() in taken or _file_id(candidate) in inputs:
            n += 1
            candidate = target / f"{name.stem}-{n}{suffix}"
        taken.add(candidate.name.casefold())
        chosen[path] = candidate
    existing = [path for path in chosen.values() if os.path.lexists(path)]
    if existing and not overwrite:
        which = (f"{existing[0]}, which exists" if len(existing) == 1
                 else f"{existing[0]} and {len(existing) - 1} other existing file(s)")
        raise UsageError(f"--save would write over {which}; pass --overwrite to replace what exists (input images "
                         f"are never replaced), or choose another --save folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--save folder {folder!r} cannot be made ({error.strerror or error}); give a writable "
                         f"folder") from None
    return chosen


def _file_id(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at ``path`` (the same for its links, whatever their spelling); None if
    there is none."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _save(result: Any, image: Any, path: Path) -> str:
    """Write ``result.draw(image)`` to ``path``; the path written."""
    import cv2

    if not hasattr(result, "draw"):
        raise UsageError("the results of this model have no draw(); --save cannot picture them")
    drawn = result.draw(image)
    if not cv2.imwrite(str(path), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
        raise UsageError(f"--save could not write {path}")
    return str(path)


def _progress(total: int, args: argparse.Namespace, unit: str = "image") -> Any:
    """A progress bar on stderr for many items at a terminal; disabled (its calls do nothing) when piped, quiet
    or for fewer than 2 items. Bytes (``unit="B"``) are counted in k, M, ... of 1024."""
    from tqdm import tqdm

    shown = total >= 2 and not args.quiet and sys.stderr.isatty()
    return tqdm(total=total, unit=unit, unit_scale=unit == "B", unit_divisor=1024, file=sys.stderr, leave=False,
                dynamic_ncols=True, disable=not shown)


def _selected_names(args: argparse.Namespace, registry: Registry, verb: str) -> list[str]:
    """The models ``args.names`` (names or globs), ``--task`` and ``--plugin`` select; unknown ones fail now."""
    if not args.names and not (args.task or args.plugin):
        raise UsageError(f"name the models to {verb} (names or globs), or {verb} every model of a --task or a "
                         f"--plugin")
    names: list[str] = []
    for pattern in args.names or [None]:
        if pattern is not None and not any(char in pattern for char in "*?["):
            spec = registry.get(pattern)  # an unknown name fails here, with suggestions, before anything is fetched
            found = [spec.name] if registry.names(spec.name, task=args.task, plugin=args.plugin) else []
        else:
            found = registry.names(pattern, task=args.task, plugin=args.plugin)
        if not found:
            raise UsageError(f"no model matches {pattern or 'the filters'}"
                             f"{f' with --task {args.task}' if args.task else ''}"
                             f"{f' from --plugin {args.plugin}' if args.plugin else ''}; 'zoo list' shows them")
        names += [name for name in found if name not in names]
    return names


def cmd_pull(args: argparse.Namespace) -> int:
    registry = default_registry()
    names = _selected_names(args, registry, "pull")
    from zoo.model import prepare

    failed: dict[str, str] = {}
    with _progress(len(names), args, unit="model") as bar:
        for name in names:
            spec = registry.get(name)
            try:
                for part in registry.parts(spec):
                    _, converted = prepare(part, _build_options(args))
                    _write(f"{name}: {converted.path}" if part is spec else f"{name}: {part.name} at {converted.path}",
                           bar)
            except ZooError as error:
                failed[name] = str(error)
                _write(f"{name}: FAILED: {error}", bar, sys.stderr)
            bar.update()
    print(f"pulled {len(names) - len(failed)} of {len(names)} model(s) into {cache.cache_root()}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bundle_export(args: argparse.Namespace) -> int:
    from zoo import bundle
    from zoo.convert import is_current
    from zoo.model import prepare

    registry = default_registry()
    output = Path(args.output)
    if not output.parent.is_dir():
        raise UsageError(f"-o {args.output!r}: folder {str(output.parent)!r} does not exist")
    chosen: dict[Path, cache.Entry] = {}
    for name in _selected_names(args, registry, "bundle"):
        spec = registry.get(name)
        for part in registry.parts(spec):
            current = [e for e in cache.entries(part.name) if e.ok and is_current(e, registry)
                       and cache.precision_of(e.metadata) == args.precision]
            if not current:  # nothing cached yet: pulled now, as 'zoo pull' would
                _, converted = prepare(part, _build_options(args))
                current = [e for e in cache.entries(part.name) if e.folder == converted.path.parent]
            chosen.update((e.folder, e) for e in current)
    total = sum(e.size for e in chosen.values())
    with _progress(total, args, unit="B") as bar:
        manifest = bundle.export_bundle(chosen.values(), output, progress=bar.update)
    for entry in manifest["entries"]:
        print(f"{entry['name']}/{entry['key']}  {entry['precision']}  "
              f"{_size(sum(f['size'] for f in entry['files'].values()))}")
    print(f"wrote {len(manifest['entries'])} entr{'y' if len(manifest['entries']) == 1 else 'ies'} to {output} "
          f"({_size(output.stat().st_size)})", file=sys.stderr)
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    from zoo import bundle

    path = Path(args.bundle)
    with _progress(path.stat().st_size if path.is_file() else 0, args, unit="B") as bar:
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
        _print_json(manifest)
        return 0
    print(f"made by onnx-zoo {manifest['zoo']} on {manifest.get('created', '?')}")
    for entry in manifest["entries"]:
        print(f"{entry['name']}/{entry['key']}  {entry['precision']}  "
              f"{_size(sum(f['size'] for f in entry['files'].values()))}")
    return 0


def _write(text: str, bar: Any, file: Any = None) -> None:
    """Print a line (on stdout unless ``file``), above the progress bar if it is shown."""
    file = sys.stdout if file is None else file
    if not bar.disable:
        bar.write(text, file=file)
    else:
        print(text, file=file)


def _format_result(image: str, result: Any) -> str:
    """One line per image: its result's ``summary()`` (any task's, a plugin's too), else its outputs as JSON."""
    from zoo.results import jsonable

    summary = getattr(result, "summary", None)
    return f"{image}: {summary() if callable(summary) else json.dumps(jsonable(result))}"


#: zoo serve's batching defaults, from bench/bench_serve.py (the README's "Serving" section): 1.08x the images per
#: second at 16 clients on 2 cores, +3 ms for a request alone.
SERVE_DEFAULTS: dict[str, Any] = {"max_batch_size": 8, "max_wait_ms": 2.0}


def cmd_serve(args: argparse.Namespace) -> int:
    from zoo._fields import check_count

    for flag, value in (("--max-batch-size", args.max_batch_size), ("--max-queue", args.max_queue),
                        ("--max-body", args.max_body), ("--max-receiving", args.max_receiving),
                        ("--max-pixels-in-flight", args.max_pixels_in_flight)):
        check_count(flag, value)
    check_count("--threads", args.threads, optional=True)
    if args.max_wait_ms < 0 or args.timeout <= 0 or args.body_timeout <= 0:
        raise UsageError("--max-wait-ms must be at least 0, and --timeout and --body-timeout more than 0")
    if not args.names and not args.on_demand:
        raise UsageError("name the models to serve (zoo serve resnet50 digits), or pass --on-demand")
    registry = default_registry()
    names = tuple(dict.fromkeys(registry.reference(registry.get(name)) for name in args.names))  # unknown fail here
    try:
        from zoo import serve
    except ImportError as error:
        raise UsageError(f"zoo serve needs the serve extra ({error.name} is missing): "
                         f"pip install 'onnx-zoo[serve]'") from None
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        logging.getLogger("zoo").warning("serving on %s without --token: anyone who reaches it can use it", args.host)
    settings = serve.Settings(models=names, on_demand=args.on_demand, max_batch_size=args.max_batch_size,
                              max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, max_body=args.max_body,
                              timeout=args.timeout, token=args.token, runtime=args.runtime, threads=args.threads,
                              body_timeout=args.body_timeout, max_receiving=args.max_receiving,
                              max_pixels_in_flight=args.max_pixels_in_flight)
    serve.run(settings, host=args.host, port=args.port)
    return 0


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
        rows = [[f"{e.name}/{e.key}", _size(e.size), d["created"] or "-",
                 "ok" if e.ok else "incomplete or damaged", _built_from(d) if e.ok else "-"]
                for e, d in ((e, e.to_dict()) for e in entries)]
        _print_table(["ENTRY", "SIZE", "CREATED", "STATE", "BUILT FROM"], rows)
    if files:
        print()
        _print_table(["DOWNLOAD", "SIZE"], [[p.name, _size(p.stat().st_size)] for p in files])
    print(f"{len(entries)} model(s), {len(files)} download(s), {_size(total)} in {cache.cache_root()}; "
          f"'zoo cache rm NAME/KEY' removes one entry", file=sys.stderr)
    return 0


def _selected_entries(names: Sequence[str], *, full: bool = False) -> list[cache.Entry]:
    """The entries that ``NAME`` (every entry of a model, or of each model of a pipeline) or ``NAME/KEY`` (one
    entry) arguments designate.

    An argument that designates nothing is an error naming it.
    """
    from zoo.errors import CacheError

    selected: list[cache.Entry] = []
    registry = default_registry()
    for argument in names:
        name, _, key = argument.strip().partition("/")
        if not key and name in registry and registry.get(name).is_pipeline:  # a pipeline is its cached models
            parts = [part.name for part in registry.parts(registry.get(name)) if cache.entries(part.name)]
            if not parts:
                raise CacheError(f"{argument!r} is a pipeline none of whose models is cached")
            selected += _selected_entries(parts, full=full)
            continue
        name = _cached_name(name)
        found = cache.entries(name, full=full)
        if key:
            cache.entry_dir(name, key.lower())  # raises for what is not a key
            found = [e for e in found if e.key == key.lower()]
        if not found:
            raise CacheError(f"{argument!r} has nothing in the cache; 'zoo cache list' shows what has (NAME or "
                             f"NAME/KEY)")
        selected += found
    return selected


def cmd_cache_verify(args: argparse.Namespace) -> int:
    entries = _selected_entries(args.names, full=True) if args.names else cache.entries(full=True)
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
        _print_json(results)
    else:
        shown = {"ok": "ok        ", "damaged": "DAMAGED   ", "incomplete": "incomplete"}
        for r in results:
            print(f"{shown[r['state']]}  {r['path']}"
                  + ("  (an interrupted build: rebuilt on next use)" if r["state"] == "incomplete" else ""))
        print(f"{len(results)} file(s) checked by sha256, {len(bad)} damaged"
              + ("; 'zoo cache prune' removes them, and the next use rebuilds them" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


def _cached_name(name: str) -> str:
    """The canonical name of an installed model, else ``name`` itself (a model whose plugin is gone)."""
    registry = default_registry()
    return registry.get(name).name if name in registry else name.strip().lower()


def cmd_cache_rm(args: argparse.Namespace) -> int:
    freed = 0
    for entry in _selected_entries(args.names):
        freed += cache.remove(entry.folder)
        print(f"removed {entry.name}/{entry.key}")
    print(f"freed {_size(freed)}", file=sys.stderr)
    return 0


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from zoo.convert import is_current

    registry = default_registry()
    removed = cache.prune(lambda entry: is_current(entry, registry), downloads_too=args.downloads,
                          dry_run=args.dry_run)
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
            raise UsageError(f"'zoo cache clear' deletes every cached model and download in {root}; "
                             f"pass --yes to confirm when not at a terminal")
        if input(f"delete every cached model and download in {root}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    freed = sum(cache.remove(e.folder) for e in cache.entries())
    freed += sum(cache.remove(p) for p in cache.downloads())
    freed += sum(cache.remove(p, wait=False) for p in cache.staging_folders())  # an import running now is kept
    cache.remove_free_locks()
    print(f"freed {_size(freed)} in {root}", file=sys.stderr)
    return 0


# -- parser ------------------------------------------------------------------------------


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", metavar="W",
                        help="a weights variant tag, a checkpoint file, or a URL (with --sha256)")
    parser.add_argument("--sha256", metavar="HEX", help="sha256 of the --weights file or URL")
    parser.add_argument("--labels", metavar="FILE",
                        help="class names, one a line, for weights fine-tuned on other classes (the model is "
                             "built with that many)")
    _precision_argument(parser)


def _precision_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="int8: quantize the float32 model (once, then cached), checked against it on held "
                             "photos and refused if they disagree (default fp32)")


def _provider_names(text: str) -> list[str]:
    """``--providers``' value: names separated by commas."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give execution provider names, comma-separated (e.g. CPUExecutionProvider)")
    return names


class _Deprecated(argparse.Action):
    """An old spelling of an option that appends to a list: it still works, with a warning (once) naming
    ``instead``."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, instead: str, **kwargs: Any) -> None:
        self.instead = instead
        self.warned = False
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if not self.warned:
            print(f"zoo: warning: {option_string} {self.metavar} is deprecated; use {self.instead} {self.metavar}",
                  file=sys.stderr)
            self.warned = True
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])


def _runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--providers", action="extend", type=_provider_names, metavar="P[,P...]",
                        help="onnxruntime execution providers in order of preference, comma-separated, e.g. "
                             "CUDAExecutionProvider,CPUExecutionProvider (default: CUDA when available, else CPU)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="onnxruntime intra-op threads (default: one per physical core)")


def _output_arguments() -> argparse.ArgumentParser:
    """-v and -q, accepted before or after any command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="also show debugging messages")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="show only errors (no progress)")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _output_arguments()
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="Vision models by name, as verified and cached ONNX files.",
        epilog="Environment: ZOO_CACHE_DIR (cache location), ZOO_OFFLINE=1 (no network), ZOO_MIRROR=URL (fetch "
        "files from this base URL), ZOO_LOAD_PLUGINS=a,b (load only these plugins), ZOO_DISABLE_PLUGIN_AUTOLOAD=1 "
        "(load no plugin by entry point), ZOO_MAX_PIXELS (largest image, in pixels), ZOO_LOCK_TIMEOUT (seconds to "
        "wait for another process's build; default: as long as it runs). 'zoo COMMAND --help' explains a command.",
        parents=[common],
    )
    parser.set_defaults(func=None, help_parser=parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {zoo.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int] | None, help: str,
                description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description, parents=[common])
        sub.set_defaults(func=func, help_parser=sub)
        return sub

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
    _runtime_arguments(p)
    p.add_argument("--json", action="store_true", help="print the cache metadata as JSON")

    p = command("predict", cmd_predict, "predict images with a model (classes, boxes, masks, ages, ...)",
                "Run NAME on images: files, folders (their image files) and globs. Every argument is checked before "
                "the model is built. An image that cannot be decoded is reported on stderr and the others go on; the "
                "exit status is 1 if any failed. Boxes and masks are in the original image's pixels. Options not "
                "named here go with --option KEY=VALUE; 'zoo info NAME' lists those the model takes.")
    p.add_argument("name", metavar="NAME", help="model name or alias")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file, folder or glob (URLs are not fetched)")
    p.add_argument("-k", "--topk", type=int, metavar="K", help="classes to show per image (classifiers; default 5)")
    p.add_argument("--score-threshold", type=float, metavar="S", help="keep detections scoring at least S (detectors)")
    p.add_argument("--iou-threshold", type=float, metavar="T",
                   help="non-maximum suppression drops a box overlapping a better one by more than T (detectors)")
    p.add_argument("--max-detections", type=int, metavar="N", help="keep the N best detections (detectors)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="any option of the model's postprocessing (VALUE read as JSON if it parses); repeatable")
    p.add_argument("-o", action=_Deprecated, dest="option", instead="--option", metavar="KEY=VALUE",
                   help=argparse.SUPPRESS)  # -o is --output in export and bundle export
    p.add_argument("--save", metavar="DIR",
                   help="write each image annotated with its result to DIR under its own file name (PNG unless it is "
                        "a PNG or JPEG); a name that another image of the run has, or an input image itself (DIR may "
                        "be the images' folder), gets a number: x-2.png, x-3.png. stderr says which image went where. "
                        "An existing file is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="with --save: replace existing files (never an input image)")
    p.add_argument("--runtime", choices=("onnxruntime", "opencv"), default="onnxruntime",
                   help="inference engine (default onnxruntime)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per batch (default 8)")
    _weights_arguments(p)
    _runtime_arguments(p)
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="predict on Ray Data (pip install 'onnx-zoo[ray]'), into --output: a local Ray without ADDRESS, "
                        "a cluster's with 'auto', HOST:PORT or ray://HOST:PORT; the images must be readable from "
                        "every node")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="Ray workers, each with one CPU and its own copy of the model (default 1)")
    p.add_argument("--output", metavar="FILE.parquet",
                   help="with --ray: write one row per image (path, the result's fields, error) to this Parquet file")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON list at the end, one entry per image")
    out.add_argument("--jsonl", action="store_true",
                     help="print one JSON object per image as soon as it is done (JSON Lines, for streaming)")

    p = command("pull", cmd_pull, "download and convert models ahead of time (a container build step)",
                "Fetch the weights and export each model (or fetch its prebuilt file) into the cache, as the first "
                "'zoo predict' would, so that later runs start at once, offline too (ZOO_OFFLINE=1). NAME is a name or a "
                "glob; --task and --plugin select or filter. A model that fails is reported and the others go on; the "
                "exit status is 1 if any failed.")
    p.add_argument("names", nargs="*", metavar="NAME", help="model names or globs (default with --task/--plugin: all)")
    p.add_argument("--task", help="only models of this task, e.g. image-classification")
    p.add_argument("--plugin", help="only models of this plugin (its name or its distribution's)")
    _precision_argument(p)

    p = command("serve", cmd_serve, "serve models over HTTP, with a web page to try them",
                "Serve models over HTTP (pip install 'onnx-zoo[serve]'). The page at / tries them in a browser; "
                "POST /v1/models/NAME/predict takes an image as the body (curl --data-binary @photo.jpg -H "
                "'Content-Type: image/jpeg') or as the multipart field 'image', options as query parameters; "
                "/openapi.json documents every endpoint. Models load in the background: /readyz answers 200 once "
                "they are loaded. Concurrent requests for a model are batched up to --max-batch-size images or "
                "--max-wait-ms. SIGTERM or Ctrl-C finishes the requests in flight, then stops.")
    p.add_argument("names", nargs="*", metavar="NAME", help="models to load at start (any installed model with "
                                                            "--on-demand)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument("--on-demand", action="store_true", help="also load any installed model on its first request")
    p.add_argument("--token", default=os.environ.get("ZOO_SERVE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' on the API and /metrics (default: $ZOO_SERVE_TOKEN, "
                        "better than this flag, which other users see in ps)")
    p.add_argument("--max-batch-size", type=int, default=SERVE_DEFAULTS["max_batch_size"], metavar="N",
                   help=f"most images per model run (default {SERVE_DEFAULTS['max_batch_size']})")
    p.add_argument("--max-wait-ms", type=float, default=SERVE_DEFAULTS["max_wait_ms"], metavar="MS",
                   help=f"how long a request waits for others to batch with (default {SERVE_DEFAULTS['max_wait_ms']:g})")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="requests a model holds once their body is in (decoding, waiting or running); the next is "
                        "answered 503 at once, before its body is read (default 64)")
    p.add_argument("--max-body", type=int, default=20 * 1024 * 1024, metavar="BYTES",
                   help="largest request body, else 413 (default 20 MiB)")
    p.add_argument("--max-receiving", type=int, default=32, metavar="N",
                   help="request bodies received at once, for all models; the next is answered 503 at once "
                        "(default 32)")
    p.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                   help="most time a request body may take to arrive; past it the answer is 408 and the connection "
                        "is closed, freeing its place (default 30 s)")
    p.add_argument("--max-pixels-in-flight", type=int, default=100_000_000, metavar="PIXELS",
                   help="decoded pixels held at once by all requests, read from each image's header before it is "
                        "decoded: a request that does not fit waits up to --timeout, then is answered 503; an image "
                        "larger than this is 413 (default 100000000, 100 megapixels: memory peaks at most 1.1 GiB "
                        "over the server's size at rest)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="answer 504 when a prediction takes longer, 503 when a model loads or an image waits for "
                        "pixels longer (default 30 s)")
    p.add_argument("--runtime", choices=("onnxruntime", "opencv"), default="onnxruntime",
                   help="inference engine (default onnxruntime)")
    p.add_argument("--threads", type=int, metavar="N", help="threads per model run (default: the runtime's)")

    p = command("cache", None, "show, verify and clean the cache",
                "Manage the cache of converted models and downloads. Its location is ZOO_CACHE_DIR, else the "
                "user cache directory ('zoo cache dir').")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    def action(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])
        sub.set_defaults(func=func, help_parser=sub)
        return sub

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

    p = command("bundle", None, "move cached models to machines without internet, in one verified archive",
                "Write cached models into one archive (a bundle), and add a bundle's models to this machine's cache. "
                "'zoo bundle export resnet50 -o models.zoo' on a machine with internet (models not cached yet are "
                "pulled first), then 'zoo bundle import models.zoo' on the offline one: every file is checked "
                "against the manifest's sha256 before anything enters the cache, and ZOO_OFFLINE=1 zoo predict then "
                "needs no network.")
    bundles = p.add_subparsers(dest="action", metavar="ACTION")

    def bundle_action(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = bundles.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])
        sub.set_defaults(func=func, help_parser=sub)
        return sub

    a = bundle_action("export", cmd_bundle_export, "write the cached entries of models (pulled first if not cached) "
                                                   "into a bundle")
    a.add_argument("names", nargs="*", metavar="NAME", help="model names or globs (default with --task/--plugin: all)")
    a.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write, e.g. models.zoo")
    a.add_argument("--task", help="only models of this task, e.g. image-classification")
    a.add_argument("--plugin", help="only models of this plugin (its name or its distribution's)")
    _precision_argument(a)
    a = bundle_action("import", cmd_bundle_import, "verify a bundle and add its entries to the cache")
    a.add_argument("bundle", metavar="FILE", help="a bundle written by 'zoo bundle export'")
    a = bundle_action("list", cmd_bundle_list, "list the entries of a bundle and the zoo version that made it")
    a.add_argument("bundle", metavar="FILE", help="a bundle written by 'zoo bundle export'")
    a.add_argument("--json", action="store_true", help="print the manifest as JSON")

    p = command("plugins", cmd_plugins, "list plugins with their distribution, version, hooks and errors",
                "List every plugin that was tried, including those that failed to import or register, with the reason.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


_handler: logging.Handler | None = None


def _configure_logging(verbose: bool, quiet: bool) -> None:
    """Send the ``zoo`` logger's messages to stderr as ``zoo: ...``; other libraries' loggers are left alone."""
    global _handler
    logger = logging.getLogger("zoo")
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("zoo: %(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.func is None:  # `zoo` or `zoo cache` alone: show what there is to do
        args.help_parser.print_help()
        return 0
    args.verbose, args.quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    _configure_logging(args.verbose, args.quiet)
    hint = weights_hint.set("--weights FILE" if "weights" in vars(args) else None)  # advice names only our options
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
    finally:
        weights_hint.reset(hint)


if __name__ == "__main__":
    sys.exit(main())

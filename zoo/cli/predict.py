"""``zoo predict``: images through a model, here or on Ray, with results printed, as JSON or drawn."""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.cli.arguments import (
    Commands,
    Deprecated,
    build_options,
    described,
    file_arguments,
    labels_of,
    runtime_argument,
    runtime_arguments,
    weights_arguments,
)
from zoo.cli.render import (
    format_result,
    print_json,
    progress,
    write,
)
from zoo.errors import UsageError
from zoo.registry import default_registry

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".pbm", ".pgm", ".ppm")


#: Cloud storage that Ray Data reads (``zoo predict --ray``) and plain ``zoo predict`` does not.
REMOTE_SCHEMES = ("s3", "gs", "gcs", "abfs", "hdfs")


def _expand_images(patterns: Sequence[str], *, remote: bool = False, recursive: bool = False) -> list[str]:
    """Paths from the command line: folders give their image files (``recursive``: in their subfolders too; hidden
    files and folders skipped, and the other files counted in a debug line), globs their matches, sorted.

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
            images = _folder_images(path, recursive)
            if not images:
                problems.append(f"folder {pattern!r} holds no image files ({', '.join(IMAGE_SUFFIXES[:4])}, ...)"
                                + ("" if recursive else "; --recursive also looks in its subfolders"))
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


def _folder_images(folder: Path, recursive: bool) -> list[str]:
    """The image files of ``folder`` (and of its subfolders when ``recursive``), hidden ones skipped, sorted."""
    files = [p for p in (folder.rglob("*") if recursive else folder.iterdir())
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    images = sorted(str(p) for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(images) < len(files):
        logging.getLogger("zoo").debug("%s: %d file(s) skipped, not images by their suffix (%s, ...)", folder,
                                       len(files) - len(images), ", ".join(IMAGE_SUFFIXES[:4]))
    return images


def cmd_predict(args: argparse.Namespace) -> int:
    from zoo import images
    from zoo._fields import check_count
    from zoo.errors import ZooInputError
    from zoo.results import jsonable
    from zoo.runtime import check_runtime

    check_count("--batch-size", args.batch_size)
    check_runtime(args.runtime, args.providers, args.precision)  # with --ray too, before any worker starts
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
    paths = _expand_images(args.images, recursive=args.recursive)
    saved = _save_paths(paths, args.save, overwrite=args.overwrite) if args.save else {}
    from zoo.model import open_model, predict_each

    model = open_model(args.name, build_options(args), runtime=args.runtime, providers=args.providers,
                       threads=args.threads, batch_size=args.batch_size, **described(args))
    from zoo.tasks import merge_options

    merge_options(model.spec, model.options, options)  # a wrong option fails before any image is read
    if args.save and model.task is not None and not hasattr(model.task.result, "draw"):
        raise UsageError(f"the results of {model.spec.name} ({model.task.result.__name__}) have no draw(); --save "
                         f"cannot picture them")
    rows: list[dict[str, Any]] = []
    failed = 0
    names = _names_by_file(paths)  # a file given twice (a link, another spelling) is predicted once

    def report(name: str, answer: Any, image: Any, bar: Any) -> None:
        nonlocal failed
        row: dict[str, Any] = {"image": name}
        if isinstance(answer, ZooInputError):  # this image alone could not be used
            write(f"zoo: error: {answer}", bar, sys.stderr)
            row["error"] = str(answer)
            failed += 1
        else:
            if args.save:
                row["saved"] = _save(answer, image, saved[name])
                if not args.quiet:
                    write(f"zoo: saved {name} as {row['saved']}", bar, sys.stderr)
            row["result"] = jsonable(answer) if args.json or args.jsonl else answer
        if args.jsonl:
            write(json.dumps(row, default=str, ensure_ascii=False), bar)
        elif args.json:
            rows.append(row)
        elif "result" in row:
            write(format_result(name, row["result"]), bar)

    unique = list(names)
    with progress(len(paths), args) as bar:
        for start in range(0, len(unique), args.batch_size):  # a batch at a time: memory stays flat
            chunk = unique[start:start + args.batch_size]
            loaded: dict[str, Any] = {}
            for path in chunk:
                try:
                    loaded[path] = images.load(path)
                except ZooInputError as error:
                    loaded[path] = error
            pixels = [p for p in loaded.values() if not isinstance(p, ZooInputError)]
            answers = iter(predict_each(model, pixels, **options))
            for path, image in loaded.items():
                answer = image if isinstance(image, ZooInputError) else next(answers)
                for name in names[path]:
                    report(name, answer, image, bar)
                bar.update(len(names[path]))
    if args.json:
        print_json(rows)
    if failed:
        print(f"zoo: {failed} of {len(paths)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _names_by_file(paths: Sequence[str]) -> dict[str, list[str]]:
    """Each file's first name among ``paths``, with every name it is given by (itself first), in order: the same
    file (by device and inode) named twice is one entry."""
    by_file: dict[Any, str] = {}
    names: dict[str, list[str]] = {}
    for path in paths:
        first = by_file.setdefault(_file_id(Path(path)) or path, path)
        names.setdefault(first, []).append(path)
    return names


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
    paths = [p if "://" in p else str(Path(p).resolve()) for p in _expand_images(args.images, remote=True, recursive=args.recursive)]
    with progress(0 if any("://" in p for p in paths) else len(paths), args) as bar:  # a URI: a folder, size unknown
        rows, failed = zoo.ray.predict_files(
            paths, args.name, output, address=args.ray or None, progress=bar.update,
            batch_size=args.batch_size, concurrency=args.workers, options=options, weights=_whole(args.weights),
            sha256=args.sha256, labels=labels_of(args), precision=args.precision, providers=args.providers,
            threads=args.threads, **described(args))
    if not args.quiet:
        print(f"zoo: {rows} row(s) written to {output}" + (f", {failed} of them errors" if failed else ""),
              file=sys.stderr)
    return 1 if failed else 0


def _whole(weights: str | None) -> str | None:
    """``--weights`` as Ray's workers must see it: a local file by its whole path (they do not share our folder); a
    tag or a URL as it is."""
    return str(Path(weights).expanduser().resolve()) if weights and Path(weights).expanduser().is_file() else weights


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
        from zoo import cache

        registry = default_registry()
        match = cache.ENTRY.fullmatch(args.name.strip())
        spec = registry.get(match["name"] if match else args.name)  # NAME/KEY: an entry of NAME
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


def add_parsers(commands: Commands) -> None:
    """Add this module's commands to the ``zoo`` parser."""
    command = commands.command
    p = command("predict", cmd_predict, "predict images with a model (classes, boxes, masks, ages, ...)",
                "Run NAME on images: files, folders (their image files) and globs. Every argument is checked before "
                "the model is built. An image that cannot be decoded is reported on stderr and the others go on; the "
                "exit status is 1 if any failed. Boxes and masks are in the original image's pixels. Options not "
                "named here go with --option KEY=VALUE; 'zoo info NAME' lists those the model takes.")
    p.add_argument("name", metavar="NAME", help="a model's name or alias, NAME/KEY (a cache entry, as 'zoo cache "
                                                "list' shows it), or an ONNX file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file, folder or glob (URLs are not fetched)")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="a folder gives the images of its subfolders too (hidden files and folders are skipped; -v "
                        "counts the files skipped for not being images)")
    p.add_argument("-k", "--topk", type=int, metavar="K", help="classes to show per image (classifiers; default 5)")
    p.add_argument("--score-threshold", type=float, metavar="S", help="keep detections scoring at least S (detectors)")
    p.add_argument("--iou-threshold", type=float, metavar="T",
                   help="non-maximum suppression drops a box overlapping a better one by more than T (detectors)")
    p.add_argument("--max-detections", type=int, metavar="N", help="keep the N best detections (detectors)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="any option of the model's postprocessing (VALUE read as the type of the option's default: a number, true/false, a list like (0.5,0.6)); repeatable")
    p.add_argument("-o", action=Deprecated, dest="option", instead="--option", metavar="KEY=VALUE",
                   help=argparse.SUPPRESS)  # -o is --output in export and bundle export
    p.add_argument("--save", metavar="DIR",
                   help="write each image annotated with its result to DIR under its own file name (PNG unless it is "
                        "a PNG or JPEG); a name that another image of the run has, or an input image itself (DIR may "
                        "be the images' folder), gets a number: x-2.png, x-3.png. stderr says which image went where. "
                        "An existing file is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="with --save: replace existing files (never an input image)")
    runtime_argument(p)
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="images per batch (default 8)")
    weights_arguments(p, runs=True)
    runtime_arguments(p)
    file_arguments(p)
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

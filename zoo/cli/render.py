"""How the command line shows things: tables, lines, sizes, JSON, a model's parity report, results (their
``summary()``), and a progress bar that stays out of pipes."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from typing import Any


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
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


def human_size(n: int) -> str:
    """Bytes for people: 4.7 MiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def print_lines(lines: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def show_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "none"


def preprocess_lines(pre: Any) -> list[tuple[str, str]]:
    """How ``zoo info`` states a :class:`~zoo.preprocess.Preprocess`."""
    if pre.resize is None:
        resize = "none (the image's own size" + (f", padded to a multiple of {pre.multiple})" if pre.multiple > 1
                                                 else ")")
    elif pre.resize == "cover":
        resize = "scaled to cover the crop (cv2.dnn.blobFromImage with crop=True)"
    elif pre.resize == "letterbox":
        resize = (f"letterbox: fit inside {pre.size[0]}x{pre.size[1]}, padded with {pre.pad_value:g}"
                  f"{' (after normalisation)' if pre.pad_normalized else ''}, image at the {pre.pad_position}")
    elif pre.resize == "pad-resize":
        resize = (f"padded to a square with {pre.pad_value:g} (image at the {pre.pad_position}), then resized to "
                  f"{pre.size[0]}x{pre.size[1]}")
    elif pre.resize == "height":
        resize = (f"height {pre.size[0]}, width from the aspect ratio rounded up, padded on the right to at least "
                  f"{pre.size[1]}")
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
             ("resize", resize if pre.resize is None else
              f"{resize}, {pre.interpolation}{' with antialias' if pre.antialias else ''}")]
    if pre.min_size is not None:
        lines.append(("at least", f"{pre.min_size[0]}x{pre.min_size[1]} once resized; smaller is refused"))
    lines.append(("crop", "none" if pre.crop is None else f"centre {pre.crop[0]}x{pre.crop[1]}"))
    return lines


def built_from(entry: dict[str, Any]) -> str:
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


def int8_speed(q: dict[str, Any]) -> str:
    """The speed-up an int8 entry's report stores, with its spread over the interleaved blocks it was measured
    in (a report from before they were measured so says it is one pair of medians)."""
    times = f"{q['int8_ms']:.3g} ms against {q['fp32_ms']:.3g} ms in float32"
    if "timing" not in q:
        return f"{times} ({q['speedup']:.2f}x), one image, one pair of medians: not a reliable speed-up"
    low, high = q["speedup_range"]
    spread = f"{low:.2f}x to {high:.2f}x over {q['timing']['blocks']} interleaved blocks"
    return f"{q['speedup']:.2f}x float32's ({spread}; {times}), one image, measured once, where the entry was built"


def tuning_rows(record: dict[str, Any]) -> list[list[str]]:
    """A tuning's table (:func:`zoo.tune.tune`'s record): runtime, precision, milliseconds, speed-up over
    onnxruntime float32 with its range, the agreement check's figures, and chosen, slower or why it was refused."""
    rows = []
    for row in record["rows"]:
        figures = row.get("figures") or {}
        agreement = (f"{figures['agreement']:.1%}, max change {figures['max_difference']:.3g}"
                     if "agreement" in figures else "-")
        speed = (f"{row['speedup']:.2f}x ({row['speedup_range'][0]:.2f}-{row['speedup_range'][1]:.2f})"
                 if row["speedup"] is not None else "-")
        state = ("CHOSEN" if row["chosen"] else f"refused: {row['refused']}" if row["refused"] else
                 f"under {record['timing']['margin']:.2f}x" if row["speedup"] < record["timing"]["margin"] else
                 "slower than the chosen")
        rows.append([row["runtime"], row["precision"], f"{row['ms']:.3g}" if row["ms"] is not None else "-", speed,
                     agreement, state])
    return rows


def check_lines(meta: dict[str, Any], machine: str) -> list[tuple[str, str]]:
    """The runtimes and precisions checked on this machine (``machine``: :func:`zoo.gate.machine_key`), and its
    tunings with the table that decided each."""
    lines = []
    for key, record in sorted(meta.get("checks", {}).items()):
        if record.get("machine") != machine:
            continue
        verdict = f"REFUSED: {record['refused']}" if record.get("refused") else "passed"
        lines.append((f"{record['runtime']} {record['precision']}",
                      f"{verdict} (agreement {record['agreement']:.1%}, largest change {record['max_difference']:.3g}, "
                      f"{record['images']} held images, this machine)"))
    for key, record in sorted(meta.get("tuned", {}).items()):
        if record.get("machine_key") == machine:
            choice = record["choice"]
            lines.append(("tuned", f"{choice['runtime']} {choice['precision']} on this machine ({record['created']}, "
                                   f"{key.split('/', 1)[1]}), from:"))
            lines += [(f"  {runtime} {precision}", f"{ms} ms, {speed}, agreement {agreement}: {state}")
                      for runtime, precision, ms, speed, agreement, state in tuning_rows(record)]
    return lines


def parity_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    if "int8" in meta:
        q = meta["int8"]
        settings = meta["key_inputs"]["precision"]
        made = (f"{settings['format']}, {settings['method']} calibration on {q['calibration_images']} images, from "
                f"entry {meta['source_entry']}")
        agrees = (f"top-1 agrees with float32 on {q['agreement']:.1%} of {q['held_images']} held images, largest "
                  f"output change {q['max_difference']:.1%} of the outputs' range" if "agreement" in q else
                  "compared with float32 by its task, once on each machine (its checks)")
        speed = int8_speed(q)
        return [("int8", made), ("agreement", agrees), ("speed", speed)]
    if "parity" not in meta:
        onnx = meta.get("onnx", {})
        return [("source", f"prebuilt ONNX {onnx.get('file')} (sha256 {onnx.get('sha256')}, verified)")]
    lines = [("export", f"{meta['exporter']} exporter, opset {meta['opset']}, {meta['simplify_note']}")]
    if meta.get("not_compared"):
        lines.append(("parity", f"NOT COMPARED: PyTorch gave nothing to compare on any of the {meta['samples']} "
                                f"inputs ({counted(meta['compared'])}); the export is unverified"))
        return lines
    for output, p in meta["parity"].items():
        if p["max_abs"] is None:  # detections of variable count, matched one by one by the task
            detail = p["note"] or "compared as results"
        else:
            top1 = f", top-1 agreement {p['top1_agreement']:.0%}" if p["top1_agreement"] is not None else ""
            detail = f"max abs diff {p['max_abs']:.3g}, max rel diff {p['max_rel']:.3g}{top1}"
        lines.append(("parity", f"{output}: {detail} ({meta['samples']} inputs: random and a photo)"))
    if any(meta.get("compared", ())):
        lines.append(("compared", counted(meta["compared"])))
    return lines


def counted(compared: list[dict[str, int]]) -> str:
    """What an export's parity inputs held, input by input: ``detections 0, 7, 3; masks 0, 7, 3``."""
    kinds = dict.fromkeys(kind for counts in compared for kind in counts)
    return "; ".join(f"{kind} per input {', '.join(str(c.get(kind, 0)) for c in compared)}" for kind in kinds)


def format_result(image: str, result: Any) -> str:
    """One line per image: its result's ``summary()`` (any task's, a plugin's too), else its outputs as JSON."""
    from zoo.results import jsonable

    summary = getattr(result, "summary", None)
    return f"{image}: {summary() if callable(summary) else json.dumps(jsonable(result))}"


def progress(total: int, args: argparse.Namespace, unit: str = "image") -> Any:
    """A progress bar on stderr for many items at a terminal; disabled (its calls do nothing) when piped, quiet
    or for fewer than 2 items. Bytes (``unit="B"``) are counted in k, M, ... of 1024."""
    from tqdm import tqdm

    shown = total >= 2 and not args.quiet and sys.stderr.isatty()
    return tqdm(total=total, unit=unit, unit_scale=unit == "B", unit_divisor=1024, file=sys.stderr, leave=False,
                dynamic_ncols=True, disable=not shown)


def write(text: str, bar: Any, file: Any = None) -> None:
    """Print a line (on stdout unless ``file``), above the progress bar if it is shown."""
    file = sys.stdout if file is None else file
    if not bar.disable:
        bar.write(text, file=file)
    else:
        print(text, file=file)

"""Export every torchvision model with random weights and check the ONNX file.

    python plugins/zoo-torchvision/check_exports.py                 # all, results in exports.jsonl
    python plugins/zoo-torchvision/check_exports.py resnet50 vit_b_16
    python plugins/zoo-torchvision/check_exports.py --table         # the Markdown table of the results

One export per distinct ONNX graph: weights variants of a classifier that share its
constructor arguments and input size give the same graph, so the default variant stands for
them (86 exports cover the 114 variants); each of the 19 detector and segmenter variants is
its own row (their builders differ by weights variant, e.g. frozen BatchNorm's epsilon). For each: build through the plugin, perturb the
weights and calibrate BatchNorm (:func:`zoo.testing.randomize`), export as ``zoo.get`` does
(TorchScript exporter, opset 17, onnxsim, PyTorch-vs-onnxruntime parity on random inputs
and a photo), then load the file with OpenCV DNN and compare with onnxruntime, and time
onnxruntime at batch 1. Results are appended to a JSON-lines file, so an interrupted run
resumes where it stopped. ``tests/test_torchvision_exports.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zoo_torchvision

from zoo import export, exportcheck, testing
from zoo.convert import sample_inputs
from zoo.spec import ModelSpec

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "exports.jsonl"


def graph_key(spec: ModelSpec) -> tuple[Any, ...]:
    info = spec.extra["torchvision"]
    if spec.task != "image-classification":
        return info["arch"], info["weights"]
    return info["arch"], tuple(sorted(info["builder_kwargs"].items())), spec.preprocess.crop


def representatives() -> dict[str, list[str]]:
    """Default-variant-first: one spec name per distinct graph, with the variant names it stands for."""
    specs = sorted(zoo_torchvision.load_specs(), key=lambda s: (s.tag is not None, s.name))
    groups: dict[tuple[Any, ...], list[str]] = {}
    for spec in specs:
        groups.setdefault(graph_key(spec), []).append(spec.name)
    return {names[0]: names for names in sorted(groups.values())}


def randomized(spec: ModelSpec) -> ModelSpec:
    """``spec`` whose build is the plugin's, with perturbed random weights."""

    def build(spec: ModelSpec, weights: Path | None) -> Any:
        import torch
        from zoo_torchvision import graphs

        torch.manual_seed(0)  # the initialisation before the perturbation: the same model every run
        module = testing.randomize(zoo_torchvision.build(spec, None), spec)
        if isinstance(module, graphs.Detector):  # detections to compare, not ties (see graphs.decisive)
            graphs.decisive(module, torch.from_numpy(sample_inputs(spec)))
        return module

    return dataclasses.replace(spec, build=build)


def check(name: str, workdir: Path, samples: int = 2) -> dict[str, Any]:
    """Export ``name`` with random weights into ``workdir`` and return its row of results."""
    spec = next(s for s in zoo_torchvision.load_specs() if s.name == name)
    return exportcheck.check(randomized(spec), workdir, samples=samples,
                             row={"params_m": round(spec.metrics["params"] / 1e6, 1), "gflops": spec.metrics["gflops"]})


def table(rows: list[dict[str, Any]], variants: dict[str, list[str]]) -> str:
    """The Markdown table of the classifiers' ``rows`` (in the order of ``variants``)."""

    def cells(row: dict[str, Any]) -> list[str]:
        opencv = row["opencv"]
        if opencv in ("agrees", "differs"):
            opencv += f" ({row['opencv_max_rel']:.1e})"
        over = row["size_mb"] * 1e6 >= export.PROTOBUF_LIMIT  # protobuf cannot hold it: onnxsim cannot either
        simplified = "yes" if row["simplified"] else "no (over 2 GB)" if over else "no"
        return [simplified, f"{row['max_rel']:.1e}, {row['top1']:.0%}", opencv, f"{row['ort_ms']:g}"]

    also = {name: ", ".join(n.split(".", 1)[1] for n in names[1:]) for name, names in variants.items()}
    return _markdown("| model | also stands for | input | exported | onnxsim | parity: max diff / output scale, "
                     "top-1 | OpenCV DNN | onnxruntime ms/image |", rows, also, cells)


def task_table(rows: list[dict[str, Any]], tasks: dict[str, str]) -> str:
    """The Markdown table of the detectors' and segmenters' ``rows``: ``tasks`` maps each name to its task."""

    def cells(row: dict[str, Any]) -> list[str]:
        parity = (f"max diff / scale {row['max_rel']:.1e}" if row["max_rel"] is not None
                  else "equal as results (boxes IoU >= 0.99)")
        opencv = row["opencv"] + (f": {row['opencv_error']}" if "opencv_error" in row else "")
        return ["yes" if row["simplified"] else "no", parity, opencv, f"{row['ort_ms']:g}"]

    return _markdown("| model | task | input (the sample photo) | exported | onnxsim | parity with PyTorch, photo at "
                     "3 sizes | OpenCV DNN | onnxruntime ms/image |", rows, tasks, cells)


def _markdown(header: str, rows: list[dict[str, Any]], second: dict[str, str],
              cells: Callable[[dict[str, Any]], list[str]]) -> str:
    """One line per name of ``second`` (with its second column): not run, not exported, or the row's ``cells``."""
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    by_name = {row["model"]: row for row in rows}  # a model checked again: its last row
    for name, column in second.items():
        row = by_name.get(name)
        if row is None:
            lines.append(f"| {name} | {column} | | not run | | | | |")
            continue
        size = "x".join(str(n) for n in row["input"][1:])
        if not row["exported"]:
            lines.append(f"| {name} | {column} | {size} | **no**: {row['error']} | | | | |")
            continue
        lines.append(f"| {name} | {column} | {size} | yes | " + " | ".join(cells(row)) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="models to check (default: one per distinct graph, all 105)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file of results (appended)")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the results and exit")
    parser.add_argument("--runtimes", action="store_true",
                        help="write zoo_torchvision/runtimes.toml (what OpenCV DNN and OpenVINO cannot run) from the results "
                             "and exit")
    parser.add_argument("--again", action="store_true", help="re-check models that already have a result")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: check one model, print its row
    args = parser.parse_args(argv)
    if args.one:
        exportcheck.print_row(check, args.one)
        return 0
    variants = representatives()
    if args.runtimes:
        text = exportcheck.unsupported(exportcheck.load(args.results), variants,
                                       "check_exports.py --runtimes from its results (exports.jsonl)")
        (HERE / "zoo_torchvision" / "runtimes.toml").write_text(text, encoding="utf-8")
        return 0
    if args.table:
        rows = exportcheck.load(args.results)
        tasks = {s.name: s.task for s in zoo_torchvision.load_specs() if s.task != "image-classification"}
        print(table(rows, {n: v for n, v in variants.items() if n not in tasks}))
        print()
        print(task_table(rows, {n: tasks[n] for n in variants if n in tasks}))
        return 0
    done = set() if args.again else {row["model"] for row in exportcheck.load(args.results)}
    todo = [n for n in (args.names or variants) if n not in done]
    failures = 0
    for i, name in enumerate(todo, 1):
        t0 = time.perf_counter()
        row = exportcheck.check_in_child(__file__, name)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        failures += not row["exported"] or row.get("opencv") != "agrees"
        exportcheck.append(args.results, row)
        status = "ok" if row["exported"] else "FAILED " + row["error"][:200]
        print(f"[{i}/{len(todo)}] {name}: {status}, opencv {row.get('opencv', '-')}, {row['seconds']} s",
              flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

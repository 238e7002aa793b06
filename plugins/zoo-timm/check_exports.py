"""Export one tag per timm architecture with random weights and check the ONNX file.

    python plugins/zoo-timm/check_exports.py                        # every architecture, smallest first
    python plugins/zoo-timm/check_exports.py resnet50 vit_small_patch16_224
    python plugins/zoo-timm/check_exports.py --max-params 100 --limit 50
    python plugins/zoo-timm/check_exports.py --table                # the Markdown table of the results
    python plugins/zoo-timm/check_exports.py --runtimes             # zoo_timm/runtimes.toml from the results

The tags of one architecture share its network (they differ in weights, and some in input size or
number of classes), so one export stands for them all: the architecture's default tag (the spec
registered as ``timm/ARCH``) where it is a classifier, else its first classifier tag, else (an
architecture without a classifier tag) its default embedding model. For each: build through the
plugin, perturb the weights and calibrate BatchNorm (:func:`zoo.testing.randomize`), then
:func:`zoo.exportcheck.check`: export as ``zoo.get`` does (onnxsim, PyTorch-vs-onnxruntime parity
on random inputs and the sample photo), time onnxruntime at batch 1, and compare OpenCV DNN with
onnxruntime. Each architecture runs in a child process with a time limit (``--timeout``), so that
a crash or a hang is one row; rows are appended to ``exports.jsonl``, so an interrupted run resumes
where it stopped. Architectures run smallest first (parameters counted on PyTorch's meta device,
which allocates nothing), so that a run cut short covers the most; ``--max-params`` records the
larger ones as skipped. ``tests/test_timm_exports.py`` runs the same check on one architecture
per timm model module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
import tomllib
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import zoo_timm

from zoo import exportcheck, testing
from zoo.spec import ModelSpec

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "exports.jsonl"
RUNTIMES = HERE / "zoo_timm" / "runtimes.toml"
#: Seconds one architecture may take (build, export, parity, timing, OpenCV) before it is a "timed out" row.
TIMEOUT = 600


# -- which tag stands for each architecture ---------------------------------------------------


def arch_of(spec: ModelSpec) -> str:
    return spec.extra["timm"]["model"].partition(".")[0]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One timm architecture: the spec checked for it, and every name its graph stands for."""

    arch: str
    spec: ModelSpec
    names: tuple[str, ...]  # every timm/ARCH.* name and embedding variant, the checked one first


def architectures(specs: Iterable[ModelSpec] | None = None) -> dict[str, Architecture]:
    """Every architecture of the catalogue (in its order), by name, with the spec that stands for it."""
    groups: dict[str, list[ModelSpec]] = {}
    for spec in specs if specs is not None else zoo_timm.load_specs():
        groups.setdefault(arch_of(spec), []).append(spec)
    found = {}
    for arch, members in groups.items():
        classifiers = [s for s in members if s.task == "image-classification"]
        default = [s for s in members if f"timm/{arch}" in s.aliases]
        chosen = next((s for s in default if s.task == "image-classification"), None)
        chosen = chosen or (classifiers[0] if classifiers else (default or members)[0])
        found[arch] = Architecture(arch, chosen, (chosen.name, *(s.name for s in members if s is not chosen)))
    return found


def modules() -> dict[str, str]:
    """Each pretrained architecture's timm model module (``timm.models.<module>``), by architecture name."""
    import timm

    return {name.partition(".")[0]: module for module in timm.list_modules()
            for name in timm.list_models(module=module, pretrained=True)}


def by_module(archs: Mapping[str, Architecture], params: Mapping[str, float]) -> dict[str, Architecture]:
    """One architecture per timm model module, the one with the fewest parameters (``params``: by spec name),
    modules in the order of their smallest architecture."""
    module_of = modules()
    smallest: dict[str, Architecture] = {}
    for arch in sorted(archs.values(), key=lambda a: (params[a.spec.name], a.arch)):
        smallest.setdefault(module_of[arch.arch], arch)
    return smallest


def variants(archs: Mapping[str, Architecture]) -> dict[str, list[str]]:
    """The checked spec's name -> every name of its architecture (what :func:`exportcheck.unsupported` covers)."""
    return {a.spec.name: list(a.names) for a in archs.values()}


# -- parameter counts, without allocating -----------------------------------------------------


def meta_params(spec: ModelSpec) -> int:
    """The parameters of the network ``spec`` builds, counted on PyTorch's meta device (no memory, no init)."""
    import timm

    info = spec.extra["timm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(info["model"], pretrained=False, num_classes=info["classes"], device="meta")
    return sum(p.numel() for p in model.parameters())


def parameter_counts(archs: Iterable[Architecture], known: Mapping[str, float] | None = None) -> dict[str, float]:
    """Millions of parameters of each architecture's checked spec, by spec name: ``known`` (from earlier rows), else
    a cache in the temporary folder (one file per timm version), else counted on the meta device (a few minutes
    for the whole catalogue) and cached."""
    import timm

    cache = Path(tempfile.gettempdir()) / f"zoo-timm-params-{timm.__version__}.json"
    try:
        counts: dict[str, float] = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        counts = {}
    counts.update(known or {})
    missing = [a.spec for a in archs if a.spec.name not in counts]
    for i, spec in enumerate(missing, 1):
        counts[spec.name] = round(meta_params(spec) / 1e6, 3)
        if i % 100 == 0:
            print(f"counting parameters on the meta device: {i}/{len(missing)}", file=sys.stderr, flush=True)
    if missing:
        cache.write_text(json.dumps(counts), encoding="utf-8")
    return counts


def machine() -> str:
    """This machine's memory and cores, as a skipped row says them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{round(memory)} GiB, {os.cpu_count()} cores"


# -- one architecture -------------------------------------------------------------------------


def randomized(spec: ModelSpec, counted: dict[str, int] | None = None) -> ModelSpec:
    """``spec`` whose build is the plugin's, with perturbed random weights; ``counted['params']`` gets the
    number of parameters of the model built."""

    def build(spec: ModelSpec, weights: Path | None) -> Any:
        import torch

        torch.manual_seed(0)  # the initialisation before the perturbation: the same model every run
        module = zoo_timm.build(spec, None)
        if counted is not None:
            counted["params"] = sum(p.numel() for p in module.parameters())
        return testing.randomize(module, spec)

    return dataclasses.replace(spec, build=build)


def spec_named(name: str) -> ModelSpec:
    """The plugin's spec called ``name`` (``timm/ARCH.TAG`` or ``timm/ARCH-embedding.TAG``)."""
    found = next((s for s in zoo_timm.load_specs() if s.name == name), None)
    if found is None:
        raise SystemExit(f"zoo-timm has no model {name!r}")
    return found


def check(name: str | ModelSpec, workdir: Path, samples: int = 2, opencv: bool = True) -> dict[str, Any]:
    """Export the spec ``name`` with random weights into ``workdir`` and return its row of results."""
    spec = spec_named(name) if isinstance(name, str) else name
    counted: dict[str, int] = {}
    row = exportcheck.check(randomized(spec, counted), workdir, samples=samples, opencv=opencv,
                            row={"arch": arch_of(spec)})
    if "params" in counted:
        row["params_m"] = round(counted["params"] / 1e6, 3)
    return scrubbed(row)


def scrubbed(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` without this machine's paths in its messages: the temporary folder of the export, installed packages'
    folders (``.../site-packages/``) and the repository's."""
    root = str(HERE.parents[1]) + os.sep

    def clean(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = re.sub(r"\S*/zoo-check-[^/\s]+/", "", value)
        return re.sub(r"\S*/(site|dist)-packages/", "", value).replace(root, "")

    return {key: clean(value) for key, value in row.items()}


# -- what the rows say ------------------------------------------------------------------------


def latest(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each model's last row (a model checked again: its newest result)."""
    return {row["model"]: dict(row) for row in rows}


def with_parity(row: Mapping[str, Any]) -> bool:
    """Whether the row's model exported with parity: within the spec's tolerance (the export refuses more)
    and the same top-1 on every input (where the output has a class axis)."""
    return bool(row.get("exported")) and row.get("top1") in (1.0, None)


def failure(row: Mapping[str, Any]) -> str | None:
    """Why the row's model did not export, in a few words that group alike failures (None: it exported, or was
    skipped)."""
    if row.get("exported") or row.get("skipped"):
        return None
    error = row.get("error", "")
    if "timed out" in error:
        return "timed out"
    died = re.match(r"process died \((-?\d+)\) in (\w+)", error)
    if died:
        code, stage = died.groups()
        return f"killed in {stage} (out of memory?)" if code == "-9" else f"process died ({code}) in {stage}"
    if "differs from PyTorch beyond tolerance" in error or "results differ from PyTorch" in error:
        return "parity failed"
    if "has shape" in error and "in ONNX but" in error:
        return "parity failed (output shape)"
    if "onnxruntime cannot run" in error:
        return "onnxruntime cannot run the exported graph"
    if error.startswith("ExportError: building"):
        return "build failed"
    exporting = re.search(r"exporting .* failed: (\w+): (.*)", error)
    if exporting:
        kind, message = exporting.groups()
        return f"export failed: {kind}: {_generic(message)}"
    return error.partition(":")[0] or "unknown"


def _generic(message: str) -> str:
    """An exporter's message without what varies from model to model (names, numbers, shapes), clipped."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", message.split("\n")[0].split(". ")[0])
    message = re.sub(r"\d+", "N", message)
    return message[:100].rstrip()


def refused_for_onnxruntime(row: Mapping[str, Any]) -> str | None:
    """Why onnxruntime is refused for the model of ``row``: its export fails, or its outputs differ from PyTorch's.
    Not for what says more about this machine than about the model (a time limit, a process killed for memory)."""
    reason = failure(row)
    if reason is None or reason == "timed out" or reason.startswith("killed"):
        return None
    error = re.sub(r"^ExportError: (exporting .*? failed: |'[^']*': )", "", row["error"])
    if reason.startswith("parity failed"):
        return f"its ONNX export's outputs differ from PyTorch's ({_clip(error)})"
    if reason.startswith("process died"):
        return f"exporting it crashes the process ({_clip(error)})"
    return f"its export to ONNX fails ({_clip(error)})"


def refused_for_opencv(row: Mapping[str, Any]) -> str | None:
    """OpenCV's refusals as zoo-torchvision's; and where no ONNX file can be made, the same reason as onnxruntime's."""
    return exportcheck.opencv_refusal(row) or refused_for_onnxruntime(row)


def refused_for_openvino(row: Mapping[str, Any]) -> str | None:
    """OpenVINO's refusals as zoo-torchvision's; where no ONNX file can be made, the same reason as onnxruntime's."""
    return exportcheck.openvino_refusal(row) or refused_for_onnxruntime(row)


def _clip(text: str, size: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 3] + "..."


def counts_line(rows: Mapping[str, Mapping[str, Any]], total: int) -> str:
    """The sentence under the table: how many were checked, exported with parity, refused, failed (by reason)."""
    checked = [r for r in rows.values() if not r.get("skipped")]
    skipped = len(rows) - len(checked)
    good = [r for r in checked if with_parity(r)]
    opencv = Counter(r.get("opencv", "not run") for r in good)
    failures = Counter(failure(r) for r in checked if not r.get("exported"))
    parity = sum(n for reason, n in failures.items() if reason.startswith("parity failed"))
    top1 = sum(1 for r in checked if r.get("exported") and not with_parity(r))
    others = sorted(((n, reason) for reason, n in failures.items() if not reason.startswith("parity failed")),
                    key=lambda nr: (-nr[0], nr[1]))
    said = {"differs": "its results differ", "fails": "it cannot run the graph", "crashes": "it crashes",
            "not run": "not run"}
    refused_cv = [f"{said[k]}: {opencv[k]}" for k in said if opencv[k]]
    reached = (f"**{len(checked)} of {total} architectures checked** ({skipped} skipped as too large for this "
               f"machine, {total - len(checked) - skipped} not reached).")
    exported = (f"**{len(good)} exported with parity**: OpenCV DNN agrees on {opencv['agrees']}"
                + (f", is refused on {len(good) - opencv['agrees']} ({', '.join(refused_cv)})." if refused_cv else "."))
    refused = (f"**{parity + top1} refused** for parity (outputs beyond tolerance: {parity}, the top-1 differs: "
               f"{top1}).")
    failed = (f"**{sum(n for n, _ in others)} failed** (refused for both runtimes, except those timed out or killed)"
              + ("".join(f"; {reason}: {n}" for n, reason in others).replace("; ", ": ", 1)) + ".")
    return f"{reached} {exported} {refused} {failed}"


def table(rows: Iterable[Mapping[str, Any]], archs: Mapping[str, Architecture]) -> str:
    """The Markdown table of the results, one line per architecture checked or skipped (smallest first), and the
    counts under it."""
    by_model = latest(rows)
    names = {a.spec.name: a for a in archs.values()}
    ours = {name: row for name, row in by_model.items() if name in names}
    lines = [("| architecture | tag checked | names | params (M) | input | exported | onnxsim | parity: max diff / "
              "output scale, top-1 | OpenCV DNN | onnxruntime ms/image | s |"),
             "|---|---|---|---:|---|---|---|---|---|---:|---:|"]
    for name, row in sorted(ours.items(), key=lambda kv: (kv[1].get("params_m") or 0, kv[0])):
        arch = names[name]
        tag = name.removeprefix(f"timm/{arch.arch}")
        start = f"| {arch.arch} | {tag} | {len(arch.names)} | {row.get('params_m', 0):g} | "
        if row.get("skipped"):
            lines.append(start + f"| skipped: {row['skipped']} | | | | | |")
            continue
        size = "x".join(str(n) for n in row.get("input", [])[1:])
        if not row.get("exported"):
            error = _clip(row.get("error", ""), 200).replace("|", "\\|")
            lines.append(start + f"{size} | **no** ({failure(row)}): {error} | | | | | {row.get('seconds', '')} |")
            continue
        top1 = "-" if row["top1"] is None else f"{row['top1']:.0%}"
        opencv = row.get("opencv", "not run")
        if "opencv_max_rel" in row:
            opencv += f" ({row['opencv_max_rel']:.1e})"
        elif "opencv_error" in row:
            opencv += ": " + _clip(row["opencv_error"], 120).replace("|", "\\|")
        simplified = "yes" if row["simplified"] else "no"
        lines.append(start + f"{size} | yes | {simplified} | {row['max_rel']:.1e}, {top1} | {opencv} | "
                     f"{row['ort_ms']:g} | {row.get('seconds', '')} |")
    return "\n".join(lines) + "\n\n" + counts_line(ours, len(archs))


def runtimes_toml(rows: Iterable[Mapping[str, Any]], archs: Mapping[str, Architecture]) -> str:
    """``runtimes.toml``: for onnxruntime, OpenCV DNN and OpenVINO, every name of each architecture refused, and why."""
    names = {a.spec.name for a in archs.values()}
    checked = [row for row in rows if row["model"] in names and not row.get("skipped")]
    text = exportcheck.unsupported(checked, variants(archs), "check_exports.py --runtimes from its results (exports.jsonl)",
                                   {"onnxruntime": refused_for_onnxruntime, "opencv": refused_for_opencv,
                                    "openvino": refused_for_openvino})
    first, second, rest = text.split("\n", 2)
    note = ("# One tag of each architecture is checked; what it finds holds for every name of the architecture (its "
            "tags and their embedding variants).")
    return f"{first}\n{second}\n{note}\n{rest}"


def refusals(path: Path = RUNTIMES) -> dict[str, dict[str, str]]:
    """What ``runtimes.toml`` refuses: runtime -> name -> why (nothing where the file does not exist)."""
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# -- the run ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="architectures to check (ARCH, timm/ARCH or a tag's name; "
                                                 "default: all, smallest first)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON-lines file of results (appended)")
    parser.add_argument("--limit", type=int, help="check at most this many architectures")
    parser.add_argument("--max-params", type=float, metavar="M",
                        help="skip architectures over M million parameters (recorded as skipped)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per architecture ({TIMEOUT})")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the results and exit")
    parser.add_argument("--runtimes", action="store_true",
                        help="write zoo_timm/runtimes.toml (what onnxruntime and OpenCV cannot run) and exit")
    parser.add_argument("--again", action="store_true", help="re-check architectures that already have a result")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: check one spec, print its row
    args = parser.parse_args(argv)
    if args.one:
        exportcheck.print_row(check, args.one)
        return 0
    archs = architectures()
    rows = exportcheck.load(args.results)
    if args.runtimes:
        RUNTIMES.write_text(runtimes_toml(rows, archs), encoding="utf-8")
        return 0
    if args.table:
        print(table(rows, archs))
        return 0
    wanted = list(archs.values())
    if args.names:
        by_name = {**{a.arch: a for a in wanted}, **{n: a for a in wanted for n in a.names}}
        unknown = [n for n in args.names if f"timm/{n.removeprefix('timm/')}" not in by_name
                   and n.removeprefix("timm/") not in by_name]
        if unknown:
            parser.error(f"no timm architecture or tag {', '.join(unknown)}")
        wanted = [by_name.get(n.removeprefix("timm/")) or by_name[f"timm/{n.removeprefix('timm/')}"]
                  for n in args.names]
    previous = latest(rows)
    done = set() if args.again else {n for n, r in previous.items() if not r.get("skipped")}
    known = {n: r["params_m"] for n, r in previous.items() if r.get("params_m") is not None}
    wanted = [a for a in wanted if a.spec.name not in done]
    params = parameter_counts(wanted, known)
    wanted.sort(key=lambda a: (params[a.spec.name], a.arch))
    too_large = [a for a in wanted if args.max_params is not None and params[a.spec.name] > args.max_params]
    for arch in too_large:  # recorded once per limit, so that the table lists them
        if previous.get(arch.spec.name, {}).get("skipped") is None:
            exportcheck.append(args.results, {"model": arch.spec.name, "arch": arch.arch, "task": arch.spec.task,
                                              "params_m": params[arch.spec.name], "exported": False,
                                              "skipped": f"too large for this machine ({machine()})"})
    todo = [a for a in wanted if a not in too_large][:args.limit]
    print(f"{len(todo)} architectures to check, {len(too_large)} over {args.max_params} M parameters skipped",
          flush=True)
    failures = 0
    for i, arch in enumerate(todo, 1):
        t0 = time.perf_counter()
        row = scrubbed(exportcheck.check_in_child(__file__, arch.spec.name, timeout=args.timeout))
        row["seconds"] = round(time.perf_counter() - t0, 1)
        row.setdefault("arch", arch.arch)
        row.setdefault("params_m", params[arch.spec.name])
        if "timed out" in row.get("error", ""):
            row["error"] = f"timed out after {args.timeout:g} s in {row['error'].partition(' in ')[2]}"
        failures += not with_parity(row) or row.get("opencv") != "agrees"
        exportcheck.append(args.results, row)
        status = "ok" if with_parity(row) else "FAILED " + (failure(row) or "")
        print(f"[{i}/{len(todo)}] {arch.spec.name} ({params[arch.spec.name]:g} M): {status}, "
              f"opencv {row.get('opencv', '-')}, {row['seconds']} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmark scripts share: loud dependency checks, random weights, timing, tables, JSON.

Not a benchmark itself; ``python bench/NAME.py`` puts this folder on ``sys.path``.

Every result is a :class:`Row`: a measure, the reference it is compared with (measured in
the same run), their ratio and, where there is one, the target stated in the same units as
the ratio (an absolute target such as "under 0.5 s" becomes ``0.5 / reference``), so that
``plot.py`` can draw every measure on one axis.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: What to install when an import fails, by top-level module.
HINTS = {
    "torch": "pip install 'onnx-zoo[export]' (torch, torchvision, onnxsim)",
    "torchvision": "pip install 'onnx-zoo[export]' (torch, torchvision, onnxsim)",
    "onnxsim": "pip install 'onnx-zoo[export]' (torch, torchvision, onnxsim)",
    "onnx": "pip install onnx-zoo (it requires onnx)",
    "onnxruntime": "pip install onnx-zoo (it requires onnxruntime)",
    "cv2": "pip install onnx-zoo (it requires opencv-python-headless)",
    "numpy": "pip install onnx-zoo (it requires numpy)",
    "skimage": "pip install 'onnx-zoo[bench]' (or scikit-image)",
    "matplotlib": "pip install 'onnx-zoo[bench]' (or matplotlib)",
    "pytest": "pip install 'onnx-zoo[test]' (zoo.testing.randomize lives in a pytest plugin module)",
    "zoo": "pip install -e . in the repository root",
}


def fail(message: str) -> None:
    """Stop the benchmark with one clear line on stderr (exit status 2)."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def require(*modules: str) -> None:
    """Import each module or stop, saying what to install."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            top = name.partition(".")[0]
            fail(f"cannot import {name} ({error}); {HINTS.get(top, 'install it')}")


def require_plugin_model(name: str, plugin: str, needed: str) -> Any:
    """The spec of ``name``, which must come from the first-party plugin ``plugin`` (``zoo-PLUGIN``, whose builder
    and metadata the benchmark uses; ``needed`` says what it needs, for the message)."""
    import zoo

    if not zoo.list_models(plugin=plugin):
        fail(f"the benchmark needs the zoo-{plugin} plugin, and no model of it is registered: "
             f"pip install -e plugins/zoo-{plugin} ('zoo plugins' shows what is loaded)")
    try:
        spec = zoo.get_spec(name)
    except zoo.ZooError as error:
        fail(f"model {name!r}: {error}")
    if plugin not in spec.extra:
        fail(f"model {name!r} comes from plugin {spec.plugin!r}; the benchmark needs {needed}")
    return spec


def require_torchvision_model(name: str) -> Any:
    """The spec of ``name``, which must be a zoo-torchvision classifier (its builder and metadata are used)."""
    return require_plugin_model(name, "torchvision", "a zoo-torchvision classifier (it builds the same network "
                                                     "in PyTorch)")


def build_torchvision(spec: Any) -> Any:
    """A fresh, untrained torchvision network for ``spec`` (eval mode)."""
    import torchvision

    info = spec.extra["torchvision"]
    return torchvision.models.get_model(info["arch"], weights=None, num_classes=len(spec.labels),
                                        **info["builder_kwargs"]).eval()


def random_weights(spec: Any, folder: Path) -> tuple[Path, str, Any]:
    """Random, non-degenerate weights for ``spec`` saved with ``torch.save``: (path, sha256, module).

    ``zoo.testing.randomize`` perturbs the parameters and recalibrates BatchNorm, so that
    outputs, and the export's parity check, are meaningful without the real weights.
    """
    import torch

    from zoo.testing import randomize

    torch.manual_seed(0)
    module = randomize(build_torchvision(spec), spec)
    path = folder / f"{spec.name}-random.pth"
    torch.save(module.state_dict(), path)
    return path, sha256_of(path), module


def sha256_of(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def measure(cases: dict[str, Callable[[], object]], runs: int, warmup: int = 2, block: int = 1) -> dict[str, float]:
    """Median seconds of each case over ``runs`` timed calls, after ``warmup`` calls of each.

    Calls are made in rounds, each round calling every case, starting from a different case
    each round: cases compared with each other see the same machine load, even when it
    drifts (another job, frequency changes). With ``block`` > 1 a round calls each case
    ``block`` times in a row and times all but the first: a runtime's worker threads keep
    spinning for a while after a call (onnxruntime, PyTorch's OpenMP pool), and on 2 cores
    they slow whatever runs next, so a case right after another engine is not timed.
    """
    for function in cases.values():
        for _ in range(warmup):
            function()
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    skip = 1 if block > 1 else 0
    for round_ in range(math.ceil(runs / (block - skip))):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            for call in range(block):
                start = time.perf_counter()
                cases[name]()
                if call >= skip:
                    times[name].append(time.perf_counter() - start)
    return {name: median(values) for name, values in times.items()}


def run_checked(command: Sequence[str], env: dict[str, str] | None = None,
                what: str = "") -> subprocess.CompletedProcess:
    """Run a command, capturing its output; stop with its stderr if it fails."""
    result = subprocess.run(list(command), check=False, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        fail(f"{what or ' '.join(command[:4])} exited with status {result.returncode}:\n{tail}")
    return result


def zoo_command() -> tuple[list[str], str]:
    """The ``zoo`` console script beside this interpreter, else ``python -m zoo.cli``: (command, label)."""
    script = Path(sys.executable).with_name("zoo")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], "zoo (the console script beside this Python)"
    return [sys.executable, "-m", "zoo.cli"], "python -m zoo.cli"


def time_process(command: Sequence[str], env: dict[str, str] | None = None, what: str = "") -> float:
    """Wall seconds of one fresh process (start to exit), which must succeed."""
    start = time.perf_counter()
    run_checked(command, env, what)
    return time.perf_counter() - start


# -- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One measure against its reference.

    ``ratio`` is ``ratio_of`` as stated (e.g. "time / reference time"); ``target`` is in
    ratio units and ``target_op`` says which side passes; ``target_text`` is how people
    state it ("overhead at most 5%", "under 0.5 s").
    """

    measure: str
    value: float | str
    unit: str
    reference: str
    reference_value: float | None
    ratio: float | None
    ratio_of: str
    target: float | None = None
    target_op: str | None = None  # "<=" or ">=" or "==" (a yes/no fact)
    target_text: str = ""
    note: str = ""
    met: bool | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.target_op == "==":
            self.met = self.value == self.target
        elif self.target is not None and self.ratio is not None:
            self.met = self.ratio <= self.target if self.target_op == "<=" else self.ratio >= self.target


def fmt(value: float | str | None, unit: str) -> str:
    """A value for the table: seconds as ms under 1 s, others with their unit."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit in ("GFLOP/s", "img/s"):
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}".strip()


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.3f}x" if ratio < 10 else f"{ratio:.1f}x"


def verdict(row: Row) -> str:
    return "-" if row.met is None else "met" if row.met else "**MISSED**"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A pipe table, padded so that it also reads in a terminal; ``align`` is l/r per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def results_table(rows: Sequence[Row]) -> str:
    headers = ["measure", "value", "reference", "ref. value", "ratio", "ratio is", "target", "verdict"]
    body = [[r.measure, fmt(r.value, r.unit), r.reference, fmt(r.reference_value, r.unit), fmt_ratio(r.ratio),
             r.ratio_of, r.target_text or "-", verdict(r)] for r in rows]
    return markdown_table(headers, body, "lrlrrllr")


def notes(rows: Sequence[Row]) -> str:
    return "\n".join(f"- {r.measure}: {r.note}" for r in rows if r.note)


#: The CPU flags that change what the kernels of onnxruntime, OpenCV and BLAS run (AVX2 only, AVX-512,
#: VNNI for int8, AMX; NEON and dot products on ARM): a figure means little without them.
SIMD = ("avx", "amx", "fma", "neon", "asimd", "sve", "i8mm", "bf16")


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, load, versions."""
    fields: dict[str, str] = {}  # the first processor's
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = text.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name") or platform.processor() or platform.machine()
    flags = sorted(f for f in (fields.get("flags") or fields.get("Features") or "").split() if f.startswith(SIMD))
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "simd": flags, "python": platform.python_version(),
                            "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_1min"] = round(os.getloadavg()[0], 2)
    versions = {}
    for name in ("zoo", "numpy", "onnxruntime", "cv2", "torch", "torchvision", "onnx", "onnxsim"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    info["versions"] = versions
    return info


def header(title: str, extra: str = "") -> str:
    m = machine()
    load = f", load average {m['load_1min']}" if "load_1min" in m else ""
    simd = f" ({' '.join(m['simd'])})" if m.get("simd") else ""
    return f"{title}\n\n{m['cpu']}{simd}, {m['cores']} cores{load}, Python {m['python']}{extra}"


def write_json(path: str | None, script: str, args: Any, rows: Sequence[Row],
               tables: dict[str, Any] | None = None) -> None:
    """Write the rows (and any extra tables) for ``plot.py``; nothing if ``path`` is None."""
    if not path:
        return
    argv = sys.argv[1:]
    if "--json" in argv:  # where the file went is no result (and names a folder of this machine)
        del argv[argv.index("--json"):argv.index("--json") + 2]
    settings = {key: value for key, value in vars(args).items() if key != "json"}
    data = {"script": script, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": argv,
            "args": settings, "machine": machine(), "rows": [asdict(r) for r in rows], "tables": tables or {}}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {target}", file=sys.stderr)

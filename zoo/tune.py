"""``runtime="auto"`` and ``zoo tune``: the fastest runtime and precision that pass the gate on this machine.

Every runtime and precision the zoo has (:data:`CANDIDATES`) is opened on the model; those
this machine or the model cannot run, and the reduced precisions that the agreement gate
(:mod:`zoo.gate`) or int8's own check refuse, are rows with the reason. The others run
one sample image in interleaved blocks with onnxruntime float32 (:func:`zoo.quantize.interleaved_ms`:
all see the same load), and the fastest by median wins, unless it is not at least
:data:`MARGIN` faster than onnxruntime float32 in the median of its blocks' ratios: then
onnxruntime float32 stays the choice, so the choice is never slower than the default. The
table and the choice are recorded in the float32 entry, keyed by the machine (CPU model and
flags, GPUs, runtimes' versions: :func:`zoo.gate.machine_key`), and used from then on.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from zoo import gate
from zoo._log import notice
from zoo.errors import ExportError, PrecisionError, ZooError
from zoo.quantize import interleaved_ms
from zoo.spec import AUTO

__all__ = ["AUTO", "CANDIDATES", "key", "tune"]

log = logging.getLogger(__name__)

#: Runtime and precision pairs tried, the reference (today's default) first.
CANDIDATES = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "bf16"),
              ("openvino", "fp16"), ("openvino", "int8"), ("opencv", "fp32"))
REFERENCE = CANDIDATES[0]
#: How much faster than onnxruntime float32 a choice must be (the median of its blocks' ratios): less is noise.
MARGIN = 1.05
#: Interleaved blocks, and timed calls in each.
BLOCKS = 9
CALLS = 5


def tune(name: str, open_candidate: Callable[[str, str], Any], *, precision: str | None = None,
         blocks: int = BLOCKS, calls: int = CALLS) -> dict[str, Any]:
    """Measure ``name``'s candidates (``open_candidate(runtime, precision)`` opens one as :func:`zoo.get` does,
    raising :class:`~zoo.errors.ZooError` where it cannot or may not run) and return the record: the machine,
    one row a candidate, and the choice. ``precision`` narrows the candidates to it (beside the reference)."""
    tried = [c for c in CANDIDATES if c == REFERENCE or precision in (None, c[1])]
    notice(log, "tuning %s: trying %d runtime and precision choices on this machine; this is done once, then "
           "remembered", name, len(tried))
    started = time.perf_counter()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    models: dict[tuple[str, str], Any] = {}
    for runtime, chosen in tried:
        row = rows[runtime, chosen] = {"runtime": runtime, "precision": chosen, "ms": None, "speedup": None,
                                       "refused": None}
        try:
            models[runtime, chosen] = open_candidate(runtime, chosen)
        except (PrecisionError, ExportError) as error:  # the gate, or int8's own check (a QuantizationError)
            row["refused"] = str(error)
            report = getattr(error, "report", None)
            if report:
                row["figures"] = {k: v for k, v in report.items() if k in ("agreement", "max_difference")}
        except ZooError as error:  # not offered here (UsageError), or it cannot load the model
            row["refused"] = str(error)
        except Exception as error:  # noqa: BLE001 - an engine that fails while the gate runs it: this row only
            row["refused"] = _fails(error)
        else:
            checks = models[runtime, chosen].metadata.get("checks", {})
            figures = checks.get(gate.check_key(runtime, chosen)) or models[runtime, chosen].metadata.get("int8")
            if figures:
                row["figures"] = {k: figures[k] for k in ("agreement", "max_difference") if k in figures}
    reference = models[REFERENCE]
    batch, geometries = reference.transform(_sample(reference))
    for candidate, model in list(models.items()):  # one run each: an engine may load a graph it cannot run
        try:
            model.run(batch, geometries)
        except Exception as error:  # noqa: BLE001 - OpenCV's cv2.error, OpenVINO's RuntimeError...
            if candidate == REFERENCE:
                raise
            rows[candidate]["refused"] = _fails(error)
            del models[candidate]
    notice(log, "tuning %s: timing %d of them in %d interleaved blocks", name, len(models), blocks)
    times = interleaved_ms({f"{r}/{p}": partial(model.run, batch, geometries) for (r, p), model in models.items()},
                           blocks=blocks, calls=calls)
    base = times["/".join(REFERENCE)]
    for (runtime, chosen), row in rows.items():
        if (runtime, chosen) in models:
            mine = times[f"{runtime}/{chosen}"]
            ratios = [b / m for b, m in zip(base, mine, strict=True)]
            row.update(ms=round(statistics.median(mine), 3), speedup=round(statistics.median(ratios), 3),
                       speedup_range=[round(min(ratios), 3), round(max(ratios), 3)])
    faster = [row for row in rows.values() if row["speedup"] is not None and row["speedup"] >= MARGIN]
    best = min(faster, key=lambda row: row["ms"]) if faster else rows[REFERENCE]
    for row in rows.values():
        row["chosen"] = row is best
    return {"choice": {"runtime": best["runtime"], "precision": best["precision"]}, "rows": list(rows.values()),
            "machine": gate.machine(), "machine_key": gate.machine_key(), "precision": precision,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 3), "timing": {"blocks": blocks, "calls": calls,
                                                                           "margin": MARGIN}}


def _fails(error: Exception) -> str:
    """A row's reason where its engine raises while it opens or first runs the model."""
    return f"it fails to run: {type(error).__name__}: {error}"[:300]


def _sample(model: Any) -> Any:
    """The image the candidates are timed on: the first held image of the spec's (the zoo's photos, or the plugin's)."""
    from zoo.quantize import photos

    return photos(model.spec).held[0]


def key(precision: str | None, *, threads: int | None = None, providers: Sequence[str] | None = None) -> str:
    """Where a tuning is recorded in the float32 entry's ``tuned`` table: the machine, the precision it was narrowed
    to, and the threads and onnxruntime providers it was timed with."""
    return f"{gate.machine_key()}/{precision or 'any'}/{threads or 'default'}/{','.join(providers or ()) or 'default'}"

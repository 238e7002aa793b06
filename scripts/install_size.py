"""Report how much disk a Python environment's installed distributions take, largest first.

    python scripts/install_size.py --python .venv/bin/python
    python scripts/install_size.py --python .venv/bin/python --json

Each distribution's size is the sum of the files its RECORD lists, as they are on disk now, read by
importlib.metadata inside the given interpreter (a file listed twice counts once; an editable install
counts what it put in the environment, not its source tree). The CUDA part is the distributions
named nvidia-*, cuda-* and triton: what a CUDA build of PyTorch brings that a CPU-only export never
uses. Sizes are in decimal units (1 MB = 10**6 bytes, 1 GB = 10**9 bytes).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass

# Runs inside the measured interpreter (-I: no current directory, no user site on sys.path).
PROBE = """
import json, os, importlib.metadata as md
seen, out = set(), []
for dist in md.distributions():
    name = dist.metadata["Name"] or "?"
    size = count = 0
    for file in dist.files or ():
        path = os.path.realpath(dist.locate_file(file))
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        size += os.stat(path).st_size
        count += 1
    out.append([name, dist.version, size, count, dist.files is not None])
print(json.dumps(out))
"""

CUDA = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")


@dataclass
class Distribution:
    name: str
    version: str
    bytes: int
    files: int
    has_record: bool
    cuda: bool


def measure(python: str) -> list[Distribution]:
    """Every distribution installed for `python`, largest first (a name installed twice counts once)."""
    try:
        done = subprocess.run([python, "-I", "-c", PROBE], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise SystemExit(f"install_size: cannot read the distributions of {python}: {detail.strip()}") from None
    found: dict[str, Distribution] = {}
    for name, version, size, count, has_record in json.loads(done.stdout):
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key not in found:  # the first on sys.path is the one that imports
            found[key] = Distribution(key, version, size, count, has_record, bool(CUDA.match(key)))
    return sorted(found.values(), key=lambda d: (-d.bytes, d.name))


def human(size: int) -> str:
    """Bytes in decimal MB, or GB from 1 GB up."""
    return f"{size / 1e9:.2f} GB" if size >= 10**9 else f"{size / 1e6:.1f} MB"


def totals(dists: list[Distribution]) -> tuple[int, int]:
    """All the bytes, and those of the CUDA distributions."""
    return sum(d.bytes for d in dists), sum(d.bytes for d in dists if d.cuda)


def report(python: str, dists: list[Distribution], top: int) -> str:
    """The readable table: the `top` largest distributions, then the totals."""
    total, cuda_bytes = totals(dists)
    cuda = [d for d in dists if d.cuda]
    width = max([len(d.name) for d in dists[:top]] + [len("distribution")])
    lines = [f"{python}: {len(dists)} distributions", f"{'distribution':<{width}}  {'version':<16}  {'size':>10}"]
    for d in dists[:top]:
        lines.append(f"{d.name:<{width}}  {d.version:<16}  {human(d.bytes):>10}{'  (CUDA)' if d.cuda else ''}")
    if len(dists) > top:
        rest = sum(d.bytes for d in dists[top:])
        lines.append(f"{f'... {len(dists) - top} more':<{width}}  {'':<16}  {human(rest):>10}")
    lines.append(f"total: {human(total)} ({total} bytes)")
    share = f", {cuda_bytes / total:.0%} of the total" if total else ""
    lines.append(f"CUDA (nvidia-*, cuda-*, triton; {len(cuda)} distributions): {human(cuda_bytes)}{share}")
    lines.append(f"without CUDA: {human(total - cuda_bytes)}")
    missing = [d.name for d in dists if not d.has_record]
    if missing:
        lines.append(f"no RECORD (counted as 0): {', '.join(missing)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="the interpreter whose environment to measure (default: this one, %(default)s)")
    parser.add_argument("--top", type=int, default=15, metavar="N", help="distributions in the table (default: 15)")
    parser.add_argument("--json", action="store_true", help="print JSON: every distribution and the totals in bytes")
    args = parser.parse_args(argv)
    if args.top < 0:
        parser.error("--top must be 0 or more")
    dists = measure(args.python)
    if args.json:
        total, cuda = totals(dists)
        document = {"python": args.python, "total_bytes": total, "cuda_bytes": cuda,
                    "non_cuda_bytes": total - cuda, "distributions": [asdict(d) for d in dists]}
        print(json.dumps(document, indent=2))
    else:
        print(report(args.python, dists, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

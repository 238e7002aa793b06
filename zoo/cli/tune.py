"""``zoo tune``: the fastest runtime and precision that pass the agreement check on this machine."""

from __future__ import annotations

import argparse
import sys

from zoo.cli.arguments import Commands, build_options, described, file_arguments, runtime_arguments, weights_arguments
from zoo.cli.render import print_json, print_table, tuning_rows


def cmd_tune(args: argparse.Namespace) -> int:
    from zoo._fields import check_count
    from zoo.model import tuned

    check_count("--threads", args.threads, optional=True)
    record = tuned(args.name, build_options(args), again=args.again, providers=args.providers, threads=args.threads,
                   **described(args))
    if args.json:
        print_json(record)
        return 0
    print_table(["RUNTIME", "PRECISION", "MS", "SPEED-UP", "AGREEMENT", "STATE"], tuning_rows(record))
    choice = record["choice"]
    print(f"chosen: {choice['runtime']} {choice['precision']} (measured {record['created']}; 'zoo tune "
          f"{args.name} --again' measures again); runtime='auto' and --runtime auto use it", file=sys.stderr)
    return 0


def add_parsers(commands: Commands) -> None:
    """Add this module's command to the ``zoo`` parser."""
    p = commands.command(
        "tune", cmd_tune, "find the fastest runtime and precision that pass the agreement check here",
        "Open the model on every runtime and precision this machine offers (onnxruntime, OpenVINO, OpenCV DNN; "
        "fp32, bf16, fp16, int8), check each reduced precision against onnxruntime float32 on held images, time "
        "them on one image in interleaved blocks, and remember the fastest that passes (onnxruntime float32 unless "
        "another is at least 5%% faster). The choice is kept in the model's cache entry for this machine (CPU, "
        "GPUs, library versions); 'zoo predict --runtime auto' and 'zoo serve --runtime auto' use it.")
    p.add_argument("name", metavar="NAME", help="a model's name or alias, NAME/KEY (a cache entry) or an ONNX file")
    weights_arguments(p, runs=True)
    runtime_arguments(p)
    file_arguments(p)
    p.add_argument("--again", action="store_true", help="measure again, even if this machine has a tuning recorded")
    p.add_argument("--json", action="store_true", help="print the record as JSON: the machine, every row, the choice")

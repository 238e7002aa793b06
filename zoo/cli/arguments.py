"""What the commands share: argument groups, the build options their flags give, the models they select, and
:class:`Commands`, which adds a command (or an action of a command group) with ``-v`` and ``-q``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from zoo.errors import UsageError
from zoo.registry import Registry
from zoo.spec import AUTO, PRECISIONS, RUNTIMES


class Commands:
    """Adds subcommands to the ``zoo`` parser, each with the common ``-v``/``-q`` and its own ``--help``."""

    def __init__(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        self.subparsers, self.common = subparsers, common

    def command(self, name: str, func: Callable[[argparse.Namespace], int] | None, help: str,
                description: str) -> argparse.ArgumentParser:
        """A command ``zoo NAME`` running ``func`` (None: a group of actions, whose help is shown alone)."""
        sub = self.subparsers.add_parser(name, help=help, description=description, parents=[self.common])
        sub.set_defaults(func=func, help_parser=sub)
        return sub

    def actions(self, group: argparse.ArgumentParser) -> Callable[..., argparse.ArgumentParser]:
        """A function that adds an action (``zoo GROUP ACTION``) to the command ``group``."""
        actions = group.add_subparsers(dest="action", metavar="ACTION")

        def action(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
            sub = actions.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                     parents=[self.common])
            sub.set_defaults(func=func, help_parser=sub)
            return sub

        return action


def labels_of(args: argparse.Namespace) -> list[str] | None:
    from zoo.model import read_labels

    return read_labels(args.labels) if args.labels else None


def build_options(args: argparse.Namespace) -> Any:
    """The build options a command's flags give (those it has): a :class:`zoo.convert.BuildOptions`."""
    from zoo.convert import BuildOptions

    return BuildOptions(weights=getattr(args, "weights", None), sha256=getattr(args, "sha256", None),
                        labels=labels_of(args) if getattr(args, "labels", None) else None,
                        opset=getattr(args, "opset", None), exporter=getattr(args, "exporter", None),
                        simplify=not getattr(args, "no_simplify", False),
                        precision=getattr(args, "precision", "fp32"))


def selected_names(args: argparse.Namespace, registry: Registry, verb: str) -> list[str]:
    """The models ``args.names`` (names or globs), ``--task`` and ``--plugin`` select; unknown ones fail now."""
    if not args.names and not (args.task or args.plugin):
        raise UsageError(f"name the models to {verb} (names or globs), or {verb} every model of a --task or a "
                         f"--plugin")
    return registry.select(args.names, task=args.task, plugin=args.plugin)


def selection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task`` and ``--plugin``, which select (or filter) the models a command works on (:func:`selected_names`)."""
    parser.add_argument("--task", help="only models of this task, e.g. image-classification")
    parser.add_argument("--plugin", help="only models of this plugin (its name or its distribution's)")


def weights_arguments(parser: argparse.ArgumentParser, *, precision: bool = True, runs: bool = False) -> None:
    """``--weights``, ``--sha256``, ``--labels`` and (with ``precision``) ``--precision``: every precision for a
    command that runs the model (``runs``), the file's (fp32, int8) for one that builds it."""
    parser.add_argument("--weights", metavar="W",
                        help="a weights variant tag, a checkpoint file, or a URL (with --sha256)")
    parser.add_argument("--sha256", metavar="HEX", help="sha256 of the --weights file or URL")
    parser.add_argument("--labels", metavar="FILE",
                        help="class names, one a line, for weights fine-tuned on other classes (the model is "
                             "built with that many), or for an ONNX file")
    if precision:
        precision_argument(parser, runs=runs)


def check_one_model(args: argparse.Namespace, names: Sequence[str], instead: str) -> None:
    """:class:`UsageError` where ``--weights``, ``--sha256`` or ``--labels`` are given for other than one model."""
    given = [flag for flag in ("weights", "sha256", "labels") if getattr(args, flag, None)]
    if given and len(names) != 1:
        raise UsageError(f"{', '.join('--' + flag for flag in given)} go{'es' * (len(given) == 1)} with one model, "
                         f"and {len(names)} are selected ({', '.join(names[:5]) or 'none'}"
                         f"{', ...' * (len(names) > 5)}); {instead}")


def file_arguments(parser: argparse.ArgumentParser) -> None:
    """``--task`` and ``--preprocess``: what an ONNX file that does not describe itself does (with ``--labels``)."""
    group = parser.add_argument_group("an ONNX file without a description (none of its own, no model.toml beside it)")
    group.add_argument("--task", help="what it does, e.g. image-classification")
    group.add_argument("--preprocess", type=preprocess_fields, metavar="JSON",
                       help="its preprocessing, the fields of a model.toml's preprocess table as JSON, e.g. "
                            "'{\"resize\": [224, 224], \"scale\": 0.00392156862745098}'")


def preprocess_fields(text: str) -> dict[str, Any]:
    """``--preprocess``' value: a JSON object of :class:`zoo.preprocess.Preprocess` fields."""
    import json

    try:
        fields = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): give an object such as '{{\"resize\": 224}}'") from None
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError("give a JSON object of preprocessing fields, such as '{\"resize\": 224}'")
    return fields


def described(args: argparse.Namespace) -> dict[str, Any]:
    """What ``--task`` and ``--preprocess`` say about an ONNX file (:func:`zoo.get`'s ``task`` and ``preprocess``)."""
    return {"task": getattr(args, "task", None), "preprocess": getattr(args, "preprocess", None)}


def precision_argument(parser: argparse.ArgumentParser, *, runs: bool = False) -> None:
    int8 = ("int8: quantize the float32 model (once, then cached), checked against it on held photos and refused if "
            "they disagree")
    if not runs:
        parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help=f"{int8} (default fp32)")
        return
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help=f"{int8}; bf16 (CPUs with AMX or AVX-512 BF16) and fp16 (CPUs with AMX-FP16): the float32 "
                             f"model run in that precision by OpenVINO (--runtime openvino), checked the same way "
                             f"once on this machine; with --runtime auto, the choice is between it and onnxruntime "
                             f"fp32 (default fp32)")


def runtime_argument(parser: argparse.ArgumentParser) -> None:
    """``--runtime``: one of the runtimes, or ``auto`` (the fastest that passes the checks here, tuned once)."""
    parser.add_argument("--runtime", choices=(*RUNTIMES, AUTO), default="onnxruntime",
                        help="inference engine: onnxruntime (default), opencv, openvino (pip install "
                             "'onnx-zoo[openvino]'), or auto: the fastest runtime and precision that pass the "
                             "agreement check on this machine, measured once ('zoo tune NAME') and remembered")


def provider_names(text: str) -> list[str]:
    """``--providers``' value: names separated by commas."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give execution provider names, comma-separated (e.g. CPUExecutionProvider)")
    return names


class Deprecated(argparse.Action):
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


def runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--providers", action="extend", type=provider_names, metavar="P[,P...]",
                        help="onnxruntime execution providers in order of preference, comma-separated, e.g. "
                             "CUDAExecutionProvider,CPUExecutionProvider (default: CUDA when available, else CPU)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="onnxruntime intra-op threads (default: one per physical core)")


def output_arguments() -> argparse.ArgumentParser:
    """-v and -q, accepted before or after any command."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="also show debugging messages")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="show only errors (no progress)")
    return common

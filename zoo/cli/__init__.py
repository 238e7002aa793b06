"""The ``zoo`` command: thin subcommands over the public API, one module per command group.

Every :class:`~zoo.errors.ZooError` is turned into one line on stderr and the error's exit
code in :func:`main`, the only place that does so. ``--json`` prints machine-readable
output on stdout; warnings and errors always go to stderr. :mod:`zoo.cli.render` shows
things, :mod:`zoo.cli.arguments` holds what the commands share.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from zoo._version import __version__
from zoo.cli import bundle, cache, export, models, predict, serve, tune
from zoo.cli.arguments import Commands, output_arguments
from zoo.errors import ZooError, weights_hint

EPILOG = ("Environment: ZOO_CACHE_DIR (cache location), ZOO_OFFLINE=1 (no network), ZOO_MIRROR=URL (fetch "
        "files from this base URL), ZOO_LOAD_PLUGINS=a,b (load only these plugins), ZOO_DISABLE_PLUGIN_AUTOLOAD=1 "
        "(load no plugin by entry point), ZOO_MAX_PIXELS (largest image, in pixels), ZOO_LOCK_TIMEOUT (seconds to "
        "wait for another process's build; default: as long as it runs). 'zoo COMMAND --help' explains a command.")

#: The command groups, in the order ``zoo --help`` lists their commands.
GROUPS = (models, predict, tune, export, bundle, serve, cache)


def build_parser() -> argparse.ArgumentParser:
    """The ``zoo`` parser: every group's commands, each with ``-v``/``-q`` and ``--help``."""
    common = output_arguments()
    parser = argparse.ArgumentParser(
        prog="zoo",
        description="Vision models by name, as verified and cached ONNX files.",
        epilog=EPILOG,
        parents=[common],
    )
    parser.set_defaults(func=None, help_parser=parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)
    for group in GROUPS:
        group.add_parsers(commands)
    return parser


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool, quiet: bool) -> Iterator[None]:
    """Send the ``zoo`` logger's messages to stderr as ``zoo: ...`` while a command runs, then put the logger
    back as it was (``main`` called in-process, by a test or a program, leaves no handler on a stream it
    may close); other libraries' loggers are left alone."""
    logger = logging.getLogger("zoo")
    level, propagate = logger.level, logger.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("zoo: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zoo`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.func is None:  # `zoo` or `zoo cache` alone: show what there is to do
        args.help_parser.print_help()
        return 0
    args.verbose, args.quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    hint = weights_hint.set("--weights FILE" if "weights" in vars(args) else None)  # advice names only our options
    try:
        with _logging_to_stderr(args.verbose, args.quiet):
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

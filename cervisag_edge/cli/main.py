"""``cervisag`` entry point. Each subcommand is a module of this package exposing

- ``HELP``: one line for ``cervisag --help``;
- ``add_arguments(parser)``: declares its options (imports nothing heavy);
- ``run(args) -> int``: the exit status (0 ok, 1 some input failed, 2 usage error).

Library code never calls ``sys.exit``; only :func:`main` turns statuses into an exit.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ..version import __version__
from ..errors import CervisagError

#: subcommand -> module in this package
SUBCOMMANDS: dict[str, str] = {
    "demo": "demo",
    "measure": "measure",
    "phantoms": "phantoms",
    "verify": "verify",
    "adapt": "adapt",
    "bench": "bench",
    "serve": "serve",
}


def _load(name: str):
    try:
        return importlib.import_module(f".{SUBCOMMANDS[name]}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(__package__):
            return None  # subcommand not part of this build
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cervisag",
        description="Cervical sagittal alignment from lateral cervical spine radiographs (not for diagnostic use).",
    )
    parser.add_argument("--version", action="version", version=f"cervisag-edge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args))
    except CervisagError as exc:
        if args.debug:
            raise
        print(f"cervisag {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:  # pragma: no cover - console script shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()

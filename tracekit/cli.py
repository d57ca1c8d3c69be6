"""The ``tracekit`` command line: ``python -m tracekit.cli <command> ...``.

Subcommands are argparse subparsers; each is a small function taking the parsed
arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import TracekitError


def _cmd_link(args: argparse.Namespace) -> int:
    from .linker import link_files

    link_files(args.out, args.inputs)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracekit", description="CO-RE BPF tracing in pure Python")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    lk = sub.add_parser("link", help="statically link BPF objects into one (like bpftool gen object)")
    lk.add_argument("out", metavar="OUT", help="the linked object to write")
    lk.add_argument("inputs", metavar="IN", nargs="+", help="relocatable BPF objects (.bpf.o) to link")
    lk.set_defaults(func=_cmd_link)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TracekitError as e:
        print(f"tracekit {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

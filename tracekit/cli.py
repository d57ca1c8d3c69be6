"""The ``tracekit`` command line: ``python -m tracekit.cli <command> ...``.

Subcommands are argparse subparsers; each is a small function taking the parsed
arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from tracekit.errors import TracekitError


def _cmd_link(args: argparse.Namespace) -> int:
    from tracekit.obj.linker import link_files

    link_files(args.out, args.inputs)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from tracekit.build import compile_probe

    out = compile_probe(args.source, args.output, btf=args.btf, include=args.include, defines=args.define,
                        strip=not args.keep_debug)
    print(out)
    return 0


def _add_build(sub: Any) -> None:
    from tracekit.build import KERNEL_BTF

    p = sub.add_parser(
        "build",
        help="compile a BPF C probe into a CO-RE object (clang -target bpf -g -O2, vmlinux.h, tracekit.h)",
        description="Compile a BPF C probe with clang against a vmlinux.h generated from the kernel's BTF, "
                    "libbpf's headers and tracekit's tracekit.h. Prints the object's path.",
    )
    p.add_argument("source", metavar="SRC", help="the BPF C source, e.g. my.bpf.c")
    p.add_argument("-o", "--output", metavar="OUT", help="the object to write (default: SRC with .bpf.o)")
    p.add_argument("-I", dest="include", action="append", default=[], metavar="DIR", help="more include dirs")
    p.add_argument("-D", dest="define", action="append", default=[], metavar="NAME[=VAL]", help="a define")
    p.add_argument("--btf", default=str(KERNEL_BTF), help="BTF to generate vmlinux.h from (default: the kernel's)")
    p.add_argument("--keep-debug", action="store_true", help="keep DWARF (by default only .BTF is kept)")
    p.set_defaults(func=_cmd_build)


def _features(args: argparse.Namespace) -> int:
    from tracekit.kernel import features

    if args.feature:
        results: dict[str, Any] = {}
        for name in args.feature:
            fn = getattr(features, name, None)
            if name.startswith(("prog_type_", "map_type_", "attach_type_")):
                kind, _, what = name.partition("_type_")
                results[name] = getattr(features, f"{kind}_type")(what)
            elif callable(fn) and name in features.probe_names():
                results[name] = fn()
            else:
                print(f"tracekit features: unknown feature {name!r}; known: {', '.join(features.probe_names())}",
                      file=sys.stderr)
                return 2
    else:
        results = features.probe_all()
    if args.json:
        json.dump(results, sys.stdout, indent=2, sort_keys=False)
        print()
        return 0
    _print_table(results)
    return 0


def _print_table(results: dict[str, Any], indent: str = "") -> None:
    width = max((len(k) for k, v in results.items() if not isinstance(v, dict)), default=0)
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_table(value, indent + "  ")
        elif isinstance(value, bool):
            print(f"{indent}{key:<{width}}  {'yes' if value else 'no'}")
        else:
            print(f"{indent}{key:<{width}}  {value}")


def _add_features(sub: Any) -> None:
    p = sub.add_parser(
        "features",
        help="probe what the running kernel supports (BTF kinds, program/map/attach types, ...)",
        description="Run tracekit's feature probes against the running kernel (needs root).",
    )
    p.add_argument("feature", nargs="*", help="only these probes (e.g. btf_float arg_ctx_tag prog_type_kprobe)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_features)


def _cmd_usdt_list(args: argparse.Namespace) -> int:
    """``tracekit usdt list PATH|--pid PID``: one line per probe, like BCC's ``tplist -l``."""
    from tracekit.hooks import usdt

    if (args.path is None) == (args.pid is None):
        print("tracekit usdt list: give a PATH or --pid PID (not both)", file=sys.stderr)
        return 2
    paths = [args.path] if args.path is not None else usdt.mapped_elf_files(args.pid)
    for path in paths:
        try:
            notes = usdt.list_probes(path)
        except TracekitError as e:
            if args.pid is None:
                raise
            print(f"tracekit usdt list: {path}: {e}", file=sys.stderr)  # one bad library: go on
            continue
        sites: dict[tuple[str, str], list[Any]] = {}
        for n in notes:
            sites.setdefault((n.provider, n.name), []).append(n)
        shown = path.split("/root", 1)[1] if args.pid is not None and path.startswith(f"/proc/{args.pid}/root/") \
            else path
        for (provider, name), ns in sites.items():
            sema = f" [sema {ns[0].semaphore_address:#x}]" if ns[0].semaphore_address else ""
            print(f"{shown} {provider}:{name}" + (sema if args.verbose else ""))
            if not args.verbose:
                continue
            print(f"  {len(ns)} location(s), {max(len(n.args) for n in ns)} argument(s)")
            for n in ns:
                print(f"  location {n.address:#x} (file offset {n.file_offset:#x}): "
                      + (n.error if n.error else ", ".join(a.describe() for a in n.args) or "no arguments"))
    return 0


def _add_usdt(sub: Any) -> None:
    p = sub.add_parser("usdt", help="list the USDT probes (<sys/sdt.h>) of a binary or a process",
                       description="USDT probes in .note.stapsdt, as BCC's tplist -l lists them.")
    usub = p.add_subparsers(dest="usdt_command", metavar="SUBCOMMAND", required=True)
    ls = usub.add_parser("list", help="one line per probe: PATH PROVIDER:NAME")
    ls.add_argument("path", nargs="?", metavar="PATH", help="an executable or shared library (or a name in $PATH)")
    ls.add_argument("-p", "--pid", type=int, help="every ELF file mapped by process PID")
    ls.add_argument("-v", "--verbose", action="store_true", help="also locations, semaphores and arguments")
    ls.set_defaults(func=_cmd_usdt_list)


def _add_agent(sub: Any) -> None:
    """``tracekit agent``: the observability agent (tracekit/agent/cli.py has its options)."""
    from tracekit.agent.cli import add_parser

    add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracekit", description="CO-RE BPF tracing in pure Python")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    lk = sub.add_parser("link", help="statically link BPF objects into one (like bpftool gen object)")
    lk.add_argument("out", metavar="OUT", help="the linked object to write")
    lk.add_argument("inputs", metavar="IN", nargs="+", help="relocatable BPF objects (.bpf.o) to link")
    lk.set_defaults(func=_cmd_link)
    _add_features(sub)
    _add_build(sub)
    _add_usdt(sub)
    _add_agent(sub)
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

"""Build the bundled BPF probes: ``python -m tracekit.probes.build``.

Each ``*.bpf.c`` here is compiled with clang-19 against a ``vmlinux.h`` generated from the
running kernel's BTF (kept in a build directory, never committed), DWARF is stripped but
``.BTF``/``.BTF.ext`` are kept (the loader needs them for CO-RE and the verifier for
func/line info), and the result is written as ``*.bpf.o`` next to its source.

The output is deterministic: source and include paths are mapped to fixed names so the
objects carry no checkout path, and a rebuild from the same sources and the same kernel
BTF gives the same bytes.  ``--check`` verifies that (it rebuilds into a temporary
directory and compares with the committed objects, without touching them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tracekit.build import BuildError, find_tool, vmlinux_h

PROBES_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROBES_DIR.parent.parent
DEFAULT_BUILD_DIR = Path(os.environ.get("TRACEKIT_PROBES_BUILD", REPO_ROOT / "build" / "probes"))
DEFAULT_BTF = Path("/sys/kernel/btf/vmlinux")

CLANG = "clang-19"
LLVM_STRIP = "llvm-strip-19"

# Names the compiler records instead of real paths (BTF line info keeps file names).
SRC_PREFIX = "tracekit/probes"
GEN_PREFIX = "tracekit/probes/generated"

CFLAGS = ("-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86", "-Wall", "-Werror")


def sources(only: list[str] | None = None) -> list[Path]:
    """The probe sources, sorted so builds run in a stable order (``only``: these names)."""
    found = sorted(PROBES_DIR.glob("*.bpf.c"))
    if only:
        names = {n.removesuffix(".bpf.c").removesuffix(".bpf.o") for n in only}
        missing = names - {s.name.removesuffix(".bpf.c") for s in found}
        if missing:
            raise BuildError(f"no probe source for {', '.join(sorted(missing))} in {PROBES_DIR}")
        found = [s for s in found if s.name.removesuffix(".bpf.c") in names]
    return found


def generate_vmlinux_h(build_dir: Path, btf: Path = DEFAULT_BTF) -> Path:
    """``vmlinux.h`` of ``btf`` in ``build_dir`` (tracekit.build's generator and cache)."""
    return vmlinux_h(btf, directory=build_dir)


def compile_one(src: Path, out: Path, vmlinux_h: Path) -> None:
    """Compile ``src`` to ``out`` and strip its DWARF (``.BTF`` and ``.BTF.ext`` stay)."""
    clang = find_tool("CLANG", (CLANG,), "clang", "clang-19")
    strip = find_tool("LLVM_STRIP", (LLVM_STRIP,), "llvm-strip", "llvm-19")
    gen_dir = vmlinux_h.parent
    cmd = [
        clang, *CFLAGS,
        # Map both the checkout and the generated-header directory to fixed names.
        f"-ffile-prefix-map={PROBES_DIR}={SRC_PREFIX}",
        f"-ffile-prefix-map={gen_dir}={GEN_PREFIX}",
        f"-fdebug-prefix-map={PROBES_DIR}={SRC_PREFIX}",
        f"-fdebug-prefix-map={gen_dir}={GEN_PREFIX}",
        "-I", str(gen_dir), "-I", str(PROBES_DIR),
        "-c", str(PROBES_DIR / src.name), "-o", str(out),
    ]
    # The prefix maps rewrite the absolute source path recorded in the BTF line info to
    # "tracekit/probes/<file>", so the bytes do not depend on where the repo is checked out.
    res = subprocess.run(cmd, cwd=PROBES_DIR, capture_output=True)
    if res.returncode != 0:
        raise BuildError(f"compiling {src.name} failed:\n{res.stderr.decode(errors='replace')}")
    res = subprocess.run([strip, "-g", str(out)], capture_output=True)
    if res.returncode != 0:
        raise BuildError(f"stripping {out.name} failed: {res.stderr.decode(errors='replace').strip()}")


def object_name(src: Path) -> str:
    return src.name.removesuffix(".c") + ".o"


def build(build_dir: Path = DEFAULT_BUILD_DIR, btf: Path = DEFAULT_BTF, out_dir: Path = PROBES_DIR,
          verbose: bool = True, only: list[str] | None = None) -> dict[str, bool]:
    """Build every probe into ``out_dir``; returns {object name: whether its bytes changed}."""
    vmlinux_h = generate_vmlinux_h(build_dir, btf)
    changed: dict[str, bool] = {}
    build_dir.mkdir(parents=True, exist_ok=True)
    # A private scratch dir per run: concurrent builds (tests, two shells) never share files.
    with tempfile.TemporaryDirectory(prefix="objects-", dir=build_dir) as objdir:
        for src in sources(only):
            name = object_name(src)
            changed[name] = _build_one(src, Path(objdir) / name, out_dir / name, vmlinux_h, verbose)
    return changed


def _build_one(src: Path, tmp: Path, dest: Path, vmlinux_h: Path, verbose: bool) -> bool:
    compile_one(src, tmp, vmlinux_h)
    data = tmp.read_bytes()
    differs = not dest.exists() or dest.read_bytes() != data
    if differs:
        staged = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        staged.write_bytes(data)
        staged.replace(dest)   # atomic: a concurrent reader never sees half an object
    if verbose:
        print(f"{dest.name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"
              f" ({'updated' if differs else 'unchanged'})")
    return differs


def check(build_dir: Path = DEFAULT_BUILD_DIR, btf: Path = DEFAULT_BTF) -> list[str]:
    """Rebuild into a scratch dir; return the names of committed objects that differ."""
    with tempfile.TemporaryDirectory(prefix="tracekit-probes-") as scratch:
        build(build_dir, btf, out_dir=Path(scratch), verbose=False)
        stale = []
        for src in sources():
            name = object_name(src)
            committed = PROBES_DIR / name
            if not committed.exists() or committed.read_bytes() != (Path(scratch) / name).read_bytes():
                stale.append(name)
        return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracekit.probes.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--btf", type=Path, default=DEFAULT_BTF, help="kernel BTF to generate vmlinux.h from")
    ap.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR, help="where vmlinux.h and scratch objects go")
    ap.add_argument("names", nargs="*", metavar="NAME", help="only these probes (default: all)")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temporary dir and fail if the committed objects differ")
    args = ap.parse_args(argv)
    try:
        if args.check:
            stale = check(args.build_dir, args.btf)
            if stale:
                print("out of date or not reproducible: " + ", ".join(stale)
                      + " (the objects embed types from the build kernel's BTF, so a kernel other"
                      " than the one they were built on also gives different bytes; rebuild with"
                      " python -m tracekit.probes.build)", file=sys.stderr)
                return 1
            print("all probe objects reproduce byte for byte")
            return 0
        build(args.build_dir, args.btf, only=args.names or None)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

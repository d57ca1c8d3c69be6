"""Compile a BPF C probe into a CO-RE object: ``tracekit build my.bpf.c [-o my.bpf.o]``.

What a probe needs to build, found or generated here so that a user writes only C:

* **clang** with the BPF target: ``-target bpf -g -O2`` (``-g`` makes clang emit ``.BTF``
  and ``.BTF.ext``, which CO-RE and the verifier's func/line info need) and the
  ``__TARGET_ARCH_<arch>`` define that libbpf's ``bpf_tracing.h`` uses to read registers;
* **headers**: ``vmlinux.h`` (every kernel type, dumped from the running kernel's BTF by
  ``bpftool btf dump ... format c``, cached per BTF content), libbpf's
  ``<bpf/bpf_helpers.h>`` & co. (Debian: libbpf-dev), and tracekit's own ``tracekit.h``
  (``TK_EVENT_TYPE`` and small helpers), which is shipped in :mod:`tracekit.probes`.

The object is CO-RE: built once against this kernel's types, it loads on any kernel with
BTF.  DWARF is stripped when ``llvm-strip`` is there (``.BTF`` stays), which makes the
object about ten times smaller.  Nothing here runs at load time: tracekit never needs a
compiler to use an object.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tracekit.errors import TracekitError

#: tracekit.h and the bundled probes' headers
INCLUDE_DIR = Path(__file__).resolve().parent / "probes"
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")

#: clang / llvm-strip / bpftool names tried in order (Debian ships versioned names)
CLANGS = ("clang", "clang-19", "clang-20", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14")
STRIPS = ("llvm-strip", "llvm-strip-19", "llvm-strip-20", "llvm-strip-18", "llvm-strip-17", "llvm-strip-16")
BPFTOOLS = ("bpftool", "/usr/sbin/bpftool")

#: uname machine -> the arch name of libbpf's __TARGET_ARCH_<arch>
_ARCHES = {"x86_64": "x86", "i686": "x86", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390",
           "ppc64le": "powerpc", "ppc64": "powerpc", "riscv64": "riscv", "loongarch64": "loongarch",
           "mips64": "mips", "sparc64": "sparc"}


class BuildError(TracekitError):
    """A probe could not be compiled: a tool or header is missing, or clang failed."""


def find_tool(env: str, names: Sequence[str], what: str, package: str) -> str:
    forced = os.environ.get(env)
    # An explicit choice is the only candidate: silently using another tool would hide a typo.
    candidates = [forced] if forced else list(names)
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise BuildError(f"{what} not found (looked for {', '.join(candidates)}; "
                     f"set {env}=PATH to choose one): install it, e.g. apt-get install {package}")


def target_arch(machine: str | None = None) -> str:
    """libbpf's ``__TARGET_ARCH_*`` name for this machine (``x86`` on x86-64)."""
    m = machine or platform.machine()
    try:
        return _ARCHES[m]
    except KeyError:
        raise BuildError(f"no BPF target arch known for machine {m!r}: pass -D__TARGET_ARCH_<arch> yourself") from None


def cache_dir() -> Path:
    """Where generated headers are kept: $XDG_CACHE_HOME/tracekit (or ~/.cache/tracekit)."""
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(os.path.expanduser("~"), ".cache")
                                                if os.path.expanduser("~") != "~" else tempfile.gettempdir())
    return Path(base) / "tracekit"


def vmlinux_h(btf: str | os.PathLike[str] = KERNEL_BTF, *, directory: str | os.PathLike[str] | None = None) -> Path:
    """``vmlinux.h`` for the kernel whose BTF is ``btf``, generated once per BTF content.

    Returns the header's path (in ``directory``, default :func:`cache_dir`); the file is
    written under a temporary name and renamed, so concurrent builds never see half of it.
    """
    src = Path(btf)
    if not src.is_file():
        raise BuildError(f"{src} does not exist: the kernel needs CONFIG_DEBUG_INFO_BTF=y, or pass --btf FILE "
                         "(a raw BTF blob or an ELF with .BTF) to generate vmlinux.h from")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = Path(directory) if directory is not None else cache_dir()
    out = out / f"vmlinux-{digest}" / "vmlinux.h"
    if out.is_file():
        return out
    bpftool = find_tool("BPFTOOL", BPFTOOLS, "bpftool (to generate vmlinux.h from the kernel's BTF)", "bpftool")
    res = subprocess.run([bpftool, "btf", "dump", "file", str(src), "format", "c"], capture_output=True)
    if res.returncode != 0:
        raise BuildError(f"bpftool btf dump file {src} failed: {res.stderr.decode(errors='replace').strip()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".vmlinux.h.{os.getpid()}.tmp")
        tmp.write_bytes(res.stdout)
        tmp.replace(out)
    except OSError as e:
        raise BuildError(f"cannot write {out}: {e.strerror} (set XDG_CACHE_HOME to a writable directory)") from None
    return out


def libbpf_include_dir() -> Path:
    """The directory that holds ``bpf/bpf_helpers.h`` (libbpf's BPF-side headers)."""
    for d in (os.environ.get("LIBBPF_INCLUDE"), "/usr/include", "/usr/local/include"):
        if d and (Path(d) / "bpf" / "bpf_helpers.h").is_file():
            return Path(d)
    raise BuildError("libbpf's headers (<bpf/bpf_helpers.h>) not found in /usr/include or /usr/local/include: "
                     "install them (apt-get install libbpf-dev) or set LIBBPF_INCLUDE=DIR")


def default_output(src: str | os.PathLike[str]) -> Path:
    """``my.bpf.c`` -> ``my.bpf.o``; ``my.c`` -> ``my.bpf.o``."""
    p = Path(src)
    name = p.name.removesuffix(".c")
    return p.with_name(name + (".o" if name.endswith(".bpf") else ".bpf.o"))


def compile_probe(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    btf: str | os.PathLike[str] = KERNEL_BTF,
    include: Sequence[str | os.PathLike[str]] = (),
    defines: Sequence[str] = (),
    cflags: Sequence[str] = (),
    strip: bool = True,
) -> Path:
    """Compile BPF C ``src`` to a CO-RE object (default ``<src>.bpf.o``) and return its path."""
    source = Path(src)
    if not source.is_file():
        raise BuildError(f"no such source file: {source}")
    output = Path(out) if out is not None else default_output(source)
    clang = find_tool("CLANG", CLANGS, "clang (with the BPF target)", "clang")
    header = vmlinux_h(btf)
    cmd = [
        clang, "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{target_arch()}",
        *(f"-D{d}" for d in defines),
        "-I", str(source.resolve().parent),
        *(a for d in include for a in ("-I", str(d))),
        "-I", str(header.parent), "-I", str(INCLUDE_DIR), "-idirafter", str(libbpf_include_dir()),
        *cflags, "-c", str(source), "-o", str(output),
    ]
    res = subprocess.run(cmd, capture_output=True)
    if res.returncode != 0:
        raise BuildError(f"clang failed on {source}:\n{res.stderr.decode(errors='replace').rstrip()}")
    if strip:
        llvm_strip = next((s for s in (shutil.which(n) for n in STRIPS) if s), None)
        # Stripping is a size optimisation: DWARF is not needed once .BTF exists.
        if llvm_strip is not None:
            subprocess.run([llvm_strip, "-g", str(output)], capture_output=True, check=False)
    return output

"""User-space probes: uprobe/uretprobe on a function of an ELF binary or shared library.

The kernel wants a *file offset*; programs name a symbol.  The symbol is looked up in
``.symtab`` and ``.dynsym`` (stripped libraries keep only the latter), and its virtual
address is turned into a file offset through the PT_LOAD program header containing it
(``vaddr - p_vaddr + p_offset``), which is right for executables, PIEs and shared
libraries alike.  Attachment goes through the uprobe PMU (``config1`` = path,
``config2`` = offset), or through tracefs ``uprobe_events`` where there is no PMU.

Targets, as in libbpf's section names: ``/path/to/bin:func``, ``bin:func+0x10``,
``libc.so.6:malloc``, ``/path:0x1234`` (a raw file offset).  A bare name is looked up in
the library directories (names containing ``.so``) or in ``$PATH``.

A uprobe may carry a ``ref_ctr_offset`` (Linux 4.20): the file offset of a USDT semaphore,
which the kernel then increments in every process mapping the file while the probe
exists (:mod:`tracekit.hooks.usdt`).

uprobe.multi (BPF_TRACE_UPROBE_MULTI, Linux 6.6) attaches one program to many offsets of
one file with a single BPF link: ``SEC("uprobe.multi/PATH:PATTERN")`` globs over the
file's function symbols (one offset per address: aliases would run the program twice).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fnmatch
import functools
import os
import re
import shutil
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from tracekit.errors import RESOURCE_ERRNOS, AttachError, NotSupportedError, PermissionDeniedError, SyscallError
from tracekit.hooks.kprobe import (
    PMU_ROOT,
    open_legacy_probe,
    open_pmu_probe,
    pmu_type,
    remove_legacy_event,
    sweep_once,
)
from tracekit.hooks.links import Link, attach_perf_event
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.kernel.syscalls.bpf import ENOTSUPP
from tracekit.uapi import AttachType, Cmd, ProgType

LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
            "/usr/local/lib")

_BIND_RANK = {"STB_GLOBAL": 0, "STB_WEAK": 1, "STB_LOCAL": 2}


@dataclass(frozen=True)
class UprobeTarget:
    path: str
    func: str  # "" for a raw offset
    offset: int  # added to the symbol's file offset, or the raw file offset


def parse_uprobe_target(target: str) -> UprobeTarget:
    """``path:func[+off]`` or ``path:0xOFFSET`` -> :class:`UprobeTarget`."""
    path, sep, rest = target.rpartition(":")
    if not sep or not path or not rest:
        raise AttachError(f"invalid uprobe target {target!r}: expected 'path:function[+offset]' "
                          "(e.g. '/usr/bin/bash:readline' or 'libc.so.6:malloc')")
    if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", rest):
        return UprobeTarget(path, "", int(rest, 0))
    func, plus, off = rest.partition("+")
    try:
        offset = int(off, 0) if plus else 0
    except ValueError:
        raise AttachError(f"invalid uprobe offset {off!r} in {target!r}") from None
    return UprobeTarget(path, func, offset)


def resolve_path(path: str) -> str:
    """An absolute path for ``path``: as given when it has a '/', else searched."""
    if "/" in path:
        if not os.path.isfile(path):
            raise AttachError(f"uprobe target {path!r} does not exist or is not a file")
        return os.path.abspath(path)
    if ".so" in path:
        for d in LIB_DIRS:
            cand = os.path.join(d, path)
            if os.path.isfile(cand):
                return cand
        raise AttachError(f"library {path!r} not found in {', '.join(LIB_DIRS)}; give its full path")
    found = shutil.which(path)
    if found is None:
        raise AttachError(f"program {path!r} not found in $PATH; give its full path")
    return os.path.abspath(found)


_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym
_STT_FUNC, _STT_GNU_IFUNC = 2, 10
_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK"}


@lru_cache(maxsize=64)
def _elf_tables(path: str, mtime_ns: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, int, int]]]:
    """(symbol table bytes, its string table bytes) for .symtab/.dynsym, and PT_LOAD
    (vaddr, memsz, offset) ranges.  pyelftools reads the headers; symbols are scanned
    with struct below (pyelftools' per-symbol objects cost seconds for a libc under qemu)."""
    from elftools.common.exceptions import ELFError as _PyELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_type"] not in ("ET_EXEC", "ET_DYN"):
                raise AttachError(f"{path}: {elf['e_type']} is not an executable or shared library")
            if elf.elfclass != 64 or not elf.little_endian:
                raise AttachError(f"{path}: only 64-bit little-endian ELF files are supported")
            loads = [(seg["p_vaddr"], seg["p_memsz"], seg["p_offset"]) for seg in elf.iter_segments()
                     if seg["p_type"] == "PT_LOAD"]
            tables = []
            for secname in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(secname)
                if sec is None or sec["sh_type"] == "SHT_NOBITS":
                    continue
                strtab = elf.get_section(sec["sh_link"])
                tables.append((sec.data(), strtab.data()))
    except (OSError, _PyELFError) as e:
        if isinstance(e, PermissionError):
            raise PermissionDeniedError(f"read {path}", e.errno or 13,
                                        f"{path} is not readable by uid {os.geteuid()}") from None
        if isinstance(e, OSError) and e.errno in RESOURCE_ERRNOS:
            from tracekit.kernel.syscalls.diagnose import resource_error

            raise resource_error(f"read {path}", e.errno, kind="file") from None
        raise AttachError(f"cannot read ELF symbols of {path}: {e}") from None
    return tables, loads


def _name_offsets(strtab: bytes, name: bytes) -> set[int]:
    """Offsets in ``strtab`` at which the string ``name`` reads (linkers share suffixes:
    "getpgid" may be the tail of "__getpgid", so no NUL is required before it)."""
    out = set()
    needle = name + b"\0"
    i = strtab.find(needle)
    while i >= 0:
        out.add(i)
        i = strtab.find(needle, i + 1)
    return out


def function_symbols(path: str, func: str) -> list[tuple[int, str]]:
    """``(vaddr, binding)`` of every defined function symbol ``func`` in ``path``."""
    tables, _ = _elf_tables(path, os.stat(path).st_mtime_ns)
    found: list[tuple[int, str]] = []
    for symtab, strtab in tables:
        want = _name_offsets(strtab, func.encode())
        if not want:
            continue
        for st_name, st_info, _other, shndx, value, _size in _SYM.iter_unpack(symtab[: len(symtab) // 24 * 24]):
            if st_name in want and shndx != 0 and value and (st_info & 0xF) in (_STT_FUNC, _STT_GNU_IFUNC):
                entry = (value, _BINDS.get(st_info >> 4, "other"))
                if entry not in found:
                    found.append(entry)
    return found


def _similar(path: str, func: str) -> list[str]:
    tables, _ = _elf_tables(path, os.stat(path).st_mtime_ns)
    names: set[str] = set()
    for _, strtab in tables:
        needle = func.encode()
        i = strtab.find(needle)
        while i >= 0 and len(names) < 50:
            start = strtab.rfind(b"\0", 0, i) + 1
            end = strtab.find(b"\0", i)
            names.add(strtab[start:end].decode(errors="replace"))
            i = strtab.find(needle, end)
    return sorted(names)[:5]


def symbol_offset(path: str, func: str) -> int:
    """File offset of function ``func`` in ELF ``path`` (``.symtab`` and ``.dynsym``)."""
    cands = function_symbols(path, func)
    if not cands:
        near = _similar(path, func)
        raise AttachError(f"no function {func!r} in {path}" + (f"; similar: {', '.join(near)}" if near else
                                                               " (stripped binary? give a raw offset path:0x...)"))
    best = min(_BIND_RANK.get(b, 3) for _, b in cands)
    addrs = sorted({a for a, b in cands if _BIND_RANK.get(b, 3) == best})
    if len(addrs) > 1:
        raise AttachError(f"function {func!r} is defined {len(addrs)} times in {path} "
                          f"(at {', '.join(hex(a) for a in addrs)}); attach by offset instead")
    vaddr = addrs[0]
    _, loads = _elf_tables(path, os.stat(path).st_mtime_ns)
    for p_vaddr, memsz, p_offset in loads:
        if p_vaddr <= vaddr < p_vaddr + memsz:
            return vaddr - p_vaddr + p_offset
    raise AttachError(f"{path}: address {vaddr:#x} of {func!r} lies in no loadable segment")


def ref_ctr_shift() -> int | None:
    """The config bit where the uprobe PMU takes a ``ref_ctr_offset`` (``format/ref_ctr_offset``
    reads "config:32-63"), or None on kernels before 4.20 that cannot maintain semaphores."""
    try:
        with open(f"{PMU_ROOT}/uprobe/format/ref_ctr_offset") as f:
            text = f.read().strip()
    except OSError:
        return None
    m = re.fullmatch(r"config:(\d+)-(\d+)", text)
    return int(m.group(1)) if m else None


def attach_uprobe(prog_fd: int, path: str, func: str = "", offset: int = 0, *, retprobe: bool = False,
                  pid: int = -1, cookie: int = 0, legacy: bool | None = None, ref_ctr_offset: int = 0) -> Link:
    """Attach a uprobe program to ``func`` (+``offset``) of ``path`` (or at raw file ``offset``).

    ``pid`` -1 probes every process mapping the file; a pid limits it to that process.
    ``legacy`` None prefers the uprobe PMU; True forces tracefs ``uprobe_events``.
    ``ref_ctr_offset`` (file offset of a USDT semaphore) makes the kernel increment that
    counter in every process while the probe exists (Linux 4.20).
    """
    kind = "uretprobe" if retprobe else "uprobe"
    real = resolve_path(path)
    file_off = (symbol_offset(real, func) if func else 0) + offset
    label = f"{real}:{func}" + (f"+{offset:#x}" if func and offset else "") if func else f"{real}:{offset:#x}"
    what = f"{kind} {label}" + (f" (pid {pid})" if pid >= 0 else "")
    use_pmu = pmu_type("uprobe") is not None if legacy is None else not legacy
    extra = 0
    if ref_ctr_offset and use_pmu:
        shift = ref_ctr_shift()
        if shift is None:
            raise NotSupportedError("uprobe reference counters (USDT semaphores)", "4.20",
                                    f"{PMU_ROOT}/uprobe/format/ref_ctr_offset does not exist")
        if ref_ctr_offset >= 1 << (64 - shift):
            raise AttachError(f"{what}: semaphore file offset {ref_ctr_offset:#x} does not fit the PMU's "
                              "ref_ctr_offset field")
        extra = ref_ctr_offset << shift
    if use_pmu:
        sweep_once("uprobe")  # events a killed legacy user left behind go at our start too
        try:
            pfd = open_pmu_probe("uprobe", real, file_off, retprobe=retprobe, pid=pid, what=what,
                                 extra_config=extra)
        except PermissionDeniedError:
            raise
        except SyscallError as e:
            if e.errno in RESOURCE_ERRNOS:
                raise
            raise AttachError(f"cannot create {what} at file offset {file_off:#x}: {e}") from None
        return attach_perf_event(prog_fd, pfd, cookie=cookie, kind=kind, target=label)
    if any(c.isspace() for c in real):
        raise AttachError(f"{real!r}: tracefs uprobe_events cannot name a path containing whitespace")
    # uprobe_events takes the semaphore as "PATH:OFFSET(REF_CTR_OFFSET)" (also 4.20)
    ref = f"({ref_ctr_offset:#x})" if ref_ctr_offset else ""
    pfd, name = open_legacy_probe("uprobe", f"{real}:{file_off:#x}{ref}", os.path.basename(real) + "_" + (func or "off"),
                                  retprobe=retprobe, pid=pid, what=what)
    return attach_perf_event(prog_fd, pfd, cookie=cookie, kind=kind, target=label,
                             cleanup=lambda: remove_legacy_event("uprobe", name))


# --------------------------------------------------------------------------- uprobe.multi

#: BPF_F_UPROBE_MULTI_RETURN (link_create.uprobe_multi.flags)
UPROBE_MULTI_RETURN = 1


def _file_offset(path: str, vaddr: int) -> int | None:
    _, loads = _elf_tables(path, os.stat(path).st_mtime_ns)
    for p_vaddr, memsz, p_offset in loads:
        if p_vaddr <= vaddr < p_vaddr + memsz:
            return vaddr - p_vaddr + p_offset
    return None


def match_symbols(path: str, pattern: str) -> list[tuple[str, int]]:
    """``(name, file offset)`` of the defined functions of ELF ``path`` whose name matches
    glob ``pattern``, in symbol-table order, one per address (``.symtab`` and ``.dynsym``
    list the same function, and aliases such as ``malloc``/``__libc_malloc`` share an
    address: a second uprobe there would run the program twice per call)."""
    real = resolve_path(path)
    tables, _ = _elf_tables(real, os.stat(real).st_mtime_ns)
    exact = not any(c in pattern for c in "*?[")
    by_addr: dict[int, tuple[str, int]] = {}  # vaddr -> (name, bind rank)
    for symtab, strtab in tables:
        for st_name, st_info, _other, shndx, value, _size in _SYM.iter_unpack(symtab[: len(symtab) // 24 * 24]):
            if shndx == 0 or not value or (st_info & 0xF) not in (_STT_FUNC, _STT_GNU_IFUNC):
                continue
            end = strtab.find(b"\0", st_name)
            name = strtab[st_name:end if end >= 0 else len(strtab)].decode(errors="replace")
            if not ((name == pattern) if exact else fnmatch.fnmatchcase(name, pattern)):
                continue
            # '@' versions ("memcpy@GLIBC_2.2.5") are .symtab spellings of the same address
            rank = _BIND_RANK.get(_BINDS.get(st_info >> 4, "other"), 3)
            old = by_addr.get(value)
            if old is None or rank < old[1]:
                by_addr[value] = (name, rank)
    out = []
    for vaddr, (name, _rank) in by_addr.items():
        off = _file_offset(real, vaddr)
        if off is not None:
            out.append((name, off))
    return out


def uprobe_multi_supported() -> bool:
    """Whether the kernel has BPF_TRACE_UPROBE_MULTI links (Linux 6.6).

    Loading a kprobe program with that expected attach type is not proof: kernels before
    6.6 do not check a kprobe program's expected attach type, so it loads there too.  The
    link is the proof, as in libbpf: a link on "/" (not a regular file) fails with EBADF
    only where the kernel knows uprobe.multi links (EINVAL elsewhere)."""
    from tracekit.kernel import features

    if "attach_type_trace_uprobe_multi" in features._overrides:
        return features._overrides["attach_type_trace_uprobe_multi"]
    return features.attach_type("trace_uprobe_multi") and _uprobe_multi_link_probe()


@functools.cache
def _uprobe_multi_link_probe() -> bool:
    from tracekit.obj.insn import encode, exit_insn, mov64_imm

    fd, err, _ = _bpf.prog_load(ProgType.KPROBE, encode([mov64_imm(0, 0), exit_insn()]), license="GPL",
                                name="tk_probe", expected_attach_type=AttachType.TRACE_UPROBE_MULTI)
    if fd < 0 or err:
        return False
    try:
        _link_create_uprobe_multi(fd, "/", [0], None, None, 0, -1, what="uprobe.multi feature probe").close()
        return True  # (not expected: "/" is no ELF file)
    except AttachError as e:
        return "EBADF" in str(e)
    except NotSupportedError:
        return False
    finally:
        os.close(fd)


def attach_uprobe_multi(prog_fd: int, path: str, pattern: str | None = None, *,
                        symbols: Sequence[str] | None = None, offsets: Sequence[int] | None = None,
                        cookies: Sequence[int] | None = None, ref_ctr_offsets: Sequence[int] | None = None,
                        cookie: int = 0, retprobe: bool = False, pid: int = -1) -> Link:
    """Attach one program to many functions (or file offsets) of ``path`` with one BPF link.

    Exactly one of ``pattern`` (a glob over the ELF's function symbols), ``symbols`` (exact
    names) or ``offsets`` (file offsets) says where.  ``cookies`` gives each target its own
    BPF cookie (one per symbol or offset); ``cookie`` gives all the same.  ``pid`` -1
    probes every process.  The program must have been loaded as
    ``SEC("uprobe.multi")``/``SEC("uretprobe.multi")`` (expected attach type
    BPF_TRACE_UPROBE_MULTI).
    """
    kind = "uretprobe.multi" if retprobe else "uprobe.multi"
    if sum(x is not None for x in (pattern, symbols, offsets)) != 1:
        raise AttachError(f"{kind}: give exactly one of a pattern, a list of symbols or a list of offsets")
    real = resolve_path(path)
    if pattern is not None:
        found = match_symbols(real, pattern)
        if not found:
            near = _similar(real, pattern.strip("*?[]")) if pattern.strip("*?[]") else []
            raise AttachError(f"{kind}: no function of {real} matches {pattern!r}"
                              + (f"; similar: {', '.join(near)}" if near else ""))
        if cookies is not None:
            raise AttachError(f"{kind}: per-function cookies need an explicit list of symbols or "
                              "offsets (a pattern's match order is the symbol table's)")
        offs = [o for _, o in found]
        label = f"{real}:{pattern}"
    elif symbols is not None:
        offs = [symbol_offset(real, sym) for sym in symbols]
        label = f"{real}:" + ",".join(list(symbols)[:3]) + (",..." if len(symbols) > 3 else "")
    else:
        offs = [int(o) for o in offsets or ()]
        label = f"{real}:" + ",".join(hex(o) for o in offs[:3]) + (",..." if len(offs) > 3 else "")
    if not offs:
        raise AttachError(f"{kind}: empty list of targets")
    for name, seq in (("cookies", cookies), ("ref_ctr_offsets", ref_ctr_offsets)):
        if seq is not None and len(seq) != len(offs):
            raise AttachError(f"{kind}: {len(seq)} {name} for {len(offs)} targets; give one each")
    cks = list(cookies) if cookies is not None else ([cookie] * len(offs) if cookie else None)
    if not uprobe_multi_supported():
        raise NotSupportedError(
            "uprobe.multi links", "6.6",
            "BPF_TRACE_UPROBE_MULTI is unknown to this kernel (or it lacks CONFIG_UPROBES); attach each "
            "function with SEC(\"uprobe/PATH:FUNC\") and attach_uprobe() instead")
    fd = _link_create_uprobe_multi(prog_fd, real, offs, cks, list(ref_ctr_offsets) if ref_ctr_offsets else None,
                                   UPROBE_MULTI_RETURN if retprobe else 0, pid, what=f"{kind} {label}")
    link = Link(fd, kind=kind, target=label, cookie=cookie)
    link.offsets = offs  # type: ignore[attr-defined]
    return link


def _link_create_uprobe_multi(prog_fd: int, path: str, offsets: list[int], cookies: list[int] | None,
                              ref_ctr_offsets: list[int] | None, flags: int, pid: int, *, what: str) -> FD:
    """BPF_LINK_CREATE with link_create.uprobe_multi filled (the arrays live through the call)."""
    n = len(offsets)
    a = _bpf.LinkCreateAttr(prog_fd=prog_fd, target_fd=0, attach_type=AttachType.TRACE_UPROBE_MULTI, flags=0)
    um = a.uprobe_multi
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    arrays = {name: (ctypes.c_uint64 * n)(*vals) for name, vals in
              (("offsets", offsets), ("cookies", cookies), ("ref_ctr_offsets", ref_ctr_offsets)) if vals}
    um.path = ctypes.addressof(path_buf)
    for name, arr in arrays.items():
        setattr(um, name, ctypes.addressof(arr))
    um.cnt = n
    um.flags = flags
    um.pid = pid if pid > 0 else 0  # 0: every process
    try:
        return FD(_bpf.bpf(Cmd.LINK_CREATE, a, f"create {what}"), "BPF link")
    except PermissionDeniedError:
        raise
    except SyscallError as e:
        if e.errno in (_errno.EOPNOTSUPP, ENOTSUPP):
            raise NotSupportedError("uprobe.multi links", "6.6", f"BPF_LINK_CREATE answered {e}") from None
        hint = {
            _errno.EINVAL: "an offset is not on an instruction, or the program was not loaded as "
                           "SEC(\"uprobe.multi/...\") (expected attach type BPF_TRACE_UPROBE_MULTI)",
            _errno.ESRCH: f"no process {pid}",
            _errno.ENOENT: f"{path} does not exist",
            _errno.EBADF: "bad program fd",
        }.get(e.errno, "")
        raise AttachError(f"cannot attach {what} ({n} targets): {e}" + (f"; {hint}" if hint else "")) from None
    finally:
        del path_buf, arrays


__all__ = ["UprobeTarget", "parse_uprobe_target", "resolve_path", "symbol_offset", "function_symbols",
           "attach_uprobe", "ref_ctr_shift", "match_symbols", "uprobe_multi_supported", "attach_uprobe_multi",
           "UPROBE_MULTI_RETURN"]

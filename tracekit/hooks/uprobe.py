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
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from dataclasses import dataclass
from functools import lru_cache

from tracekit.errors import RESOURCE_ERRNOS, AttachError, PermissionDeniedError, SyscallError
from tracekit.hooks.kprobe import (
    open_legacy_probe,
    open_pmu_probe,
    pmu_type,
    remove_legacy_event,
    sweep_once,
)
from tracekit.hooks.links import Link, attach_perf_event

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


def attach_uprobe(prog_fd: int, path: str, func: str = "", offset: int = 0, *, retprobe: bool = False,
                  pid: int = -1, cookie: int = 0, legacy: bool | None = None) -> Link:
    """Attach a uprobe program to ``func`` (+``offset``) of ``path`` (or at raw file ``offset``).

    ``pid`` -1 probes every process mapping the file; a pid limits it to that process.
    ``legacy`` None prefers the uprobe PMU; True forces tracefs ``uprobe_events``.
    """
    kind = "uretprobe" if retprobe else "uprobe"
    real = resolve_path(path)
    file_off = (symbol_offset(real, func) if func else 0) + offset
    label = f"{real}:{func}" + (f"+{offset:#x}" if func and offset else "") if func else f"{real}:{offset:#x}"
    what = f"{kind} {label}" + (f" (pid {pid})" if pid >= 0 else "")
    use_pmu = pmu_type("uprobe") is not None if legacy is None else not legacy
    if use_pmu:
        sweep_once("uprobe")  # events a killed legacy user left behind go at our start too
        try:
            pfd = open_pmu_probe("uprobe", real, file_off, retprobe=retprobe, pid=pid, what=what)
        except PermissionDeniedError:
            raise
        except SyscallError as e:
            if e.errno in RESOURCE_ERRNOS:
                raise
            raise AttachError(f"cannot create {what} at file offset {file_off:#x}: {e}") from None
        return attach_perf_event(prog_fd, pfd, cookie=cookie, kind=kind, target=label)
    if any(c.isspace() for c in real):
        raise AttachError(f"{real!r}: tracefs uprobe_events cannot name a path containing whitespace")
    pfd, name = open_legacy_probe("uprobe", f"{real}:{file_off:#x}", os.path.basename(real) + "_" + (func or "off"),
                                  retprobe=retprobe, pid=pid, what=what)
    return attach_perf_event(prog_fd, pfd, cookie=cookie, kind=kind, target=label,
                             cleanup=lambda: remove_legacy_event("uprobe", name))


__all__ = ["UprobeTarget", "parse_uprobe_target", "resolve_path", "symbol_offset", "function_symbols",
           "attach_uprobe"]

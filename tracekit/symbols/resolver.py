"""Addresses -> :class:`Frame`: per-process user symbolizers and a shared ELF cache.

* :class:`ElfCache` parses each mapped ELF file once, keyed by the file's identity
  ``(st_dev, st_ino, st_mtime_ns, st_size)`` -- not its path, which differs between
  containers and can be replaced under a running process -- and bounded (LRU).  It also
  indexes the parsed files by GNU build id, for build-id stacks.
* :class:`ProcessSymbols` resolves the addresses of one process: ``/proc/PID/maps`` (read
  once, re-read on a miss, e.g. after ``dlopen``), each mapped file opened through
  ``/proc/PID/root`` (or ``/proc/PID/map_files`` for a deleted file) so that containers work,
  the file-offset -> virtual-address step for PIE and shared objects, the JIT perf map, and
  the vDSO.  A process that has exited is *reported* (frames carry ``exited=True`` and print
  ``[unknown] [process exited]``), never raised.
* :class:`Symbolizer` ties kernel symbols and a bounded set of processes together; it is
  what a tool holds.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from tracekit.errors import ELFError
from tracekit.symbols.elfsyms import ElfSymbols
from tracekit.symbols.kallsyms import KERNEL, KernelSymbols, kernel_symbols
from tracekit.symbols.perfmap import PerfMap, perf_map_path
from tracekit.symbols.procmaps import MapIndex, Mapping, read_maps

UNKNOWN = "[unknown]"
EXITED = "process exited"


@dataclass(frozen=True, slots=True)
class Frame:
    """One symbolized stack frame."""

    addr: int
    name: str | None
    offset: int = 0
    #: the file (user frames), ``kernel``/a module name/``bpf`` (kernel frames), or None
    module: str | None = None
    #: the process was gone before its address could be resolved
    exited: bool = False

    @property
    def resolved(self) -> bool:
        return self.name is not None

    @property
    def bare(self) -> str:
        """The name alone (``[unknown]`` if unresolved): what folded stacks use."""
        return self.name if self.name is not None else UNKNOWN

    def format(self, *, offset: bool = True, module: bool = True, address: bool = False) -> str:
        """BCC's frame text: ``name+0xoff [module]`` (module as a file's base name)."""
        text = self.bare
        if offset and self.name is not None:
            text += f"+{self.offset:#x}"
        if module:
            mod = os.path.basename(self.module) if self.module else (EXITED if self.exited else None)
            if mod and mod.startswith("[") and mod.endswith("]"):
                text += f" {mod}"  # [vdso], [heap]: already bracketed
            elif mod:
                text += f" [{mod}]"
        if address:
            text = f"{self.addr:#x} {text}"
        return text

    def __str__(self) -> str:
        return self.format()


# --- ELF files ---------------------------------------------------------------------------

FileKey = tuple[int, int, int, int]


def _file_key(st: os.stat_result) -> FileKey:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class ElfCache:
    """Parsed ELF files by identity, least recently used evicted beyond ``max_files``."""

    def __init__(self, max_files: int = 128) -> None:
        self.max_files = max_files
        self._files: OrderedDict[FileKey, ElfSymbols | None] = OrderedDict()
        self._paths: dict[FileKey, str] = {}
        self._by_build_id: dict[bytes, FileKey] = {}
        self._lock = threading.Lock()
        #: files parsed (misses): tests read it to see the cache working
        self.parsed = 0

    def __len__(self) -> int:
        return len(self._files)

    def get(self, path: str, debug_root: str = "") -> ElfSymbols | None:
        """The symbols of the file at ``path`` (None if it is not a readable ELF file).

        A stripped file with a build id gets its symbols from
        ``<debug_root>/usr/lib/debug/.build-id/xx/yyyy.debug`` when that exists, else from
        the file its ``.gnu_debuglink`` names (next to it, in its ``.debug/``, or under
        ``<debug_root>/usr/lib/debug/<its directory>``; the link's CRC32 must match), as gdb
        looks them up.  ``debug_root`` is the process's root (``/proc/PID/root``), which
        ``path`` starts with.
        """
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = _file_key(st)
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        elf: ElfSymbols | None
        try:
            elf = ElfSymbols.from_path(path)
        except (ELFError, OSError, ValueError):
            elf = None  # remembered as such: not retried for every address
        if elf is not None and not elf.has_symtab and (elf.build_id or elf.debuglink):
            elf = _with_debug_file(elf, path, debug_root)
        with self._lock:
            self.parsed += 1
            self._files[key] = elf
            self._paths[key] = path
            if elf is not None and elf.build_id:
                self._by_build_id[elf.build_id] = key
            while len(self._files) > self.max_files:
                old, oelf = self._files.popitem(last=False)
                self._paths.pop(old, None)
                if oelf is not None and oelf.build_id and self._by_build_id.get(oelf.build_id) == old:
                    del self._by_build_id[oelf.build_id]
        return elf

    def by_build_id(self, build_id: bytes) -> tuple[ElfSymbols, str] | None:
        """A cached file with this build id and the path it was read from."""
        with self._lock:
            key = self._by_build_id.get(build_id)
            if key is None:
                return None
            elf = self._files.get(key)
            return (elf, self._paths[key]) if elf is not None else None


def _with_debug_file(elf: ElfSymbols, path: str, root: str) -> ElfSymbols:
    """``elf``'s symbols from its separate debug file, if one is installed (see ElfCache.get)."""
    candidates: list[tuple[str, int | None]] = []
    if elf.build_id:
        h = elf.build_id.hex()
        candidates.append((f"{root}/usr/lib/debug/.build-id/{h[:2]}/{h[2:]}.debug", None))
    if elf.debuglink:
        d = os.path.dirname(path)
        in_ns = d[len(root):] if root and d.startswith(root) else d
        for c in (f"{d}/{elf.debuglink}", f"{d}/.debug/{elf.debuglink}",
                  f"{root}/usr/lib/debug{in_ns}/{elf.debuglink}"):
            if c != path:
                candidates.append((c, elf.debuglink_crc))
    for c, crc in candidates:
        try:
            if crc is not None:
                with open(c, "rb") as f:
                    if zlib.crc32(f.read()) != crc:
                        continue  # a debug file of another build
            dbg = ElfSymbols.from_path(c)
        except (ELFError, OSError, ValueError):
            continue
        if not len(dbg) or (dbg.build_id and elf.build_id and dbg.build_id != elf.build_id):
            continue
        # The debug file's symbols, with the loaded file's segments (the two agree on vaddrs).
        dbg.segments = elf.segments or dbg.segments
        dbg.build_id = elf.build_id
        return dbg
    return elf


_vdso: ElfSymbols | bool | None = False


def _vdso_symbols() -> ElfSymbols | None:
    """The vDSO's symbols, read from this process's own vDSO (the kernel maps the same image
    into every process of one ABI)."""
    global _vdso
    if _vdso is False:
        _vdso = None
        try:
            for m in read_maps(os.getpid()):
                if m.path == "[vdso]":
                    with open("/proc/self/mem", "rb") as f:
                        f.seek(m.start)
                        _vdso = ElfSymbols.from_bytes(f.read(m.end - m.start), "[vdso]")
                    break
        except (OSError, ELFError, ValueError):
            _vdso = None
    return _vdso if isinstance(_vdso, ElfSymbols) else None


# --- processes ------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a reused pid from the process we indexed."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _mnt_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


class ProcessSymbols:
    """The user-space symbolizer of one process (see the module docstring)."""

    def __init__(self, pid: int, cache: ElfCache | None = None, *, remap_interval: float = 0.5) -> None:
        self.pid = pid
        self.cache = cache if cache is not None else ElfCache()
        self.remap_interval = remap_interval
        self.exited = False
        self._maps: MapIndex | None = None
        self._loaded_at = float("-inf")
        self._start_time: int | None = None
        self._same_ns = False
        self._elfs: dict[tuple[int, int, str], ElfSymbols | None] = {}
        self._perf_map: PerfMap | None = None
        self._perf_map_checked = float("-inf")
        self._frames: dict[int, Frame] = {}
        self._lock = threading.Lock()

    # --- state ---

    def _load_maps(self) -> MapIndex | None:
        self._loaded_at = time.monotonic()
        start = _start_time(self.pid)
        try:
            maps = read_maps(self.pid)
        except (ProcessLookupError, PermissionError):
            # keep what we had: addresses sampled before the exit still resolve through it
            self.exited = True
            return self._maps
        if self._start_time is not None and start != self._start_time:
            self._elfs.clear()  # the pid was reused by another process
            self._perf_map = None
        self._frames.clear()  # addresses may now be in other files (dlclose/dlopen, JIT reuse)
        self._start_time = start
        self._same_ns = _mnt_ns(self.pid) == _mnt_ns("self")
        self._maps = MapIndex(maps)
        return self._maps

    def refresh(self) -> None:
        """Re-read the process's mappings now (e.g. after it loaded a library)."""
        with self._lock:
            self._load_maps()

    @property
    def mappings(self) -> list[Mapping]:
        with self._lock:
            idx = self._maps if self._maps is not None else self._load_maps()
        return list(idx.maps) if idx is not None else []

    def _elf_for(self, m: Mapping) -> ElfSymbols | None:
        path = m.file_path
        if path is None:
            return None
        k = (m.dev_major << 32 | m.dev_minor, m.inode, path)
        if k in self._elfs:
            return self._elfs[k]
        root = f"/proc/{self.pid}/root"
        elf = None
        candidates = [f"/proc/{self.pid}/map_files/{m.start:x}-{m.end:x}"] if m.deleted else []
        candidates.append(root + path)
        if self._same_ns:
            candidates.append(path)  # still readable after the process exited
        for c in candidates:
            elf = self.cache.get(c, debug_root=root if c.startswith(root + "/") else "")
            if elf is not None:
                break
        self._elfs[k] = elf
        return elf

    def _perf_symbols(self) -> PerfMap | None:
        now = time.monotonic()
        if now - self._perf_map_checked < self.remap_interval or self.exited:
            return self._perf_map
        self._perf_map_checked = now
        path = perf_map_path(self.pid)
        try:
            st = os.stat(path)
        except OSError:
            return self._perf_map
        if self._perf_map is None or self._perf_map.stamp != (st.st_mtime_ns, st.st_size):
            self._perf_map = PerfMap.read(path) or self._perf_map
        return self._perf_map

    # --- resolution ---

    #: resolved frames remembered per process (stacks share most of their frames)
    MAX_CACHED_FRAMES = 65536

    def resolve(self, addr: int) -> Frame:
        """The frame at user address ``addr`` of this process."""
        hit = self._frames.get(addr)
        if hit is not None:
            return hit
        frame = self._resolve(addr)
        if frame.resolved:  # unresolved ones may resolve after a remap: not remembered
            if len(self._frames) >= self.MAX_CACHED_FRAMES:
                self._frames.clear()
            self._frames[addr] = frame
        return frame

    def _resolve(self, addr: int) -> Frame:
        with self._lock:
            idx = self._maps if self._maps is not None else self._load_maps()
            m = idx.find(addr) if idx is not None else None
            if m is None and not self.exited and time.monotonic() - self._loaded_at >= self.remap_interval:
                idx = self._load_maps()  # a library mapped after our last read
                m = idx.find(addr) if idx is not None else None
            if m is None:
                pm = self._perf_symbols()
                sym = pm.lookup(addr) if pm is not None else None
                if sym is not None:
                    return Frame(addr, sym.name, addr - sym.addr, f"perf-{self.pid}.map")
                return Frame(addr, None, exited=self.exited)
            if m.path == "[vdso]":
                elf = _vdso_symbols()
                sym = elf.lookup(addr - m.start) if elf is not None else None
                if sym is not None:
                    return Frame(addr, sym.name, addr - m.start - sym.addr, "[vdso]")
                return Frame(addr, None, 0, "[vdso]")
            if m.file_path is None:
                # anonymous executable memory: JIT code, named by the perf map if any
                pm = self._perf_symbols()
                sym = pm.lookup(addr) if pm is not None else None
                if sym is not None:
                    return Frame(addr, sym.name, addr - sym.addr, f"perf-{self.pid}.map")
                return Frame(addr, None, 0, m.path or None, exited=self.exited)
            elf = self._elf_for(m)
            if elf is None:
                return Frame(addr, None, 0, m.file_path, exited=self.exited)
            vaddr = elf.offset_to_vaddr(m.file_offset(addr))
            sym = elf.lookup(vaddr) if vaddr is not None else None
            if sym is None or vaddr is None:
                return Frame(addr, None, 0, m.file_path)
            return Frame(addr, sym.name, vaddr - sym.addr, m.file_path)

    def resolve_all(self, addrs: list[int]) -> list[Frame]:
        return [self.resolve(a) for a in addrs]

    def elf_with_build_id(self, build_id: bytes) -> tuple[ElfSymbols, str] | None:
        """One of this process's mapped files whose build id is ``build_id``."""
        hit = self.cache.by_build_id(build_id)
        if hit is not None:
            return hit
        for m in self.mappings:
            if m.executable and m.file_path:
                elf = self._elf_for(m)
                if elf is not None and elf.build_id == build_id:
                    return elf, m.file_path
        return None


# --- everything --------------------------------------------------------------------------------


class Symbolizer:
    """Kernel and user symbolization for a tool: one ELF cache, a bounded set of processes."""

    def __init__(self, *, kernel: KernelSymbols | None = None, max_processes: int = 256,
                 elf_cache: ElfCache | None = None) -> None:
        self._kernel = kernel
        self.cache = elf_cache if elf_cache is not None else ElfCache()
        self.max_processes = max_processes
        self._procs: OrderedDict[int, ProcessSymbols] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def kernel(self) -> KernelSymbols:
        if self._kernel is None:
            self._kernel = kernel_symbols()
        return self._kernel

    def process(self, pid: int) -> ProcessSymbols:
        """The symbolizer of ``pid`` (its maps are read on its first lookup)."""
        with self._lock:
            p = self._procs.get(pid)
            if p is None:
                p = self._procs[pid] = ProcessSymbols(pid, self.cache)
                while len(self._procs) > self.max_processes:
                    self._procs.popitem(last=False)
            else:
                self._procs.move_to_end(pid)
            return p

    def watch(self, pid: int) -> ProcessSymbols:
        """Read ``pid``'s mappings now, while it runs, so its stacks resolve after it exits."""
        p = self.process(pid)
        p.mappings  # noqa: B018 -- loads them
        return p

    def forget(self, pid: int) -> None:
        with self._lock:
            self._procs.pop(pid, None)

    def kernel_frame(self, addr: int) -> Frame:
        hit = self.kernel.lookup(addr)
        if hit is None:
            return Frame(addr, None)
        sym, off = hit
        return Frame(addr, sym.name, off, sym.module)

    def kernel_frames(self, addrs: list[int]) -> list[Frame]:
        return [self.kernel_frame(a) for a in addrs]

    def user_frames(self, pid: int, addrs: list[int]) -> list[Frame]:
        p = self.process(pid)
        return [p.resolve(a) for a in addrs]

    def build_id_frame(self, build_id: bytes, offset: int, pid: int | None = None) -> Frame:
        """The frame at file ``offset`` of the file with ``build_id`` (a build-id stack entry)."""
        hit = self.cache.by_build_id(build_id)
        if hit is None and pid is not None:
            hit = self.process(pid).elf_with_build_id(build_id)
        if hit is None:
            h = build_id.hex()
            elf = self.cache.get(f"/usr/lib/debug/.build-id/{h[:2]}/{h[2:]}.debug")
            hit = (elf, h) if elf is not None else None
        if hit is None:
            return Frame(offset, None, 0, build_id.hex())
        elf, path = hit
        vaddr = elf.offset_to_vaddr(offset)
        sym = elf.lookup(vaddr) if vaddr is not None else None
        if sym is None or vaddr is None:
            return Frame(offset, None, 0, path)
        return Frame(offset, sym.name, vaddr - sym.addr, path)


__all__ = ["Frame", "ElfCache", "ProcessSymbols", "Symbolizer", "UNKNOWN", "EXITED", "KERNEL"]

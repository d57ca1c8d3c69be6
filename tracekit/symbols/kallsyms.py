"""Kernel symbols from ``/proc/kallsyms``: a lazily built, sorted, compact index.

``/proc/kallsyms`` lists ~100-200k symbols (core kernel, ``[module]`` symbols and, for
every loaded BPF program, ``bpf_prog_<tag>_<name> [bpf]``) without sizes.  A symbolizer
needs "which symbol starts at or before this address", so the file is parsed once into
parallel arrays sorted by address (``array('Q')`` addresses, one ``bytes`` blob of names
with ``array('I')`` offsets, ``array('H')`` module numbers) and searched with
:func:`bisect.bisect_right`.  That is ~20 bytes per symbol plus the name itself instead of
the ~200 bytes a tuple of Python objects per line would cost.

The core kernel's symbols never change while it runs; modules and BPF programs come and
go.  So the index is *not* re-read per lookup: only a lookup that lands outside every
known symbol or inside a module/BPF region (where a newer program or module may have
appeared) checks, at most once per ``recheck_interval`` seconds, whether ``/proc/modules``
or the set of ``[bpf]``/module lines changed, and rebuilds the index if so.

Without privileges (or with ``kernel.kptr_restrict`` >= 1 for a non-root reader) the kernel
prints every address as 0; that is detected and reported as
:class:`tracekit.errors.SymbolsUnavailableError` instead of "resolving" every address to the
first symbol.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from array import array
from bisect import bisect_right
from dataclasses import dataclass

from tracekit.errors import SymbolsUnavailableError

KALLSYMS = "/proc/kallsyms"
MODULES = "/proc/modules"
#: the module name of core kernel symbols in frames (BCC prints ``[kernel]``)
KERNEL = "kernel"
#: the pseudo-module of BPF programs and trampolines in kallsyms
BPF = "bpf"
#: kallsyms has no sizes; an address further than this past the nearest symbol is in no
#: symbol (e.g. a BPF program unloaded since: module space starts ~1 GiB above kernel text)
MAX_OFFSET = 1 << 20


@dataclass(frozen=True, slots=True)
class KernelSymbol:
    """A kernel symbol: ``name`` at ``addr`` in ``module`` (``kernel``, a module, or ``bpf``)."""

    name: str
    addr: int
    module: str
    type: str

    @property
    def bpf_prog(self) -> tuple[str, str] | None:
        """``(tag, name)`` for a ``bpf_prog_<tag>_<name>`` symbol of a BPF program."""
        if self.module != BPF or not self.name.startswith("bpf_prog_"):
            return None
        tag, _, name = self.name[len("bpf_prog_"):].partition("_")
        return (tag, name) if len(tag) == 16 else None


class _Index:
    """One immutable parse of kallsyms."""

    __slots__ = ("addrs", "name_offs", "names", "mods", "types", "modules", "dyn_digest")

    def __init__(self, data: bytes, path: str) -> None:
        # Straight into arrays and one names blob, a line at a time: a list of lines, of
        # per-line tuples or of name objects would leave more memory behind (in the
        # allocator's arenas) than the finished index takes.
        addrs = array("Q")
        mods = array("H")
        types = bytearray()
        offs = array("I")
        blob = bytearray()
        modules: list[str] = [KERNEL]
        mod_no: dict[bytes, int] = {}
        dyn = hashlib.sha1()
        nonzero = False
        ordered = True
        last = 0
        for line in io.BytesIO(data):
            line = line.rstrip()
            if line.endswith(b"]"):
                dyn.update(line)  # module and BPF lines: what refresh() compares
            parts = line.split()
            if len(parts) < 3:
                continue
            typ, name = parts[1], parts[2]
            if typ in (b"U", b"a", b"A") or name.startswith(b"__pfx_"):
                # undefined/absolute symbols are not code; __pfx_ is the padding before each
                # function (CONFIG_FUNCTION_PADDING_ALIGNMENT): a third of all lines, never a frame
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if addr:
                nonzero = True
            if addr < last:
                ordered = False
            last = addr
            n = 0
            if len(parts) > 3:
                mod = parts[3].strip(b"[]")
                n = mod_no.get(mod, -1)
                if n < 0:
                    n = mod_no[mod] = len(modules)
                    modules.append(mod.decode("utf-8", "replace"))
            addrs.append(addr)
            mods.append(n)
            types += typ[:1]
            offs.append(len(blob))
            blob += name
            blob += b"\0"
        if addrs and not nonzero:
            raise SymbolsUnavailableError(
                f"{path} shows every address as 0: the kernel hides them from this process. "
                f"Run as root (CAP_SYSLOG), or lower kernel.kptr_restrict "
                f"(currently {_read_text('/proc/sys/kernel/kptr_restrict').strip() or '?'}; "
                "sysctl -w kernel.kptr_restrict=0)"
            )
        if not addrs:
            raise SymbolsUnavailableError(f"{path} lists no symbols: is this kernel built with CONFIG_KALLSYMS?")
        if not ordered:
            # kallsyms is sorted except for modules and BPF programs; apply a permutation
            order = array("I", sorted(range(len(addrs)), key=addrs.__getitem__))
            addrs = array("Q", (addrs[k] for k in order))
            mods = array("H", (mods[k] for k in order))
            types = bytearray(types[k] for k in order)
            sorted_blob = bytearray()
            sorted_offs = array("I")
            for k in order:
                o = offs[k]
                sorted_offs.append(len(sorted_blob))
                sorted_blob += blob[o : blob.index(0, o) + 1]
            blob, offs = sorted_blob, sorted_offs
        if len(blob) >= 1 << 32:
            raise SymbolsUnavailableError(f"{path}: more than 4 GiB of symbol names")
        self.addrs = addrs
        self.mods = mods
        self.types = bytes(types)
        self.name_offs = offs
        self.names = bytes(blob)
        self.modules = modules
        self.dyn_digest = dyn.digest()

    def name(self, i: int) -> str:
        off = self.name_offs[i]
        return self.names[off : self.names.index(b"\0", off)].decode("utf-8", "replace")

    def symbol(self, i: int) -> KernelSymbol:
        return KernelSymbol(self.name(i), self.addrs[i], self.modules[self.mods[i]], chr(self.types[i]))

    def nbytes(self) -> int:
        """Bytes held by the index arrays (for memory accounting)."""
        return (self.addrs.itemsize * len(self.addrs) + self.name_offs.itemsize * len(self.name_offs)
                + self.mods.itemsize * len(self.mods) + len(self.types) + len(self.names))


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class KernelSymbols:
    """Kernel address -> symbol, from ``/proc/kallsyms`` (see the module docstring).

    Thread-safe; the index is built on the first lookup.  ``kallsyms_path`` and
    ``modules_path`` exist so tests can feed prepared files.
    """

    def __init__(self, kallsyms_path: str = KALLSYMS, modules_path: str = MODULES, *,
                 recheck_interval: float = 1.0) -> None:
        self.kallsyms_path = kallsyms_path
        self.modules_path = modules_path
        self.recheck_interval = recheck_interval
        self._index: _Index | None = None
        self._modules_digest = b""
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        #: how many times the index was (re)built: tests and stats read it
        self.loads = 0

    # --- index management ------------------------------------------------------------------

    def _modules_signature(self) -> bytes:
        return hashlib.sha1(_read_text(self.modules_path).encode()).digest()

    def _build(self, data: bytes | None = None) -> _Index:
        try:
            if data is None:
                data = _read_bytes(self.kallsyms_path)
        except FileNotFoundError:
            raise SymbolsUnavailableError(
                f"{self.kallsyms_path} does not exist: this kernel has no CONFIG_KALLSYMS, or /proc is not mounted"
            ) from None
        except PermissionError:
            raise SymbolsUnavailableError(f"cannot read {self.kallsyms_path}: run as root") from None
        self._modules_digest = self._modules_signature()
        idx = _Index(data, self.kallsyms_path)
        self._index = idx
        self._checked_at = time.monotonic()  # just read: no recheck for the next misses
        self.loads += 1
        return idx

    def _get(self) -> _Index:
        idx = self._index
        if idx is None:
            with self._lock:
                idx = self._index or self._build()
        return idx

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read kallsyms if modules or BPF programs changed (always with ``force``).

        Returns whether the index was rebuilt.  Called by lookups on a miss; call it
        yourself after loading a module or program you are about to symbolize.
        """
        with self._lock:
            self._checked_at = time.monotonic()
            if self._index is None or force:
                self._build()
                return True
            changed = self._modules_signature() != self._modules_digest
            data = _read_bytes(self.kallsyms_path)
            if not changed:
                # BPF programs do not show in /proc/modules: compare the [bpf]/module lines.
                dyn = hashlib.sha1()
                for line in data.split(b"\n"):
                    if line.endswith(b"]"):
                        dyn.update(line)
                changed = dyn.digest() != self._index.dyn_digest
            if changed:
                self._build(data)
            return changed

    # --- lookups -----------------------------------------------------------------------------

    def _find(self, idx: _Index, addr: int) -> int:
        return bisect_right(idx.addrs, addr) - 1

    def lookup(self, addr: int) -> tuple[KernelSymbol, int] | None:
        """``(symbol, offset)`` for the symbol at or before ``addr``, or ``None``."""
        idx = self._get()
        i = self._find(idx, addr)
        suspect = i < 0 or idx.mods[i] != 0 or addr - idx.addrs[i] > MAX_OFFSET
        # A miss, or a hit in a module/BPF region, where something newer may sit.
        if suspect and time.monotonic() - self._checked_at >= self.recheck_interval and self.refresh():
            idx = self._get()
            i = self._find(idx, addr)
        if i < 0 or addr - idx.addrs[i] > MAX_OFFSET:
            return None
        return idx.symbol(i), addr - idx.addrs[i]

    def symbol(self, name: str) -> KernelSymbol | None:
        """The first symbol called ``name`` (linear scan of the names blob)."""
        idx = self._get()
        needle = b"\0" + name.encode() + b"\0"
        pos = (b"\0" + idx.names).find(needle)
        if pos < 0:
            return None
        i = bisect_right(idx.name_offs, pos) - 1
        return idx.symbol(i)

    def __len__(self) -> int:
        return len(self._get().addrs)

    @property
    def nbytes(self) -> int:
        """Memory held by the index (arrays and names), in bytes."""
        return self._get().nbytes()


_default: KernelSymbols | None = None
_default_lock = threading.Lock()


def kernel_symbols() -> KernelSymbols:
    """The process-wide :class:`KernelSymbols` for /proc/kallsyms (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = KernelSymbols()
        return _default


__all__ = ["KernelSymbols", "KernelSymbol", "kernel_symbols", "KERNEL", "BPF"]

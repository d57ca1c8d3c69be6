"""Label decoders: bytes cut from a map key -> a Prometheus label value (ebpf_exporter's set).

Each decoder takes the previous decoder's output (the first one gets the raw key field) and
returns bytes, so they chain as in ebpf_exporter (``uint`` then ``static_map``, ``string``
then ``regexp``, ...).  A decoder raises :class:`~tracekit.errors.DecoderError` when its
input cannot be decoded (counted as a decoder error, the metric is left out of that
scrape) and :class:`SkipSample` when the sample should be dropped without error (a
``regexp`` that does not match).

The tables are our own: syscall names come from the kernel's uapi table
(:mod:`tracekit.agent.syscalls_x86_64`, topped up from the installed ``asm/unistd_64.h``),
errno names from Python's :mod:`errno`, kernel symbols from ``/proc/kallsyms`` through
:mod:`tracekit.symbols`, PCI names from ``pci.ids`` when the system has one.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import re
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracekit.errors import DecoderError

#: per thread: whether the decode_chain in progress gave a value that must not be cached
_state = threading.local()


class SkipSample(Exception):
    """The label set is to be dropped from the scrape (not an error): a regexp miss."""


@dataclass(frozen=True)
class DecoderSpec:
    """One ``decoders[]`` entry of a label."""

    name: str
    static_map: Mapping[str, str] | None = None
    allow_unknown: bool = False
    regexps: Sequence[str] = ()
    #: compiled ``regexps`` (filled by :func:`compile_decoder`)
    compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)


DecodeFn = Callable[[bytes, DecoderSpec], bytes]


# --- plain decoders ---------------------------------------------------------------------------


def _uint(b: bytes, spec: DecoderSpec) -> bytes:
    if len(b) not in (1, 2, 4, 8):
        raise DecoderError(f"uint decoder: a field of {len(b)} bytes (uint takes 1, 2, 4 or 8: fix the label's size)")
    return str(int.from_bytes(b, sys.byteorder)).encode()


def _string(b: bytes, spec: DecoderSpec) -> bytes:
    return b.split(b"\0", 1)[0]


def _hex(b: bytes, spec: DecoderSpec) -> bytes:
    return b.hex().encode()


def _static_map(b: bytes, spec: DecoderSpec) -> bytes:
    if spec.static_map is None:
        return b"empty mapping"
    s = b.decode(errors="replace")
    v = spec.static_map.get(s)
    if v is None:
        return b if spec.allow_unknown else b"unknown:" + b
    return v.encode()


def _regexp(b: bytes, spec: DecoderSpec) -> bytes:
    s = b.decode(errors="replace")
    for rx in spec.compiled:
        if rx.groups >= 2:  # as ebpf_exporter: only 0 or 1 capture groups are meaningful
            continue
        m = rx.search(s)
        if m is not None:
            return (m.group(1) if rx.groups == 1 else m.group(0)).encode()
    raise SkipSample(f"no regexp matched {s!r}")


def _decimal(b: bytes, what: str) -> int:
    try:
        return int(b.decode())
    except (UnicodeDecodeError, ValueError):
        raise DecoderError(f"{what} decoder takes a decimal number: put a uint decoder before it "
                           f"(got {b[:32]!r})") from None


# --- syscalls and errno -------------------------------------------------------------------------

_UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
_syscalls: dict[int, str] | None = None


def syscall_table() -> dict[int, str]:
    """Number -> name: the bundled table, topped up from the installed uapi header (newer
    syscalls), read once."""
    global _syscalls
    if _syscalls is None:
        from tracekit.agent.syscalls_x86_64 import SYSCALLS_X86_64

        table = dict(SYSCALLS_X86_64)
        try:
            for line in Path(_UNISTD).read_text().splitlines():
                m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                if m:
                    table.setdefault(int(m.group(2)), m.group(1))
        except OSError:
            pass
        _syscalls = table
    return _syscalls


def _syscall(b: bytes, spec: DecoderSpec) -> bytes:
    n = _decimal(b, "syscall")
    name = syscall_table().get(n)
    return name.encode() if name is not None else f"unknown_syscall:{n}".encode()


#: where Python's errno table picks an alias (or lacks the name), the kernel uapi's primary
#: name (asm-generic/errno*.h): EDEADLOCK -> EDEADLK, ENOTSUP -> EOPNOTSUPP, EHWPOISON
_ERRNO_PRIMARY = {35: "EDEADLK", 95: "EOPNOTSUPP", 133: "EHWPOISON"}


def _errno(b: bytes, spec: DecoderSpec) -> bytes:
    n = _decimal(b, "errno")
    name = _ERRNO_PRIMARY.get(n) or errno_mod.errorcode.get(n)
    return name.encode() if name is not None else f"unknown:{n}".encode()


# --- kernel symbols --------------------------------------------------------------------------------


def _ksyms() -> Any:
    from tracekit.symbols import kernel_symbols

    return kernel_symbols()


def _ksym(b: bytes, spec: DecoderSpec) -> bytes:
    if len(b) != 8:
        raise DecoderError(f"ksym decoder takes an 8-byte address, got {len(b)} bytes: make the label's size 8")
    addr = int.from_bytes(b, sys.byteorder)
    hit = _ksyms().lookup(addr)
    if hit is not None and hit[1] == 0:
        return _sym_text(hit[0]).encode()
    return f"unknown_addr:0x{addr:x}".encode()


def _sym_text(sym: Any) -> str:
    # ebpf_exporter prints kallsyms' third field verbatim: module symbols as "name\t[mod]"
    if sym.module and sym.module not in ("kernel", ""):
        return f"{sym.name}\t[{sym.module}]"
    return str(sym.name)


def _kstack(b: bytes, spec: DecoderSpec) -> bytes:
    if len(b) % 8:
        raise DecoderError(f"kstack decoder takes an array of 8-byte addresses, got {len(b)} bytes")
    frames = []
    ks = _ksyms()
    for (addr,) in struct.iter_unpack("=Q", b):
        if addr == 0:
            break
        hit = ks.lookup(addr)
        frames.append(hit[0].name if hit is not None else "??")
    return "\n".join(frames).encode()


# --- cgroups, addresses, devices -------------------------------------------------------------------

def cgroup2_root() -> str:
    """Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on unified systems,
    /sys/fs/cgroup/unified on hybrid ones (cgroup ids are cgroup2 inode numbers; v1
    hierarchies have their own inodes, which would collide)."""
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split()[4]
    except OSError:
        pass
    return "/sys/fs/cgroup"


CGROUP_ROOT = "/sys/fs/cgroup"


class CgroupPaths:
    """cgroup id (the cgroup2 directory's inode) -> path, rescanned on a miss at most once a
    second (cgroups come and go)."""

    def __init__(self, root: str | None = None) -> None:
        self._root = root
        self._paths: dict[int, str] = {}
        self._scanned = -1.0
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        if self._root is None:
            self._root = cgroup2_root()
        return self._root

    def scan(self) -> dict[int, str]:
        paths: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                paths[os.stat(dirpath).st_ino] = dirpath
            except OSError:
                continue
        return paths

    def learn(self, paths: Mapping[int, str]) -> None:
        """Ids found by someone else's walk (the cgroup_id_map sync)."""
        with self._lock:
            self._paths = {**self._paths, **paths}

    def path(self, cgid: int) -> str | None:
        import time

        p = self._paths.get(cgid)
        if p is None and time.monotonic() - self._scanned >= 0.2:
            with self._lock:
                self._paths = self.scan()
                self._scanned = time.monotonic()
            p = self._paths.get(cgid)
        return p


_cgroups = CgroupPaths()


def _cgroup(b: bytes, spec: DecoderSpec) -> bytes:
    n = _decimal(b, "cgroup")
    p = _cgroups.path(n)
    if p is None:
        _state.uncacheable = True  # the cgroup may appear by the next scrape
        return f"unknown_cgroup_id:{n}".encode()
    return p.encode()


def _inet_ip(b: bytes, spec: DecoderSpec) -> bytes:
    if len(b) == 4:
        return str(ipaddress.IPv4Address(b)).encode()
    if len(b) == 16:
        a = ipaddress.IPv6Address(b)
        # as Go's net.IP.String(): an IPv4-mapped address prints as the IPv4 address
        return str(a.ipv4_mapped if a.ipv4_mapped is not None else a).encode()
    return b"?" + b.hex().encode()


def _ifname(b: bytes, spec: DecoderSpec) -> bytes:
    if len(b) < 4:
        raise DecoderError(f"ifname decoder takes a 4-byte interface index, got {len(b)} bytes")
    idx = int.from_bytes(b[:4], sys.byteorder)
    try:
        return socket.if_indextoname(idx).encode()
    except OSError:
        return f"unknown:{idx}".encode()


def _partitions() -> dict[tuple[int, int], str]:
    out: dict[tuple[int, int], str] = {}
    try:
        lines = Path("/proc/partitions").read_text().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        if len(f) == 4 and f[0].isdigit() and f[1].isdigit():
            out[(int(f[0]), int(f[1]))] = f[3]
    return out


def _majorminor(b: bytes, spec: DecoderSpec) -> bytes:
    if len(b) < 4:
        raise DecoderError(f"majorminor decoder takes a 4-byte dev_t, got {len(b)} bytes")
    d = int.from_bytes(b[:4], sys.byteorder)
    # the kernel's new_encode_dev() layout, as the block tracepoints report dev
    major, minor = (d >> 8) & 0xFFF, (d & 0xFF) | ((d >> 12) & 0xFFF00)
    name = _partitions().get((major, minor))
    return name.encode() if name is not None else f"unknown:{major}:{minor}".encode()


def _dname(b: bytes, spec: DecoderSpec) -> bytes:
    labels: list[bytes] = []
    i = 0
    while i < len(b):
        n = b[i]
        if n == 0:
            break
        if i + 1 + n > len(b):
            return b  # a label running past the end: not a wire name, left as it was
        labels.append(b[i + 1:i + 1 + n])
        i += 1 + n
    return b".".join(labels) if labels else b"."


# --- PCI -----------------------------------------------------------------------------------------------

PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")


@dataclass
class PciIds:
    vendors: dict[int, str] = field(default_factory=dict)
    devices: dict[int, str] = field(default_factory=dict)  # vendor<<16 | device
    classes: dict[int, str] = field(default_factory=dict)
    subclasses: dict[int, str] = field(default_factory=dict)  # class<<8 | subclass


def parse_pci_ids(text: str) -> PciIds:
    """pci.ids: vendors (``vvvv  name``) with tab-indented devices, and ``C cc  name`` classes
    with tab-indented subclasses; sub-subentries (two tabs) are skipped."""
    db = PciIds()
    vendor = cls = None
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("\t\t"):
            continue
        if line.startswith("C "):
            code, _, name = line[2:].partition("  ")
            cls, vendor = int(code, 16), None
            db.classes[cls] = name.strip()
        elif line.startswith("\t"):
            code, _, name = line[1:].partition("  ")
            try:
                n = int(code, 16)
            except ValueError:
                continue
            if vendor is not None:
                db.devices[vendor << 16 | n] = name.strip()
            elif cls is not None:
                db.subclasses[cls << 8 | n] = name.strip()
        else:
            code, _, name = line.partition("  ")
            try:
                vendor, cls = int(code, 16), None
            except ValueError:
                vendor = cls = None
                continue
            db.vendors[vendor] = name.strip()
    return db


# False: not looked for yet; None: no pci.ids on this host.  (Not named _pci: the decoder
# factory below has that name, and the cache would never be filled.)
_pci_cache: PciIds | bool | None = False


def _pci_db() -> PciIds | None:
    global _pci_cache
    if _pci_cache is False:
        _pci_cache = None
        for p in PCI_IDS:
            try:
                _pci_cache = parse_pci_ids(Path(p).read_text(errors="replace"))
                break
            except OSError:
                continue
    return _pci_cache if isinstance(_pci_cache, PciIds) else None


def _pci(kind: str, width: int) -> DecodeFn:
    def decode(b: bytes, spec: DecoderSpec) -> bytes:
        n = _decimal(b, f"pci_{kind}")
        db = _pci_db()
        if db is None:
            # no pci.ids on this system: the number in hex (ebpf_exporter says "missing pci.ids db")
            return f"0x{n:0{width}x}".encode()
        table = {"vendor": db.vendors, "device": db.devices, "class": db.classes, "subclass": db.subclasses}[kind]
        name = table.get(n)
        return name.encode() if name is not None else f"unknown pci {kind}: 0x{n:0{width}x}".encode()

    return decode


DECODERS: dict[str, DecodeFn] = {
    "uint": _uint,
    "string": _string,
    "hex": _hex,
    "static_map": _static_map,
    "regexp": _regexp,
    "syscall": _syscall,
    "errno": _errno,
    "ksym": _ksym,
    "kstack": _kstack,
    "cgroup": _cgroup,
    "inet_ip": _inet_ip,
    "ifname": _ifname,
    "majorminor": _majorminor,
    "dname": _dname,
    "pci_vendor": _pci("vendor", 4),
    "pci_device": _pci("device", 8),
    "pci_class": _pci("class", 2),
    "pci_subclass": _pci("subclass", 4),
}


def compile_decoder(spec: DecoderSpec) -> DecoderSpec:
    """Check the decoder's name and compile its regexps (errors say which decoders exist)."""
    if spec.name not in DECODERS:
        raise DecoderError(f"unknown decoder {spec.name!r} (decoders: {', '.join(sorted(DECODERS))})")
    if spec.name == "regexp":
        try:
            compiled = tuple(re.compile(r) for r in spec.regexps)
        except re.error as e:
            raise DecoderError(f"regexp decoder: bad regexp: {e}") from None
        return DecoderSpec(spec.name, spec.static_map, spec.allow_unknown, tuple(spec.regexps), compiled)
    return spec


def decode_chain(data: bytes, decoders: Sequence[DecoderSpec]) -> tuple[str, bool]:
    """Run ``decoders`` in order over one key field: (label value, whether it may be cached
    for this raw key: not a miss that may resolve later, such as a cgroup not seen yet)."""
    _state.uncacheable = False
    for d in decoders:
        data = DECODERS[d.name](data, d)
    return data.decode(errors="replace"), not _state.uncacheable

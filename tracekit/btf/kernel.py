"""The running kernel's BTF (vmlinux and modules), shared by everything in the process.

vmlinux BTF is read once per process (thread-safe) and its two derived arrays -- the word
offset of every type and the name offset of every type -- are kept in an on-disk cache
keyed by a hash of the BTF's bytes, so a second process skips the scan.  The cache lives
under ``$XDG_CACHE_HOME/tracekit`` (or ``~/.cache/tracekit``), else
``/var/cache/tracekit``; when neither is writable tracekit silently works without it.

Reading files is all this module does; the one helper that needs a BTF *fd* of a module
(:func:`module_btf_fd`, for attaching to a module's functions) imports the syscall layer
lazily so the pure layer stays importable without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import tempfile
import threading
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BTFError
from .reader import BTF

if TYPE_CHECKING:  # pragma: no cover
    from ..fd import FD

log = logging.getLogger("tracekit.btf")

SYSFS_BTF = Path("/sys/kernel/btf")
_CACHE_MAGIC = b"TKBTFIX1"
_CACHE_HDR = struct.Struct("<8sII32s")  # magic, type count, name-array bytes, sha256 of the BTF

_lock = threading.Lock()
_vmlinux: BTF | None = None
_modules: dict[str, BTF] | None = None


def vmlinux() -> BTF:
    """The running kernel's BTF, loaded once per process."""
    global _vmlinux
    b = _vmlinux
    if b is not None:
        return b
    with _lock:
        if _vmlinux is None:
            _vmlinux = _load_vmlinux()
        return _vmlinux


def modules() -> dict[str, BTF]:
    """Module BTFs by module name, split on :func:`vmlinux` (each parsed on first listing)."""
    global _modules
    m = _modules
    if m is not None:
        return m
    base = vmlinux()
    with _lock:
        if _modules is None:
            out: dict[str, BTF] = {}
            try:
                names = sorted(p.name for p in SYSFS_BTF.iterdir() if p.name != "vmlinux")
            except OSError:
                names = []
            for name in names:
                try:
                    out[name] = BTF.from_file(str(SYSFS_BTF / name), base=base)
                except (OSError, BTFError) as e:
                    # a module unloaded meanwhile, or BTF we cannot read: skip, say why
                    log.debug("module BTF %s skipped: %s", name, e)
            _modules = out
        return _modules


def load_target(path: str | os.PathLike[str]) -> BTF:
    """A user-given target BTF replacing the kernel's: raw BTF or an ELF with ``.BTF``."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BTFError(f"cannot read target BTF {p!r}: {e.strerror}") from None
    if data[:4] == b"\x7fELF":
        return BTF.from_bytes_or_elf(data, name=p)
    return _with_cache(data, p)


def module_btf_fd(btf: BTF) -> FD:
    """An fd of the kernel's BTF object for module BTF ``btf`` (found by module name)."""
    from ..errors import NotSupportedError
    from ..syscalls import bpf

    want = Path(btf.name).name
    cur = 0
    while True:
        nxt = bpf.btf_get_next_id(cur)
        if nxt is None:
            break
        cur = nxt
        try:
            fd = bpf.btf_get_fd_by_id(nxt)
        except OSError:
            continue  # freed meanwhile
        try:
            info = bpf.btf_info(fd.fd)
        except BaseException:
            fd.close()
            raise
        if info.kernel_btf and info.name == want:
            return fd
        fd.close()
    raise NotSupportedError(f"module BTF {want!r}", detail="no kernel BTF object with that name is loaded")


def reset() -> None:
    """Forget the loaded BTFs (tests; or after a module was loaded/unloaded)."""
    global _vmlinux, _modules
    with _lock:
        _vmlinux = None
        _modules = None


# --- loading and the on-disk cache -----------------------------------------------------


def _load_vmlinux() -> BTF:
    path = SYSFS_BTF / "vmlinux"
    try:
        data = path.read_bytes()
    except OSError:
        alt = Path(f"/boot/vmlinux-{os.uname().release}")
        try:
            return BTF.from_bytes_or_elf(alt.read_bytes(), name=str(alt))
        except OSError:
            from ..errors import NotSupportedError

            raise NotSupportedError(
                "kernel BTF (CONFIG_DEBUG_INFO_BTF)", "5.4",
                f"neither {path} nor {alt} is readable; pass a target BTF file instead",
            ) from None
    return _with_cache(data, str(path))


def cache_dirs() -> list[Path]:
    """Where the index cache may live, most preferred first."""
    out = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        out.append(Path(xdg) / "tracekit")
    else:
        home = os.environ.get("HOME")
        if home:
            out.append(Path(home) / ".cache" / "tracekit")
    out.append(Path("/var/cache/tracekit"))
    return out


def _with_cache(data: bytes, name: str) -> BTF:
    """Parse raw (non-split) BTF, reusing or writing the on-disk index."""
    digest = _index_key(data)
    fname = f"btf-{digest.hex()[:32]}.idx"
    for d in cache_dirs():
        f = d / fname
        try:
            blob = f.read_bytes()
        except OSError:
            continue
        got = _parse_cache(blob, digest)
        if got is not None:
            offs, names = got
            try:
                btf = BTF(data, name=name, offsets=offs, name_offsets=names)
            except BTFError:
                btf = None
            if btf is not None and len(btf.offsets) == len(offs):
                log.debug("BTF %s: index from cache %s", name, f)
                return btf
        log.debug("BTF %s: ignoring stale or corrupt cache %s", name, f)
    btf = BTF(data, name=name)
    _write_cache(btf, digest, fname)
    return btf


def _index_key(data: bytes) -> bytes:
    """sha256 of the header and type section: all the cached arrays depend on.

    Skipping the string section (~45% of vmlinux BTF) saves ~1.5 ms per start; the
    string table cannot change the offsets or the name offsets of any type.
    """
    mv = memoryview(data)
    try:
        magic, _v, _f, hdr_len, type_off, type_len = struct.unpack_from("<HBBIII", data, 0)
    except struct.error:
        return hashlib.sha256(mv).digest()
    end = hdr_len + type_off + type_len
    if magic != 0xEB9F or end > len(data):
        return hashlib.sha256(mv).digest()
    return hashlib.sha256(mv[:end]).digest()


def _parse_cache(blob: bytes, digest: bytes) -> tuple[array, bytes] | None:
    if len(blob) < _CACHE_HDR.size:
        return None
    magic, ntypes, nnames, dg = _CACHE_HDR.unpack_from(blob, 0)
    if magic != _CACHE_MAGIC or dg != digest or nnames != 4 * ntypes:
        return None
    start = _CACHE_HDR.size
    if len(blob) != start + 4 * ntypes + nnames:
        return None
    offs = array("I")
    offs.frombytes(blob[start : start + 4 * ntypes])
    names = blob[start + 4 * ntypes :]
    # Sanity: offsets must increase, so a cache written on another-endian host or
    # damaged on disk is refused instead of producing garbage types.
    if ntypes and (offs[0] != 0 or (ntypes > 1 and offs[1] <= offs[0])):
        return None
    return offs, names


def _write_cache(btf: BTF, digest: bytes, fname: str) -> None:
    offs = btf.offsets
    names = btf.name_offsets()
    blob = _CACHE_HDR.pack(_CACHE_MAGIC, len(offs), len(names), digest) + offs.tobytes() + names
    for d in cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(tmp, d / fname)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            log.debug("BTF %s: index cached in %s", btf.name, d / fname)
            return
        except OSError as e:
            log.debug("BTF index cache %s not writable: %s", d, e)
            continue

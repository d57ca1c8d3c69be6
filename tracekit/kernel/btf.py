"""The running kernel's BTF (vmlinux and modules), shared by everything in the process.

vmlinux BTF is read once per process (thread-safe).  Everything derived from it that costs
Python time -- the word offset of every type, the name offset of every type and the
results of name look-ups -- is kept in an on-disk cache together with a copy of the BTF
itself, so a second process starts warm without even reading sysfs in full:

* within one boot the kernel's BTF cannot change, so the cache is trusted when it was
  written during this boot (``/proc/sys/kernel/random/boot_id``), has the same size as
  ``/sys/kernel/btf/vmlinux`` and matches it at a few sampled pages (a cheap check
  against a damaged file);
* after a reboot the BTF is read and compared with the cached copy byte for byte (a
  memcmp, cheaper than any hash); when equal the cache is reused and re-stamped.

The cache is written at interpreter exit (off the load path; call :func:`save_cache` in a
long-running process) and only when the process learned something new.  User-given BTF
files (:func:`load_target`) keep a separate index cache keyed by a hash of their bytes.
The cache lives under ``$XDG_CACHE_HOME/tracekit`` (or ``~/.cache/tracekit``), else
``/var/cache/tracekit``; when neither is writable tracekit silently works without it.

Reading files is all this module does; the one helper that needs a BTF *fd* of a module
(:func:`module_btf_fd`, for attaching to a module's functions) imports the syscall layer
lazily so the pure layer stays importable without it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import mmap
import os
import struct
import tempfile
import threading
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

from tracekit.btf.reader import BTF
from tracekit.errors import BTFError

if TYPE_CHECKING:  # pragma: no cover
    from tracekit.kernel.fd import FD

log = logging.getLogger("tracekit.btf")

SYSFS_BTF = Path("/sys/kernel/btf")
_CACHE_MAGIC = b"TKBTFIX1"
_CACHE_HDR = struct.Struct("<8sII32s")  # magic, type count, name-array bytes, sha256 of the BTF

# vmlinux cache: the BTF bytes (first, so they can be mapped as they are), the offsets
# (u32 each), the name array (u32 each, may be absent), a JSON document of look-up results
# and, last, this fixed-size trailer.
_VM_MAGIC = b"TKVMBTF2"
_VM_HDR = struct.Struct("<8s16sQIII")  # magic, boot id, BTF size, types, name bytes, memo bytes
_SPOT = 4096  # bytes compared with sysfs at each sampled place
_MEMO_MAX = 4096  # remembered look-ups per kind of look-up (bounds the cache file)

_lock = threading.Lock()
_vmlinux: BTF | None = None
_modules: dict[str, BTF] | None = None
_module_names: tuple[str, ...] = ()  # the listing _modules was built from
# What the on-disk cache holds for the current vmlinux BTF: (boot id, types, has names,
# memo sizes); save_cache() writes only when the process knows more than that.
_saved_state: tuple[bytes, int, bool, int, int] | None = None
_atexit_registered = False


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
    """Module BTFs by module name, split on :func:`vmlinux` (each parsed on first listing).

    ``/sys/kernel/btf`` is listed on every call (one ``listdir``): a module loaded since
    the last call (``modprobe nf_conntrack`` in a long-running process) must be seen, as
    libbpf sees it by reading module BTFs at each load.  BTFs already parsed are kept.
    """
    global _modules, _module_names
    base = vmlinux()
    try:
        names = tuple(sorted(n for n in os.listdir(SYSFS_BTF) if n != "vmlinux"))
    except OSError:
        names = ()
    m = _modules
    if m is not None and names == _module_names:
        return m
    with _lock:
        if _modules is None or names != _module_names:
            old = _modules or {}
            out: dict[str, BTF] = {}
            for name in names:
                b = old.get(name)
                if b is None:
                    try:
                        b = BTF.from_file(str(SYSFS_BTF / name), base=base)
                    except (OSError, BTFError) as e:
                        # a module unloaded meanwhile, or BTF we cannot read: skip, say why
                        log.debug("module BTF %s skipped: %s", name, e)
                        continue
                out[name] = b
            # a new dict: callers may hold (and iterate) the previous one
            _modules, _module_names = out, names
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
    from tracekit.errors import NotSupportedError
    from tracekit.kernel.syscalls import bpf

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
    global _vmlinux, _modules, _module_names, _saved_state
    with _lock:
        _vmlinux = None
        _modules = None
        _module_names = ()
        _saved_state = None


# --- loading and the on-disk cache -----------------------------------------------------


def _load_vmlinux() -> BTF:
    path = SYSFS_BTF / "vmlinux"
    try:
        f = open(path, "rb")
    except OSError:
        alt = Path(f"/boot/vmlinux-{os.uname().release}")
        try:
            return BTF.from_bytes_or_elf(alt.read_bytes(), name=str(alt))
        except OSError:
            from tracekit.errors import NotSupportedError

            raise NotSupportedError(
                "kernel BTF (CONFIG_DEBUG_INFO_BTF)", "5.4",
                f"neither {path} nor {alt} is readable; pass a target BTF file instead",
            ) from None
    with f:
        btf = _vmlinux_from_cache(f, str(path))
    global _atexit_registered
    if not _atexit_registered:
        _atexit_registered = True
        atexit.register(_save_at_exit)
    return btf


def _boot_id() -> bytes:
    """This boot's id (16 bytes), or b"" when the kernel does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return bytes.fromhex(f.read().strip().replace(b"-", b"").decode("ascii"))[:16]
    except (OSError, ValueError):
        return b""


def _vm_cache_name() -> str:
    u = os.uname()
    tag = hashlib.sha1(f"{u.release} {u.version} {u.machine}".encode()).hexdigest()[:16]
    return f"vmlinux-{tag}.btfcache"


def _spot_ok(f, size: int, data: bytes) -> bool:
    """The cached copy equals the live BTF at the header and a few sampled pages."""
    fd = f.fileno()
    for pos in (0, size // 3, (2 * size) // 3, max(0, size - _SPOT)):
        try:
            live = os.pread(fd, _SPOT, pos)
        except OSError:
            return False
        if not live or data[pos : pos + len(live)] != live:
            return False
    return True


def _vmlinux_from_cache(f, name: str) -> BTF:
    """vmlinux BTF from the on-disk cache when it is this kernel's, else parsed cold."""
    global _saved_state
    size = os.fstat(f.fileno()).st_size
    boot = _boot_id()
    data: bytes | None = None
    for d in cache_dirs():
        got = _read_vm_cache(d / _vm_cache_name(), size)
        if got is None:
            continue
        cboot, cdata, offs, names, memo = got
        if boot and cboot == boot and _spot_ok(f, size, cdata):
            fresh = False
        else:
            # Another boot (or an unreadable boot id): trust only an identical copy.
            if data is None:
                data = f.read()
            if data != cdata[:]:  # the copy is an mmap: compare as bytes (one memcmp)
                log.debug("BTF %s: cache %s is for other bytes", name, d)
                continue
            fresh = True
        try:
            btf = BTF(cdata, name=name, offsets=offs, name_offsets=names or None)
            btf.seed_lookups(*memo)
        except (BTFError, ValueError, TypeError) as e:
            log.debug("BTF %s: ignoring corrupt cache in %s: %s", name, d, e)
            continue
        if len(btf.offsets) != len(offs):
            continue
        mf, me = btf.lookup_memo()
        # a re-stamp for this boot is due when the copy was validated the slow way
        _saved_state = (b"" if fresh else cboot, len(offs), bool(names), len(mf), len(me))
        log.debug("BTF %s: loaded from cache in %s", name, d)
        return btf
    if data is None:
        data = f.read()
    _saved_state = None
    return BTF(data, name=name)


def _read_vm_cache(p: Path, size: int):
    """(boot id, BTF bytes (mapped), offsets, name array, (find memo, essential memo)) or None."""
    try:
        with open(p, "rb", buffering=0) as f:
            fd = f.fileno()
            total = os.fstat(fd).st_size
            if total < _VM_HDR.size + size or size <= 0:
                return None
            magic, boot, bsize, ntypes, nnames, nmemo = _VM_HDR.unpack(os.pread(fd, _VM_HDR.size, total - _VM_HDR.size))
            if magic != _VM_MAGIC or bsize != size or nnames not in (0, 4 * ntypes):
                return None
            if total != bsize + 4 * ntypes + nnames + nmemo + _VM_HDR.size:
                return None
            rest = os.pread(fd, 4 * ntypes + nnames + nmemo, bsize)
            # Mapped, not read: a warm process touches only the pages it decodes.  The
            # file is only ever replaced (rename), never rewritten in place.
            data = mmap.mmap(fd, bsize, prot=mmap.PROT_READ)
    except (OSError, ValueError, struct.error):
        return None
    if len(rest) != 4 * ntypes + nnames + nmemo:
        return None
    offs = array("I")
    offs.frombytes(rest[: 4 * ntypes])
    names = rest[4 * ntypes : 4 * ntypes + nnames]
    if ntypes and (offs[0] != 0 or (ntypes > 1 and offs[1] <= offs[0])):
        return None
    try:
        m = json.loads(rest[4 * ntypes + nnames :]) if nmemo else {}
        memo = (
            {str(k): tuple(map(int, v)) for k, v in m.get("find", {}).items()},
            {str(k): tuple(map(int, v)) for k, v in m.get("essential", {}).items()},
        )
    except (ValueError, TypeError, AttributeError):
        return None
    return boot, data, offs, names, memo


def save_cache() -> None:
    """Write vmlinux BTF's cache now if this process knows more than the cache holds
    (done automatically at exit; a long-running process may call it after loading)."""
    global _saved_state
    btf = _vmlinux
    if btf is None or not btf.name.startswith(str(SYSFS_BTF)):
        return
    boot = _boot_id()
    mf, me = btf.lookup_memo()
    names = btf._names_b  # only what this process built: building it here costs ~15 ms
    state = (boot, len(btf.offsets), names is not None, len(mf), len(me))
    old = _saved_state
    if old is not None and old[0] == boot and old[1] == state[1] and (old[2] or not state[2]) and old[3:] == state[3:]:
        return
    if old is not None and old[2] and names is None:
        names = btf.name_offsets()  # never write a cache poorer than the one read
    def cap(m: dict[str, tuple[int, ...]]) -> dict[str, list[int]]:
        return {k: list(v) for k, v in list(m.items())[:_MEMO_MAX]}
    memo = json.dumps({"find": cap(mf), "essential": cap(me)}, separators=(",", ":")).encode()
    nb = names or b""
    trailer = _VM_HDR.pack(_VM_MAGIC, boot.ljust(16, b"\0"), len(btf.data), len(btf.offsets), len(nb), len(memo))
    if _write_file(_vm_cache_name(), [btf.data, btf.offsets.tobytes(), nb, memo, trailer]):
        _saved_state = (boot.ljust(16, b"\0") if boot else b"", state[1], bool(nb), len(mf), len(me))


def _save_at_exit() -> None:
    try:
        save_cache()
    except Exception as e:  # never turn a clean exit into a traceback over a cache
        log.debug("BTF cache not written: %s", e)


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
    blob = _CACHE_HDR.pack(_CACHE_MAGIC, len(offs), len(names), digest)
    if _write_file(fname, [blob, offs.tobytes(), names]):
        log.debug("BTF %s: index cached", btf.name)


def _write_file(fname: str, parts: list[bytes]) -> bool:
    """Atomically write ``parts`` as ``fname`` in the first writable cache directory."""
    for d in cache_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
            try:
                with os.fdopen(fd, "wb") as f:
                    for part in parts:
                        f.write(part)
                os.replace(tmp, d / fname)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            return True
        except OSError as e:
            log.debug("BTF cache %s not writable: %s", d, e)
            continue
    return False

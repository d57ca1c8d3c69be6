"""The running kernel's BTF (vmlinux and modules), shared by everything in the process.

vmlinux BTF is read once per process (thread-safe).  The bytes always come from the
kernel itself: ``/sys/kernel/btf/vmlinux`` is mapped (Linux 6.16+: read-only, private,
zero-copy, pages touched on demand) or, where the kernel refuses the mapping, read.  What
costs Python time -- the word offset of every type, the name offset of every type and the
results of name look-ups -- is *derived* from those bytes and kept in an on-disk cache, so
a second process skips the scan.  The cache is never trusted blindly (an agent runs for
months; a damaged cache must not silently change what a probe reads):

* the file must be a regular file owned by us (or root) and not writable by group or
  others; it is opened with ``O_NOFOLLOW|O_NONBLOCK`` (a symlink cannot redirect us, a
  FIFO cannot hang us) and checked on the opened fd;
* its size is bounded by the BTF's before anything is allocated, and every count in its
  header is checked against the file size;
* a CRC-32 over the whole file (header and derived data, ~1 MB: ~0.2 ms) detects any
  damaged or truncated byte;
* it names the BTF it was derived from: size and boot id (within one boot the kernel's
  BTF cannot change), and the sha256 of the BTF -- computed only when the boot id differs
  (~5 ms once per boot, then the cache is re-stamped for this boot).

Anything that fails a check is ignored (a debug log line on ``tracekit.btf`` says why)
and the cache is rebuilt from a cold parse.  It is written at interpreter exit (off the
load path; call :func:`save_cache` in a long-running process), only when the process
learned something new, atomically (a temporary file in the same directory, fsync,
rename), never in place.  User-given BTF files (:func:`load_target`) keep a separate
index cache keyed by a hash of their bytes, checked the same way.

The cache lives in ``$TRACEKIT_CACHE_DIR`` when set (empty: no cache at all), else under
``$XDG_CACHE_HOME/tracekit`` (or ``~/.cache/tracekit``), then ``/var/cache/tracekit``.
A missing HOME, a read-only, full or unwritable directory only costs the warm start:
loading works, a debug line says why, nothing raises.

Reading files is all this module does; the one helper that needs a BTF *fd* of a module
(:func:`module_btf_fd`, for attaching to a module's functions) imports the syscall layer
lazily so the pure layer stays importable without it.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import mmap
import os
import stat
import struct
import tempfile
import threading
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from tracekit import _log
from tracekit.btf.reader import BTF
from tracekit.errors import BTFError

if TYPE_CHECKING:  # pragma: no cover
    from tracekit.kernel.fd import FD

log = _log.getLogger("tracekit.btf")

SYSFS_BTF = Path("/sys/kernel/btf")
SYSTEM_CACHE_DIR = Path("/var/cache/tracekit")  # last resort (shared by root's tools)
#: map /sys/kernel/btf/vmlinux when the kernel allows it (6.16+); False reads it as older
#: kernels make us do (tests of that path)
MAP_KERNEL_BTF = True

# Index cache of a user-given BTF: header, offsets (u32 each), name array (u32 each) and a
# CRC-32 of everything before it.
_CACHE_MAGIC = b"TKBTFIX2"
_CACHE_HDR = struct.Struct("<8sII32s")  # magic, type count, name-array bytes, sha256 of the BTF

# vmlinux cache: this header, the offsets (u32 each), the name array (u32 each, may be
# absent), a JSON document of look-up results and a CRC-32 (u32) of everything before it.
# The BTF itself is not stored: it is always the kernel's own.
_VM_MAGIC = b"TKVMBTF3"
# magic, boot id, BTF size, sha256 of the BTF, types, name bytes, memo bytes
_VM_HDR = struct.Struct("<8s16sQ32sIII")
_CRC = struct.Struct("<I")
_MEMO_MAX = 4096  # remembered look-ups per kind of look-up (bounds the cache file)
_MEMO_BYTES_MAX = 4 << 20  # a memo document larger than this was not written by us
_MIN_TYPE_BYTES = 12  # the smallest BTF type record: bounds the type count by the size

_lock = threading.Lock()
_vmlinux: BTF | None = None
_modules: dict[str, BTF] | None = None
_module_names: tuple[str, ...] = ()  # the listing _modules was built from
# What the on-disk cache holds for the current vmlinux BTF: (boot id, types, has names,
# memo sizes); save_cache() writes only when the process knows more than that.
_saved_state: tuple[bytes, int, bool, int, int] | None = None
# sha256 of the current vmlinux BTF once known (from a cache validated this boot, or
# computed): save_cache() needs it and hashing costs ~5 ms, so it is done at most once.
_btf_digest: bytes | None = None
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
        # O_NONBLOCK: a FIFO given as the target must not hang us; then only regular files
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BTFError(f"target BTF {p!r} is not a regular file")
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
    global _vmlinux, _modules, _module_names, _saved_state, _btf_digest
    with _lock:
        _vmlinux = None
        _modules = None
        _module_names = ()
        _saved_state = None
        _btf_digest = None


# --- loading and the on-disk cache -----------------------------------------------------


def _load_vmlinux() -> BTF:
    path = SYSFS_BTF / "vmlinux"
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by the with below)
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


def _kernel_bytes(f: IO[bytes]) -> bytes:
    """The kernel's BTF bytes: mapped where the kernel allows it, else read.

    Linux 6.16+ lets ``/sys/kernel/btf/vmlinux`` be mapped read-only and private: no copy,
    and a warm process touches only the pages it decodes (~0.1 ms against ~1.2 ms for
    reading 5.5 MB).  Older kernels refuse (EACCES/ENODEV); then the file is read whole.
    """
    fd = f.fileno()
    size = os.fstat(fd).st_size
    if size > 0 and MAP_KERNEL_BTF:
        try:
            # typed as bytes: BTF keeps an mmap as it is and reads it like bytes
            return cast(bytes, mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ))
        except (OSError, ValueError):
            pass
    return f.read()


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


def _untrusted(st: os.stat_result, limit: int) -> str:
    """Why a cache file with this fstat must not be trusted ("" when it may be)."""
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file (mode {stat.filemode(st.st_mode)})"
    uid = os.geteuid()
    # root's files are trusted too: a file only root can write says nothing root could
    # not tell us anyway (and /var/cache/tracekit is written by root's tools)
    if st.st_uid not in (uid, 0):
        return f"owned by uid {st.st_uid}, not by this user (uid {uid}) or root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):#o})"
    if st.st_size > limit:
        return f"{st.st_size} bytes, larger than any cache written for this BTF ({limit})"
    return ""


def _safe_open(p: Path, limit: int) -> tuple[int, int] | str:
    """(fd, size) of cache file ``p`` if it is safe to trust as ours, or why not ("" when
    there is no such file).  The caller closes the fd.

    ``O_NOFOLLOW`` refuses a symlink planted at the path, ``O_NONBLOCK`` keeps a FIFO there
    from blocking the open, and the checks run on the opened fd (no check-then-open race).
    """
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link"
        return f"cannot open it: {e.strerror}"
    except ValueError as e:  # a NUL byte in $XDG_CACHE_HOME
        return f"bad path: {e}"
    try:
        st = os.fstat(fd)
        why = _untrusted(st, limit)
    except OSError as e:
        why = f"cannot stat it: {e.strerror}"
    if why:
        os.close(fd)
        return why
    return fd, st.st_size


def _safe_read(p: Path, limit: int) -> bytes | str:
    """The bytes of cache file ``p`` (at most ``limit``), or why not (see _safe_open)."""
    opened = _safe_open(p, limit)
    if isinstance(opened, str):
        return opened
    fd, size = opened
    try:
        chunks = []
        left = size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left:
            return "shorter than its size (changed while read)"
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    finally:
        os.close(fd)


def _crc_ok(blob: bytes) -> bool:
    """The trailing CRC-32 matches everything before it."""
    if len(blob) < _CRC.size:
        return False
    (want,) = _CRC.unpack_from(blob, len(blob) - _CRC.size)
    return bool(zlib.crc32(memoryview(blob)[: len(blob) - _CRC.size]) == want)


def _parse_memo(raw: bytes, ntypes: int) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]] | None:
    """The look-up results of a memo document, every id a type id of the BTF, or None."""
    if not raw:
        return {}, {}
    try:
        m = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(m, dict):
        return None
    out: list[dict[str, tuple[int, ...]]] = []
    for key in ("find", "essential"):
        part = m.get(key, {})
        if not isinstance(part, dict):
            return None
        got: dict[str, tuple[int, ...]] = {}
        for name, ids in part.items():
            if not isinstance(ids, list):
                return None
            for i in ids:
                # bool is an int subclass: refuse it as json never writes one for an id
                if type(i) is not int or not 0 < i <= ntypes:
                    return None
            got[name] = tuple(ids)
        out.append(got)
    return out[0], out[1]


_VMCache = tuple[bytes, bytes, "array[int]", bytes, tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]]


def _read_vm_cache(p: Path, size: int) -> _VMCache | str:
    """(boot id, BTF sha256, offsets, name array, (find memo, essential memo)) of the
    cache at ``p`` for a ``size``-byte vmlinux BTF, or why it cannot be used ("" when
    there is none)."""
    max_types = size // _MIN_TYPE_BYTES + 1
    opened = _safe_open(p, _VM_HDR.size + 8 * max_types + _MEMO_BYTES_MAX + _CRC.size)
    if isinstance(opened, str):
        return opened
    fd, total = opened
    try:
        return _read_vm_fd(fd, total, size, max_types)
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    finally:
        os.close(fd)


def _read_vm_fd(fd: int, total: int, size: int, max_types: int) -> _VMCache | str:
    if total < _VM_HDR.size + _CRC.size:
        return f"truncated ({total} bytes)"
    head = os.pread(fd, _VM_HDR.size, 0)
    if len(head) != _VM_HDR.size:
        return "shorter than its size (changed while read)"
    magic, boot, bsize, digest, ntypes, nnames, nmemo = _VM_HDR.unpack(head)
    if magic != _VM_MAGIC:
        return "not a vmlinux cache of this tracekit version"
    # Nothing read from the header is used before it is bounded: by the kernel BTF's size
    # (a type takes at least 12 bytes) and by the file's size.
    if not 0 < ntypes <= max_types or nnames not in (0, 4 * ntypes) or nmemo > _MEMO_BYTES_MAX:
        return f"header out of range (types {ntypes}, name bytes {nnames}, memo bytes {nmemo})"
    if total != _VM_HDR.size + 4 * ntypes + nnames + nmemo + _CRC.size:
        return f"truncated or overlong ({total} bytes, its header says {_VM_HDR.size + 4 * ntypes + nnames + nmemo + _CRC.size})"
    # One preadv straight into the buffers that are kept: a warm start's cost is mostly
    # page faults on fresh memory, so no intermediate copy of the ~1 MB.
    offs = array("I", b"\0\0\0\0") * ntypes
    names = bytearray(nnames)
    tail = bytearray(nmemo + _CRC.size)
    if os.preadv(fd, [offs, names, tail], _VM_HDR.size) != total - _VM_HDR.size:
        return "shorter than its size (changed while read)"
    crc = zlib.crc32(tail[:nmemo], zlib.crc32(names, zlib.crc32(offs, zlib.crc32(head))))
    if crc != _CRC.unpack_from(tail, nmemo)[0]:
        return "checksum mismatch: damaged"
    # The checksum matched, so these are what we wrote; still checked, as a cache written
    # by another build (or a CRC collision) must not index out of bounds.
    if bsize != size:
        return f"made from a {bsize}-byte BTF, the kernel's has {size} bytes"
    if offs[0] != 0 or (ntypes > 1 and offs[1] <= offs[0]):
        return "type offsets do not start at 0 and increase"
    memo = _parse_memo(bytes(tail[:nmemo]), ntypes)
    if memo is None:
        return "look-up results malformed or out of range"
    # bytearray: BTF only ever searches the name array (bytes.find and bytearray.find alike)
    return boot, digest, offs, cast(bytes, names), memo


def _vmlinux_from_cache(f: IO[bytes], name: str) -> BTF:
    """vmlinux BTF (the kernel's bytes), its derived data from the on-disk cache when that
    passes every check, else parsed cold."""
    global _saved_state, _btf_digest
    data = _kernel_bytes(f)
    size = len(data)
    boot = _boot_id()
    live_digest: bytes | None = None
    rejected = False  # a damaged cache was seen: rewrite even if a later directory's is good
    for d in cache_dirs():
        p = d / _vm_cache_name()
        got = _read_vm_cache(p, size)
        if isinstance(got, str):
            if got:
                rejected = True
                log.debug("BTF %s: cache %s rejected (%s); it will be rebuilt", name, p, got)
            continue
        cboot, digest, offs, names, memo = got
        if boot and cboot == boot:
            fresh = False  # this boot's kernel BTF cannot have changed since it was stamped
        else:
            # Another boot (or no boot id): the BTF may differ under the same release
            # string (a rebuilt kernel); trust only a cache made from identical bytes.
            if live_digest is None:
                live_digest = hashlib.sha256(data).digest()
            if digest != live_digest:
                rejected = True
                log.debug("BTF %s: cache %s rejected (made from other BTF bytes); it will be rebuilt", name, p)
                continue
            fresh = True
        try:
            btf = BTF(data, name=name, offsets=offs, name_offsets=names or None)
        except BTFError:
            break  # the kernel's own bytes are bad: the cold parse below says how
        if btf.offsets is not offs:  # the reader refused the offsets and scanned itself
            log.debug("BTF %s: cache %s rejected (offsets do not fit the BTF); it will be rebuilt", name, p)
            _saved_state, _btf_digest = None, live_digest
            return btf
        btf.seed_lookups(*memo)
        mf, me = btf.lookup_memo()
        # a re-stamp for this boot is due when the cache was validated by hash
        stamp = b"" if (fresh or rejected) else cboot
        _saved_state = None if rejected else (stamp, len(offs), bool(names), len(mf), len(me))
        _btf_digest = digest
        log.debug("BTF %s: type index from cache %s", name, p)
        return btf
    btf = BTF(data, name=name)
    _saved_state, _btf_digest = None, live_digest
    log.debug("BTF %s: parsed cold (no usable cache)", name)
    return btf


def save_cache() -> None:
    """Write vmlinux BTF's cache now if this process knows more than the cache holds
    (done automatically at exit; a long-running process may call it after loading)."""
    global _saved_state, _btf_digest
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
    if len(memo) > _MEMO_BYTES_MAX:
        memo = b""  # (not seen on vmlinux) a reader would refuse it: keep the index only
    digest = _btf_digest
    if digest is None:
        digest = _btf_digest = hashlib.sha256(btf.data).digest()
    nb = names or b""
    hdr = _VM_HDR.pack(_VM_MAGIC, boot.ljust(16, b"\0"), len(btf.data), digest, len(btf.offsets), len(nb), len(memo))
    if _write_file(_vm_cache_name(), [hdr, btf.offsets.tobytes(), nb, memo]):
        _saved_state = (boot.ljust(16, b"\0") if boot else b"", state[1], bool(nb), len(mf), len(me))


def _save_at_exit() -> None:
    try:
        save_cache()
    except Exception as e:  # never turn a clean exit into a traceback over a cache
        log.debug("BTF cache not written: %s", e)


def cache_dirs() -> list[Path]:
    """Where the caches may live, most preferred first (empty: caching is off)."""
    forced = os.environ.get("TRACEKIT_CACHE_DIR")
    if forced is not None:
        return [Path(forced)] if forced else []
    out = []
    # XDG: a relative XDG_CACHE_HOME is invalid and ignored, as is a relative HOME
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    home = os.environ.get("HOME", "")
    if os.path.isabs(xdg):
        out.append(Path(xdg) / "tracekit")
    elif os.path.isabs(home):
        out.append(Path(home) / ".cache" / "tracekit")
    else:
        log.debug("BTF cache: neither XDG_CACHE_HOME nor HOME is set; only %s is tried", SYSTEM_CACHE_DIR)
    out.append(SYSTEM_CACHE_DIR)
    return out


def _with_cache(data: bytes, name: str) -> BTF:
    """Parse raw (non-split) BTF, reusing or writing the on-disk index."""
    digest = _index_key(data)
    fname = f"btf-{digest.hex()[:32]}.idx"
    limit = _CACHE_HDR.size + 8 * (len(data) // _MIN_TYPE_BYTES + 1) + _CRC.size
    rejected = False
    for d in cache_dirs():
        f = d / fname
        blob = _safe_read(f, limit)
        got = _parse_cache(blob, digest) if isinstance(blob, bytes) else blob
        if isinstance(got, str):
            if got:
                rejected = True
                log.debug("BTF %s: index cache %s rejected (%s); it will be rebuilt", name, f, got)
            continue
        offs, names = got
        try:
            btf = BTF(data, name=name, offsets=offs, name_offsets=names)
        except BTFError:
            break  # the BTF itself is bad: the cold parse below raises the real error
        if btf.offsets is offs:
            log.debug("BTF %s: index from cache %s", name, f)
            if rejected:  # a damaged copy in a preferred directory: replace it
                _write_cache(btf, digest, fname)
            return btf
        log.debug("BTF %s: index cache %s rejected (offsets do not fit); it will be rebuilt", name, f)
        break
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


def _parse_cache(blob: bytes, digest: bytes) -> tuple[array[int], bytes] | str:
    """(offsets, name array) of an index cache for the BTF with ``digest``, or why not."""
    if len(blob) < _CACHE_HDR.size + _CRC.size:
        return f"truncated ({len(blob)} bytes)"
    magic, ntypes, nnames, dg = _CACHE_HDR.unpack_from(blob, 0)
    if magic != _CACHE_MAGIC:
        return "not an index cache of this tracekit version"
    if not _crc_ok(blob):
        return "checksum mismatch: damaged or truncated"
    if dg != digest:
        return "made from other BTF bytes"
    start = _CACHE_HDR.size
    if ntypes == 0 or nnames != 4 * ntypes or len(blob) != start + 4 * ntypes + nnames + _CRC.size:
        return "size does not match its header"
    offs = array("I")
    offs.frombytes(memoryview(blob)[start : start + 4 * ntypes])
    names = blob[start + 4 * ntypes : start + 4 * ntypes + nnames]
    # offsets must start at 0 and increase: a cache written on another-endian host is
    # refused instead of producing garbage types
    if offs[0] != 0 or (ntypes > 1 and offs[1] <= offs[0]):
        return "type offsets do not start at 0 and increase"
    return offs, names


def _write_cache(btf: BTF, digest: bytes, fname: str) -> None:
    offs = btf.offsets
    names = btf.name_offsets()
    blob = _CACHE_HDR.pack(_CACHE_MAGIC, len(offs), len(names), digest)
    if _write_file(fname, [blob, offs.tobytes(), names]):
        log.debug("BTF %s: index cached", btf.name)


_STALE_TMP_S = 3600  # a temporary file this old was left by a killed writer


def _write_file(fname: str, parts: Sequence[bytes]) -> bool:
    """Atomically write ``parts`` and their CRC-32 as ``fname`` in the first usable cache
    directory: a temporary file in the same directory, fsync, rename over the old one (a
    reader sees the old file or the new one, never a mix; a crash leaves the old one)."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    dirs = cache_dirs()
    if not dirs:
        log.debug("BTF cache off (TRACEKIT_CACHE_DIR is empty): %s not written", fname)
        return False
    for d in dirs:
        tmp: str | None = None
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=d)  # mode 0600
            with os.fdopen(fd, "wb") as f:
                for part in parts:
                    f.write(part)
                f.write(_CRC.pack(crc))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, d / fname)
            tmp = None
            _fsync_dir(d)
            _sweep_tmp(d)
            return True
        except (OSError, ValueError) as e:
            log.debug("BTF cache directory %s not usable (%s)", d, e)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
    log.debug("BTF cache %s not written: no usable cache directory (tried %s); the next start parses cold",
              fname, ", ".join(map(str, dirs)))
    return False


def _fsync_dir(d: Path) -> None:
    """Make the rename durable (best effort: some filesystems refuse fsync on a dir)."""
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sweep_tmp(d: Path) -> None:
    """Remove temporary files a killed writer left behind (ours, and old)."""
    import time

    now = time.time()
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.name.startswith(".tmp-") and e.name.endswith(".part"):
                    try:
                        st = e.stat(follow_symlinks=False)
                        if st.st_uid == os.geteuid() and now - st.st_mtime > _STALE_TMP_S:
                            os.unlink(e.path)
                    except OSError:
                        pass
    except OSError:
        pass

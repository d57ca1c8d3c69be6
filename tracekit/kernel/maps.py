"""BPF maps from user space: create, read, write, iterate, batch, freeze, pin, mmap.

A :class:`Map` owns its fd (:class:`tracekit.kernel.fd.FD`) and knows its parameters, so it can
encode keys and values for the kernel:

* keys and values are ``bytes`` of exactly ``key_size``/``value_size``, or ``int``
  (packed little-endian to the size; negative ints as two's complement), or any ctypes
  object (``bytes(obj)`` is used); for fd-holding maps (perf_event_array, *_of_maps,
  prog_array) a value may also be anything with ``fileno()`` (an :class:`FD`, a Map).
* per-CPU maps (percpu_array, percpu_hash, lru_percpu_hash) return a ``list`` with one
  ``bytes`` value per possible CPU; an update takes such a list or one value for all CPUs.
  The kernel lays each CPU's value out at an 8-byte-aligned stride.
* a missing key is ``None`` from :meth:`Map.lookup` (and ``KeyError`` from ``map[key]``).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap as _mmap
from collections.abc import Iterator, Sequence
from typing import Any

from tracekit import uapi
from tracekit.errors import MapError, ResourceLimitError, SyscallError, error_for_errno
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.kernel.syscalls.bpf import ENOTSUPP, MapInfo
from tracekit.kernel.syscalls.perf import possible_cpus
from tracekit.uapi import MapType

Value = bytes | list[bytes]

PER_CPU_TYPES = frozenset({MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH,
                           MapType.PERCPU_CGROUP_STORAGE})
#: maps whose values are fds on update (and ids on lookup)
FD_VALUE_TYPES = frozenset({MapType.PERF_EVENT_ARRAY, MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS,
                            MapType.HASH_OF_MAPS, MapType.CGROUP_ARRAY})
ARRAY_TYPES = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
                         MapType.ARRAY_OF_MAPS, MapType.CGROUP_ARRAY})
#: maps with no user-space element access at all
KEYLESS_TYPES = frozenset({MapType.RINGBUF, MapType.USER_RINGBUF})

_NO_BATCH = (ENOTSUPP, _errno.EOPNOTSUPP)

_ncpus: int | None = None


def num_possible_cpus() -> int:
    """Number of possible CPUs: the number of values a per-CPU map holds per key."""
    global _ncpus
    if _ncpus is None:
        _ncpus = len(possible_cpus())
    return _ncpus


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _encode(obj: Any, size: int, what: str) -> bytes:
    if isinstance(obj, bool):
        obj = int(obj)
    if isinstance(obj, int):
        try:
            return obj.to_bytes(size, "little", signed=obj < 0)
        except OverflowError:
            raise MapError(f"{what}: {obj} does not fit in {size} bytes") from None
    # bytes-like objects, and ctypes objects through their buffer
    if isinstance(obj, (bytes, bytearray, memoryview, ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)):
        data = bytes(obj)
    else:
        raise MapError(f"{what}: expected bytes, int or a ctypes object, got {type(obj).__name__}")
    if len(data) != size:
        raise MapError(f"{what}: {len(data)} bytes given, the map needs exactly {size}")
    return data


class Map:
    """One kernel map (owns its fd)."""

    def __init__(
        self,
        fd: FD,
        *,
        type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
        name: str = "",
    ) -> None:
        self._fd = fd
        try:
            self.type: MapType | int = MapType(type)
        except ValueError:
            self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        self.per_cpu = self.type in PER_CPU_TYPES
        self._frozen = False

    # --- construction ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        *,
        name: str = "",
        flags: int = 0,
        btf_fd: int = 0,
        btf_key_type_id: int = 0,
        btf_value_type_id: int = 0,
        btf_vmlinux_value_type_id: int = 0,
        inner_map_fd: int = 0,
        map_extra: int = 0,
        numa_node: int = 0,
    ) -> Map:
        """BPF_MAP_CREATE.  ``max_entries=0`` for a perf_event_array means one slot per CPU.

        Raises :class:`PermissionDeniedError` without privileges and :class:`SyscallError`
        (``.errno`` kept for callers that retry, e.g. without BTF) when the kernel refuses.
        """
        if type == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = num_possible_cpus()
        try:
            fd = _bpf.map_create(
                type, key_size, value_size, max_entries, name=name, flags=flags, inner_map_fd=inner_map_fd,
                numa_node=numa_node, btf_fd=btf_fd, btf_key_type_id=btf_key_type_id,
                btf_value_type_id=btf_value_type_id, btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
                map_extra=map_extra,
            )
        except SyscallError as e:
            if e.errno in (_errno.EPERM, _errno.EACCES) or isinstance(e, ResourceLimitError):
                raise  # already names the privilege or the limit (issue 10 item 5)
            try:
                tname = MapType(type).name.lower()
            except ValueError:
                tname = f"type {type}"
            desc = (f"{tname} map {name!r} (key_size={key_size}, value_size={value_size}, "
                    f"max_entries={max_entries}, flags={flags:#x})")
            hint = {
                _errno.EINVAL: "the kernel rejected these parameters: check the sizes and flags this map "
                               "type allows (or this kernel lacks the type/flag)",
                _errno.E2BIG: "too large for this map type",
                _errno.ENOMEM: "out of memory (lower max_entries)",
                ENOTSUPP: "the kernel does not support this combination",
            }.get(e.errno, "")
            raise error_for_errno(f"create {desc}", e.errno, hint) from None
        return cls(fd, type=type, key_size=key_size, value_size=value_size, max_entries=max_entries,
                   flags=flags, name=name)

    @classmethod
    def from_fd(cls, fd: FD | int) -> Map:
        """Wrap an existing map fd (an int is duplicated; an :class:`FD` is taken over)."""
        if isinstance(fd, int):
            fd = _dup_int(fd)
        info = _bpf.map_info(fd.fd)
        return cls(fd, type=info.type, key_size=info.key_size, value_size=info.value_size,
                   max_entries=info.max_entries, flags=info.map_flags, name=info.name)

    @classmethod
    def from_pin(cls, path: str) -> Map:
        """Open a map pinned on bpffs."""
        fd = _bpf.obj_get(path)
        try:
            return cls.from_fd(fd)
        except BaseException:
            fd.close()
            raise

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        fd = _bpf.map_get_fd_by_id(map_id)
        try:
            return cls.from_fd(fd)
        except BaseException:
            fd.close()
            raise

    # --- fd ------------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        """The raw map fd (for ldimm64 relocation, inner maps, ringbuf mmap)."""
        return self._fd.fd

    @property
    def fd_object(self) -> FD:
        return self._fd

    def fileno(self) -> int:
        return self._fd.fd

    @property
    def closed(self) -> bool:
        return self._fd.closed

    def close(self) -> None:
        self._fd.close()

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        t = self.type.name.lower() if isinstance(self.type, MapType) else str(self.type)
        state = "closed" if self.closed else f"fd={self._fd.fd}"
        return (f"<Map {self.name!r} {t} key={self.key_size} value={self.value_size} "
                f"max_entries={self.max_entries} {state}>")

    # --- encoding --------------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return f"map {self.name!r}" if self.name else "map"

    def _key_buf(self, key: Any) -> ctypes.Array | None:
        if self.key_size == 0:
            if key is not None:
                raise MapError(f"{self._what} has no keys (key_size 0); pass None")
            return None
        data = _encode(key, self.key_size, f"{self._what} key")
        return ctypes.create_string_buffer(data, self.key_size)

    def _one_value(self, value: Any) -> bytes:
        if self.type in FD_VALUE_TYPES and hasattr(value, "fileno"):
            value = value.fileno()
        return _encode(value, self.value_size, f"{self._what} value")

    @property
    def value_buffer_size(self) -> int:
        """Bytes the kernel reads/writes for one element's value (all CPUs for per-CPU maps)."""
        if self.per_cpu:
            return _round8(self.value_size) * num_possible_cpus()
        return self.value_size

    def _value_buf(self, value: Any) -> ctypes.Array:
        if not self.per_cpu:
            return ctypes.create_string_buffer(self._one_value(value), max(self.value_size, 1))
        n = num_possible_cpus()
        stride = _round8(self.value_size)
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise MapError(f"{self._what} is per-CPU: give {n} values (one per possible CPU) or one value")
            parts = [self._one_value(v) for v in value]
        else:
            parts = [self._one_value(value)] * n
        return ctypes.create_string_buffer(b"".join(p.ljust(stride, b"\0") for p in parts), stride * n)

    def _decode_value(self, raw: bytes) -> Value:
        if not self.per_cpu:
            return raw[: self.value_size]
        stride = _round8(self.value_size)
        return [raw[i * stride : i * stride + self.value_size] for i in range(num_possible_cpus())]

    def _check_keyed(self) -> None:
        if self.type in KEYLESS_TYPES:
            raise MapError(f"{self._what} is a {MapType(self.type).name.lower()}: it has no elements to "
                           "look up (read it with tracekit.events.ringbuf)")

    # --- element ops ---------------------------------------------------------------------

    def lookup(self, key: Any, flags: int = 0) -> Value | None:
        """The value for ``key`` (a list per CPU for per-CPU maps), or None if absent.

        For fd maps the kernel returns the id of the object stored (map id for *_of_maps).
        """
        self._check_keyed()
        k = self._key_buf(key)
        v = ctypes.create_string_buffer(max(self.value_buffer_size, 1))
        err = _bpf.map_lookup_elem(self.fd, k, v, flags)
        if err == _errno.ENOENT:
            return None
        if err:
            raise self._error("look up in", err)
        return self._decode_value(v.raw)

    def lookup_and_delete(self, key: Any) -> Value | None:
        self._check_keyed()
        k = self._key_buf(key)
        v = ctypes.create_string_buffer(max(self.value_buffer_size, 1))
        err = _bpf.map_lookup_and_delete_elem(self.fd, k, v)
        if err == _errno.ENOENT:
            return None
        if err:
            raise self._error("look up and delete in", err)
        return self._decode_value(v.raw)

    def update(self, key: Any, value: Any, flags: int = uapi.BPF_ANY) -> None:
        """Set ``key`` to ``value`` (flags: BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK)."""
        self._check_keyed()
        k = self._key_buf(key)
        v = self._value_buf(value)
        err = _bpf.map_update_elem(self.fd, k, v, flags)
        if err:
            raise self._error("update", err, flags)

    def delete(self, key: Any) -> bool:
        """Delete ``key``; returns False if it was absent."""
        self._check_keyed()
        k = self._key_buf(key)
        err = _bpf.map_delete_elem(self.fd, k)
        if err == _errno.ENOENT:
            return False
        if err:
            raise self._error("delete from", err)
        return True

    def _error(self, op: str, err: int, flags: int = 0) -> SyscallError:
        detail = ""
        if err == _errno.EPERM and op == "update":
            if self._frozen or self.flags & uapi.BPF_F_RDONLY:
                detail = f"{self._what} is frozen or read-only for user space: it cannot be updated"
            else:
                detail = (f"{self._what} refused the update: it may be frozen (BPF_MAP_FREEZE) "
                          "or you lack privileges")
        elif err == _errno.E2BIG:
            detail = f"{self._what} is full (max_entries={self.max_entries})"
        elif err == _errno.EEXIST:
            detail = "the key exists and BPF_NOEXIST was given"
        elif err == _errno.ENOENT and flags & uapi.BPF_EXIST:
            detail = "the key is absent and BPF_EXIST was given"
        elif err == _errno.EINVAL and self.type in ARRAY_TYPES and op == "delete from":
            detail = "array map elements cannot be deleted (set them to zero instead)"
        elif err == _errno.EINVAL and self.type == MapType.STACK_TRACE and op == "update":
            detail = "stack trace maps are filled by bpf_get_stackid(), not from user space"
        elif err in (ENOTSUPP, _errno.EOPNOTSUPP):
            detail = (f"the kernel does not support this operation on {self.type.name.lower()} maps"
                      if isinstance(self.type, MapType) else "operation not supported for this map type")
            if op.startswith("look up") and self.type in FD_VALUE_TYPES:
                detail += " (its values are fds the kernel does not report back)"
        elif err in (_errno.EBADF, _errno.EINVAL) and self.type in FD_VALUE_TYPES and op == "update":
            detail = "the value must be the fd of an object this map can hold"
        return error_for_errno(f"{op} {self._what}", err, detail)

    def __getitem__(self, key: Any) -> Value:
        v = self.lookup(key)
        if v is None:
            raise KeyError(key)
        return v

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return self.lookup(key) is not None

    # --- iteration -----------------------------------------------------------------------

    def keys(self) -> Iterator[bytes]:
        """Every key, in kernel order (BPF_MAP_GET_NEXT_KEY).

        Deleting the current key while iterating a hash map makes the kernel restart from
        the first key; collect keys into a list first when deleting.
        """
        self._check_keyed()
        cur: ctypes.Array | None = None
        nxt = ctypes.create_string_buffer(max(self.key_size, 1))
        while True:
            err = _bpf.map_get_next_key(self.fd, cur, nxt)
            if err == _errno.ENOENT:
                return
            if err:
                raise self._error("iterate", err)
            key = nxt.raw[: self.key_size]
            yield key
            cur = ctypes.create_string_buffer(key, max(self.key_size, 1))

    __iter__ = keys

    def items(self) -> Iterator[tuple[bytes, Value]]:
        """``(key, value)`` pairs; keys deleted meanwhile are skipped."""
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def values(self) -> Iterator[Value]:
        for _, v in self.items():
            yield v

    # --- batch ops -----------------------------------------------------------------------

    def _batch_lookup(self, cmd: int, batch_size: int | None) -> list[tuple[bytes, Value]]:
        self._check_keyed()
        n = max(1, min(batch_size or 256, self.max_entries or 1))
        ks, vs = self.key_size, self.value_buffer_size
        # The batch token is a bucket/index (u32) for hash/array maps; size it generously.
        tok = max(ks, 8)
        in_tok: ctypes.Array | None = None
        out: list[tuple[bytes, Value]] = []
        while True:
            keys = ctypes.create_string_buffer(max(ks * n, 1))
            values = ctypes.create_string_buffer(max(vs * n, 1))
            out_tok = ctypes.create_string_buffer(tok)
            count, err = _bpf.map_batch(cmd, self.fd, in_batch=in_tok, out_batch=out_tok, keys=keys,
                                        values=values, count=n)
            if err == _errno.ENOSPC and count == 0:
                n *= 2  # a hash bucket holds more elements than one batch: retry bigger
                continue
            if err and err != _errno.ENOENT:
                if not out and in_tok is None and (err in _NO_BATCH or err == _errno.EINVAL):
                    return self._batch_lookup_fallback(cmd == uapi.Cmd.MAP_LOOKUP_AND_DELETE_BATCH)
                raise self._error("batch look up in", err)
            kr, vr = keys.raw, values.raw
            for i in range(count):
                out.append((kr[i * ks : (i + 1) * ks], self._decode_value(vr[i * vs : (i + 1) * vs])))
            if err == _errno.ENOENT:
                return out
            in_tok = out_tok

    def _batch_lookup_fallback(self, delete: bool) -> list[tuple[bytes, Value]]:
        # Kernels without batch ops for this type: one element at a time.
        if not delete:
            return list(self.items())
        out = []
        # BPF_MAP_LOOKUP_AND_DELETE_ELEM exists for hash maps only (5.14+); an LPM trie or an
        # older kernel says ENOTSUPP/EINVAL, and then lookup + delete is the fallback.
        atomic = self.type not in ARRAY_TYPES
        for k in list(self.keys()):
            v = None
            if atomic:
                try:
                    v = self.lookup_and_delete(k)
                except SyscallError as e:
                    if e.errno not in (*_NO_BATCH, _errno.EINVAL):
                        raise
                    atomic = False
            if v is None:
                v = self.lookup(k)
                if v is None:
                    continue
                self.delete(k)
            out.append((k, v))
        return out

    def lookup_batch(self, batch_size: int | None = None) -> list[tuple[bytes, Value]]:
        """All ``(key, value)`` pairs via BPF_MAP_LOOKUP_BATCH (element-wise fallback)."""
        return self._batch_lookup(uapi.Cmd.MAP_LOOKUP_BATCH, batch_size)

    def lookup_and_delete_batch(self, batch_size: int | None = None) -> list[tuple[bytes, Value]]:
        """Drain the map: every pair, deleting as it goes (BPF_MAP_LOOKUP_AND_DELETE_BATCH)."""
        return self._batch_lookup(uapi.Cmd.MAP_LOOKUP_AND_DELETE_BATCH, batch_size)

    def update_batch(self, keys: Sequence[Any], values: Sequence[Any], flags: int = uapi.BPF_ANY) -> int:
        """Set many elements in one call (BPF_MAP_UPDATE_BATCH); returns how many were set."""
        self._check_keyed()
        if len(keys) != len(values):
            raise MapError(f"update_batch on {self._what}: {len(keys)} keys but {len(values)} values")
        if not keys:
            return 0
        kb = b"".join(_encode(k, self.key_size, f"{self._what} key") for k in keys)
        vb = b"".join(self._value_buf(v).raw for v in values)
        kbuf = ctypes.create_string_buffer(kb, len(kb))
        vbuf = ctypes.create_string_buffer(vb, len(vb))
        count, err = _bpf.map_batch(uapi.Cmd.MAP_UPDATE_BATCH, self.fd, keys=kbuf, values=vbuf,
                                    count=len(keys), elem_flags=flags)
        if err in _NO_BATCH:
            for k, v in zip(keys, values):
                self.update(k, v, flags)
            return len(keys)
        if err:
            raise self._error("batch update", err, flags)
        return count

    def delete_batch(self, keys: Sequence[Any]) -> int:
        """Delete many keys in one call (BPF_MAP_DELETE_BATCH); returns how many were deleted.

        As in the kernel, a missing key stops the batch with ENOENT (raised as an error).
        """
        self._check_keyed()
        if not keys:
            return 0
        kb = b"".join(_encode(k, self.key_size, f"{self._what} key") for k in keys)
        kbuf = ctypes.create_string_buffer(kb, len(kb))
        count, err = _bpf.map_batch(uapi.Cmd.MAP_DELETE_BATCH, self.fd, keys=kbuf, count=len(keys))
        if err in _NO_BATCH:
            n = 0
            for k in keys:
                if not self.delete(k):
                    raise self._error("batch delete from", _errno.ENOENT)
                n += 1
            return n
        if err:
            raise self._error("batch delete from", err)
        return count

    # --- other ---------------------------------------------------------------------------

    def freeze(self) -> None:
        """Make the map read-only for user space (programs may still write unless RDONLY_PROG)."""
        try:
            _bpf.map_freeze(self.fd)
        except SyscallError as e:
            if e.errno in (_errno.EPERM, _errno.EBUSY):
                # The kernel says EPERM once a map lost user write access (frozen, RDONLY).
                raise error_for_errno(f"freeze {self._what}", e.errno,
                                      f"{self._what} is already frozen or read-only") from None
            raise
        self._frozen = True

    @property
    def frozen(self) -> bool:
        """Whether this process froze the map (a map opened from a pin may be frozen unknowingly)."""
        return self._frozen

    def pin(self, path: str) -> None:
        """Pin the map at ``path`` on a bpffs; it then outlives this process until unlinked."""
        _bpf.obj_pin(self.fd, path)

    def info(self) -> MapInfo:
        return _bpf.map_info(self.fd)

    def mmap_value(self, writable: bool | None = None) -> _mmap.mmap:
        """mmap the value area of a BPF_F_MMAPABLE array map (global data: .bss, .data, .rodata).

        ``writable`` None means read-write unless the map was frozen (the kernel refuses a
        writable mapping of a frozen map).  The mmap holds its own reference to the map:
        close it when done (it stays valid after the Map is closed).
        """
        if not self.flags & uapi.BPF_F_MMAPABLE:
            raise MapError(f"{self._what} was not created with BPF_F_MMAPABLE: it cannot be mmapped")
        if self.type != MapType.ARRAY:
            raise MapError(f"{self._what}: only array maps have an mmapable value area")
        page = _mmap.PAGESIZE
        size = _round8(self.value_size) * self.max_entries
        size = max(page, (size + page - 1) // page * page)
        want_rw = (not self._frozen) if writable is None else writable
        prot = _mmap.PROT_READ | (_mmap.PROT_WRITE if want_rw else 0)
        try:
            return _mmap.mmap(self.fd, size, _mmap.MAP_SHARED, prot)
        except PermissionError as e:
            if writable is None and want_rw:
                self._frozen = True  # frozen by someone else: fall back to read-only
                return _mmap.mmap(self.fd, size, _mmap.MAP_SHARED, _mmap.PROT_READ)
            raise error_for_errno(f"mmap {self._what}", e.errno or _errno.EPERM,
                                  "a frozen map can only be mapped read-only") from None
        except OSError as e:
            from tracekit.kernel.syscalls.diagnose import syscall_error

            raise syscall_error(f"mmap {self._what}", e.errno or _errno.EINVAL, kind="mmap") from None


def _dup_int(fd: int) -> FD:
    import fcntl

    return FD(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), "map")


__all__ = ["Map", "MapInfo", "num_possible_cpus", "PER_CPU_TYPES", "FD_VALUE_TYPES"]

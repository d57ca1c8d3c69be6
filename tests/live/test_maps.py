"""tracekit.kernel.maps.Map against the running kernel: every supported map type, batch ops,
freeze, pinning, mmap, and no leaked fds."""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile

import pytest

from tests.support import require_live
from tracekit import uapi
from tracekit.errors import MapError, PermissionDeniedError, SyscallError
from tracekit.kernel.maps import Map, num_possible_cpus
from tracekit.kernel.syscalls import perf
from tracekit.uapi import MapType


@pytest.fixture(autouse=True)
def _live() -> None:
    require_live()



def u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def u64(v: int) -> bytes:
    return v.to_bytes(8, "little")





# --- element ops by type ----------------------------------------------------------------------


def test_array_round_trip(no_leaks: None) -> None:
    with Map.create(MapType.ARRAY, 4, 8, 4, name="tk_array") as m:
        assert m.lookup(0) == bytes(8)  # arrays are preallocated, zeroed
        m.update(1, 0x1122334455667788)
        assert m.lookup(1) == u64(0x1122334455667788)
        m[2] = b"abcdefgh"
        assert m[2] == b"abcdefgh"
        m.update(ctypes.c_uint32(3), ctypes.c_int64(-2))
        assert m.lookup(3) == (-2).to_bytes(8, "little", signed=True)
        assert list(m.keys()) == [u32(i) for i in range(4)]
        assert dict(m.items())[u32(2)] == b"abcdefgh"
        assert m.lookup(4) is None  # out of range reads as absent
        with pytest.raises(SyscallError) as ei:
            m.delete(0)
        assert ei.value.errno == errno.EINVAL and "cannot be deleted" in str(ei.value)
        with pytest.raises(SyscallError) as ei:
            m.update(1, 1, uapi.BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (
            MapType.ARRAY, 4, 8, 4, "tk_array")


def test_hash_round_trip(no_leaks: None) -> None:
    with Map.create(MapType.HASH, 8, 4, 3, name="tk_hash") as m:
        assert m.lookup(7) is None
        with pytest.raises(KeyError):
            m[7]
        m.update(7, 70)
        m.update(8, 80, uapi.BPF_NOEXIST)
        with pytest.raises(SyscallError) as ei:
            m.update(9, 90, uapi.BPF_EXIST)
        assert ei.value.errno == errno.ENOENT
        m.update(9, 90)
        with pytest.raises(SyscallError) as ei:
            m.update(10, 100)
        assert ei.value.errno == errno.E2BIG and "full" in str(ei.value)
        assert sorted(m.keys()) == sorted(u64(k) for k in (7, 8, 9))
        assert 8 in m and 10 not in m
        assert m.delete(8) is True
        assert m.delete(8) is False
        assert m.lookup_and_delete(9) == u32(90)
        assert dict(m.items()) == {u64(7): u32(70)}


def test_bad_keys_and_values_are_map_errors(no_leaks: None) -> None:
    with Map.create(MapType.HASH, 4, 4, 2) as m:
        with pytest.raises(MapError, match="exactly 4"):
            m.update(b"abc", 1)
        with pytest.raises(MapError, match="does not fit"):
            m.update(1 << 40, 1)
        with pytest.raises(MapError, match="expected bytes"):
            m.update(1.5, 1)
        with pytest.raises(MapError, match="value"):
            m.update(1, b"12345")


@pytest.mark.parametrize("mtype", [MapType.PERCPU_ARRAY, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH])
def test_per_cpu_maps(mtype: MapType, no_leaks: None) -> None:
    n = num_possible_cpus()
    assert n == len(perf.possible_cpus())
    with Map.create(mtype, 4, 4, 8, name="tk_percpu") as m:  # value 4 -> stride 8 per CPU
        vals = [u32(100 + i) for i in range(n)]
        m.update(1, vals)
        assert m.lookup(1) == vals
        m.update(2, 5)  # one value for every CPU
        assert m.lookup(2) == [u32(5)] * n
        with pytest.raises(MapError, match="per-CPU"):
            m.update(3, [1] * (n + 1))
        got = dict(m.items())
        assert got[u32(1)] == vals


def test_lru_hash_evicts_instead_of_failing(no_leaks: None) -> None:
    with Map.create(MapType.LRU_HASH, 4, 4, 64, name="tk_lru") as m:
        for i in range(1000):
            m.update(i, i)
        keys = list(m.keys())
        assert 0 < len(keys) <= 64 + 64  # LRU lists are per-CPU-ish; never unbounded
        assert m.lookup(999) == u32(999)


def test_ringbuf_map(no_leaks: None) -> None:
    page = os.sysconf("SC_PAGE_SIZE")
    with Map.create(MapType.RINGBUF, 0, 0, 16 * page, name="tk_rb") as m:
        assert m.info().max_entries == 16 * page
        with pytest.raises(MapError, match="ring"):
            m.lookup(None)
    with pytest.raises(SyscallError) as ei:
        Map.create(MapType.RINGBUF, 0, 0, 3 * page)  # not a power of two
    assert ei.value.errno == errno.EINVAL and "ringbuf" in str(ei.value)


def test_perf_event_array(no_leaks: None) -> None:
    with Map.create(MapType.PERF_EVENT_ARRAY, 4, 4, 0, name="tk_pea") as m:
        assert m.max_entries == num_possible_cpus()
        attr = perf.PerfEventAttr(type=perf.PERF_TYPE_SOFTWARE, config=perf.PERF_COUNT_SW_BPF_OUTPUT,
                                  sample_type=perf.PERF_SAMPLE_RAW, sample_period=1, wakeup_events=1)
        with perf.perf_event_open(attr, -1, 0) as ev:
            m.update(0, ev)  # an FD is stored by its fileno()
            assert m.delete(0) is True
            assert m.delete(0) is False
            # no batch ops for this type: the element-wise fallback is used
            assert m.update_batch([0], [ev.fd]) == 1
            assert m.delete_batch([0]) == 1
            with pytest.raises(SyscallError) as ei:  # the kernel cannot report fds back
                m.lookup(0)
            assert ei.value.errno == 524 and "does not support" in str(ei.value)


def test_stack_trace_map(no_leaks: None) -> None:
    with Map.create(MapType.STACK_TRACE, 4, 8 * 127, 128, name="tk_stacks") as m:
        assert m.lookup(0) is None
        assert list(m.keys()) == []
        assert m.lookup_batch() == []  # fallback: the kernel has no batch ops here
        with pytest.raises(SyscallError) as ei:
            m.update(0, bytes(8 * 127))
        assert ei.value.errno == errno.EINVAL and "bpf_get_stackid" in str(ei.value)


@pytest.mark.parametrize("outer_type", [MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS])
def test_map_in_map(outer_type: MapType, no_leaks: None) -> None:
    with Map.create(MapType.ARRAY, 4, 4, 1, name="tk_inner") as inner, \
         Map.create(MapType.ARRAY, 4, 4, 1, name="tk_inner2") as inner2, \
         Map.create(outer_type, 4, 4, 4, inner_map_fd=inner.fd, name="tk_outer") as outer:
        outer.update(1, inner)
        outer.update(2, inner2.fd)
        # lookups return the inner map's id
        assert outer.lookup(1) == u32(inner.info().id)
        assert outer.lookup(2) == u32(inner2.info().id)
        with Map.from_id(inner.info().id) as again:
            again.update(0, 77)
            assert inner.lookup(0) == u32(77)
        with Map.create(MapType.HASH, 4, 4, 1) as wrong:  # different inner type
            with pytest.raises(SyscallError) as ei:
                outer.update(3, wrong)
            assert ei.value.errno == errno.EINVAL
        assert outer.delete(1) is True
        assert outer.lookup(1) is None


# --- batch ops -------------------------------------------------------------------------------


@pytest.mark.parametrize("mtype", [MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH])
def test_hash_batch_ops(mtype: MapType, no_leaks: None) -> None:
    with Map.create(mtype, 4, 8, 512, name="tk_batch") as m:
        keys = list(range(300))
        assert m.update_batch(keys, [k * 10 for k in keys]) == 300
        got = m.lookup_batch(batch_size=7)  # many small batches, with bucket-size retries
        assert len(got) == 300
        for k, v in got:
            want = u64(int.from_bytes(k, "little") * 10)
            assert v == ([want] * num_possible_cpus() if m.per_cpu else want)
        assert m.delete_batch(keys[:100]) == 100
        assert len(list(m.keys())) == 200
        with pytest.raises(SyscallError) as ei:
            m.delete_batch([5])  # already deleted
        assert ei.value.errno == errno.ENOENT
        drained = m.lookup_and_delete_batch()
        assert sorted(int.from_bytes(k, "little") for k, _ in drained) == keys[100:]
        assert list(m.keys()) == []


def test_array_batch_ops(no_leaks: None) -> None:
    with Map.create(MapType.ARRAY, 4, 4, 10, name="tk_abatch") as m:
        assert m.update_batch([1, 2, 3], [11, 22, 33]) == 3
        got = dict(m.lookup_batch(batch_size=4))
        assert len(got) == 10 and got[u32(2)] == u32(22) and got[u32(0)] == u32(0)
        with pytest.raises(MapError, match="2 keys but 1 values"):
            m.update_batch([1, 2], [1])


# --- freeze, pin, mmap ----------------------------------------------------------------------


def test_freeze_blocks_user_updates(no_leaks: None) -> None:
    with Map.create(MapType.ARRAY, 4, 4, 2, name="tk_frozen") as m:
        m.update(0, 5)
        m.freeze()
        assert m.frozen
        with pytest.raises(PermissionDeniedError) as ei:
            m.update(0, 6)
        assert ei.value.errno == errno.EPERM
        assert "frozen" in str(ei.value)
        assert m.lookup(0) == u32(5)  # reads still work
        with pytest.raises(SyscallError, match="already frozen"):
            m.freeze()


def test_pin_and_get(bpffs: str, no_leaks: None) -> None:
    path = os.path.join(bpffs, "tk_pinned")
    with Map.create(MapType.HASH, 4, 4, 8, name="tk_pin") as m:
        m.update(1, 2)
        m.pin(path)
        with pytest.raises(SyscallError) as ei:
            m.pin(path)
        assert ei.value.errno == errno.EEXIST and "already exists" in str(ei.value)
    try:
        with Map.from_pin(path) as again:  # the pin kept the map alive after close
            assert (again.type, again.key_size, again.value_size, again.max_entries, again.name) == (
                MapType.HASH, 4, 4, 8, "tk_pin")
            assert again.lookup(1) == u32(2)
    finally:
        os.unlink(path)
    with pytest.raises(SyscallError) as ei:
        Map.from_pin(path)
    assert ei.value.errno == errno.ENOENT


def test_pin_outside_bpffs_explains(no_leaks: None) -> None:
    with Map.create(MapType.ARRAY, 4, 4, 1) as m, tempfile.TemporaryDirectory() as d:
        with pytest.raises(SyscallError) as ei:
            m.pin(os.path.join(d, "x"))
        assert "bpffs" in str(ei.value)


def test_mmap_value(no_leaks: None) -> None:
    with Map.create(MapType.ARRAY, 4, 24, 1, flags=uapi.BPF_F_MMAPABLE, name="tk.bss") as m:
        mm = m.mmap_value()
        try:
            mm[0:8] = u64(0xDEADBEEF)
            assert m.lookup(0)[:8] == u64(0xDEADBEEF)  # type: ignore[index]
            m.update(0, b"x" * 24)
            assert mm[0:24] == b"x" * 24
        finally:
            mm.close()
        m.freeze()
        with pytest.raises(PermissionDeniedError):
            m.mmap_value(writable=True)
        ro = m.mmap_value()  # frozen: read-only by default
        try:
            assert ro[0:3] == b"xxx"
            with pytest.raises(TypeError):
                ro[0:1] = b"y"
        finally:
            ro.close()
    with Map.create(MapType.ARRAY, 4, 4, 1) as plain:
        with pytest.raises(MapError, match="MMAPABLE"):
            plain.mmap_value()


def test_from_fd_and_closed_map(no_leaks: None) -> None:
    m = Map.create(MapType.ARRAY, 4, 4, 2, name="tk_fromfd")
    with Map.from_fd(m.fd) as dup:  # an int fd is duplicated, the original stays ours
        assert dup.fd != m.fd and dup.name == "tk_fromfd"
        dup.update(1, 9)
    assert m.lookup(1) == u32(9)
    m.close()
    m.close()
    from tracekit.errors import ClosedError

    with pytest.raises(ClosedError):
        m.lookup(1)


def test_create_errors(no_leaks: None) -> None:
    with pytest.raises(SyscallError) as ei:
        Map.create(MapType.ARRAY, 8, 4, 1, name="badkey")  # array keys are u32
    assert ei.value.errno == errno.EINVAL
    assert "array map 'badkey'" in str(ei.value) and "key_size=8" in str(ei.value)


def test_map_with_btf_types(no_leaks: None) -> None:
    import struct

    from tracekit.kernel.syscalls import bpf

    strings = b"\0int\0"
    types = struct.pack("<IIII", 1, 1 << 24, 4, (1 << 24) | 32)  # [1] int, signed, 32 bits
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    with bpf.load_btf(hdr + types + strings, "tk") as btf_fd:
        with Map.create(MapType.HASH, 4, 4, 4, name="tk_btfmap", btf_fd=btf_fd.fd,
                        btf_key_type_id=1, btf_value_type_id=1) as m:
            info = m.info()
            assert info.btf_id == bpf.btf_info(btf_fd.fd).id
            assert (info.btf_key_type_id, info.btf_value_type_id) == (1, 1)
            m.update(-1, -2)
            assert m.lookup(-1) == (-2).to_bytes(4, "little", signed=True)
        # A value type of the wrong size is refused with EINVAL (the loader retries without BTF).
        with pytest.raises(SyscallError) as ei:
            Map.create(MapType.HASH, 4, 8, 4, btf_fd=btf_fd.fd, btf_key_type_id=1, btf_value_type_id=1)
        assert ei.value.errno == errno.EINVAL

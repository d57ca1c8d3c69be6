"""Perf buffer (BPF_MAP_TYPE_PERF_EVENT_ARRAY) reader against the live kernel.

Producers are tracepoint programs (tests/objects/attach_perfbuf.bpf.c) calling
bpf_perf_event_output on syscalls this process makes with known arguments.
"""

from __future__ import annotations

import os
import struct

import anyio
import pytest

import tracekit
from tests.support import prebuilt, require_live
from tracekit.errors import ClosedError, MapError, SyscallError
from tracekit.events.perfbuf import PerfBuffer
from tracekit.kernel.syscalls import perf as _perf

pytestmark = pytest.mark.live



def _perf_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]":
                n += 1
        except OSError:
            pass
    return n


@pytest.fixture
def obj():
    require_live()
    o = tracekit.open(prebuilt("attach_perfbuf.bpf.c"))
    o.rodata.target_tgid = os.getpid()
    o.load()
    o.programs["on_getpgid"].attach()
    try:
        yield o
    finally:
        o.close()


def _getpgid(arg: int) -> None:
    try:
        os.getpgid(arg)
    except ProcessLookupError:
        pass


@pytest.mark.anyio
async def test_events_are_decoded_through_the_btf_event_type(obj) -> None:
    # Object.events() picks the perf event array (the object has no ring buffer).
    args = [0x7F000001 + i for i in range(40)]
    got = []

    async def trigger() -> None:
        await anyio.sleep(0.2)  # the reader is set up by the first __anext__ meanwhile
        for a in args:
            _getpgid(a)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(trigger)
            async for ev in obj.events():
                got.append(ev)
                if len(got) == len(args):
                    break
    assert sorted(e.seq for e in got) == list(range(len(args)))
    assert {e.pid for e in got} == {os.getpid()}
    assert sorted(e.arg for e in got) == args
    assert {e.comm for e in got} == {got[0].comm} and got[0].comm


@pytest.mark.anyio
async def test_reader_wakes_on_new_records_and_exact_bytes(obj) -> None:
    pb = obj.reader(raw=True)
    assert isinstance(pb, PerfBuffer)
    assert pb.cpus == [c for c in _perf.online_cpus() if c < obj.maps["events"].map.max_entries]
    assert pb.read_available() == []

    async def trigger() -> None:
        await anyio.sleep(0.2)
        _getpgid(0x1234567)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(trigger)
            rec = await pb.__anext__()
    # raw records keep the kernel's 8-byte alignment padding: struct event is 32 bytes,
    # {u32 size; data} is padded to a multiple of 8, so 4 bytes of padding follow.
    assert len(rec) == 36
    pid, arg, seq = struct.unpack_from("<IiQ", rec)
    assert (pid, arg, seq) == (os.getpid(), 0x1234567, 0)
    assert rec[16:32].rstrip(b"\0").decode()  # comm
    pb.close()


def test_lost_records_are_counted_per_cpu(obj) -> None:
    obj.programs["on_getppid"].attach()
    lost_calls: list[tuple[int, int]] = []
    m = obj.maps["events"]
    pb = PerfBuffer(m.fd, m.map.max_entries, page_count=1, raw=True,
                    on_lost=lambda cpu, n: lost_calls.append((cpu, n)))
    cpu = pb.cpus[0]

    def calls(n: int) -> None:
        os.sched_setaffinity(0, {cpu})  # one ring, so the counts are exact
        try:
            for _ in range(n):
                os.getppid()
        finally:
            os.sched_setaffinity(0, set(_perf.online_cpus()))

    try:
        calls(50)
        # a 4096-byte ring holds one 3016-byte record; the kernel counts the other 49
        # and writes its PERF_RECORD_LOST once there is room again
        first = pb.read_available()
        assert len(first) == 1 and pb.lost == 0
        calls(1)
        second = pb.read_available()
        recs = first + second
        assert len(second) == 1
        assert pb.lost == 49
        assert pb.lost_by_cpu == {cpu: 49}
        assert lost_calls == [(cpu, 49)]
        seqs = [struct.unpack_from("<Q", r)[0] for r in recs]
        assert seqs == [0, 50]
        # 8 + 3000 bytes, padded so that {u32 size; data} is a multiple of 8
        assert all(len(r) == 3012 and r[8] == 0xAB and r[8 + 2999] == 0xCD for r in recs)
    finally:
        pb.close()


def test_close_releases_events_and_map_slots(obj) -> None:
    before = _perf_fds()
    pb = obj.reader()
    assert _perf_fds() >= before + len(pb.cpus)  # (Python's mmap holds a dup of each)
    pb.close()
    pb.close()  # idempotent
    assert _perf_fds() == before
    m = obj.maps["events"]
    # the slots are empty again: nothing keeps the perf events alive through the map
    for cpu in _perf.online_cpus():
        if cpu < m.map.max_entries:
            with pytest.raises(Exception):
                m.lookup(cpu)
    with pytest.raises(ClosedError):
        pb.read_available()


@pytest.mark.anyio
async def test_close_wakes_a_waiting_reader(obj) -> None:
    pb = obj.reader()
    done = anyio.Event()

    async def consume() -> None:
        async for _ in pb:
            pass
        done.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.1)
            pb.close()
            await done.wait()


@pytest.mark.anyio
async def test_cancelled_consumer_leaves_the_reader_usable(obj) -> None:
    pb = obj.reader()
    with anyio.move_on_after(0.2):
        await pb.__anext__()
    _getpgid(4242)
    with anyio.fail_after(10):
        ev = await pb.__anext__()
    assert ev.arg == 4242
    pb.close()


def test_bad_arguments_are_refused(obj) -> None:
    with pytest.raises(MapError, match="power of two"):
        PerfBuffer(obj.maps["events"].fd, 2, page_count=3)
    before = _perf_fds()
    from tracekit.kernel.maps import Map
    from tracekit.uapi import MapType

    ring = Map.create(MapType.RINGBUF, 0, 0, 4096, name="not_perf")
    try:
        with pytest.raises(SyscallError, match="PERF_EVENT_ARRAY"):
            PerfBuffer(ring.fd, 2)
    finally:
        ring.close()
    assert _perf_fds() == before  # nothing leaked by the failed constructor


def test_batch_latency_is_ignored_by_perf_buffers(obj) -> None:
    """A perf buffer does not batch (its small per-CPU rings cannot wake the reader as they
    fill): with a 30 s batch_latency, records 50 ms apart still come out one by one."""
    import threading
    import time

    r = obj.reader()
    r.batch_latency = 30.0
    produced: list[int] = []

    def gen() -> None:
        for i in range(4):
            time.sleep(0.05)
            produced.append(i)
            _getpgid(0x7E000000 + i)

    t = threading.Thread(target=gen, daemon=True)
    t.start()
    seen_with: list[int] = []
    deadline = time.monotonic() + 20
    while len(seen_with) < 4 and time.monotonic() < deadline:
        batch = r.read_available()
        seen_with += [len(produced)] * len(batch)
        if not batch:
            r.wait_sync(1.0)
    t.join()
    r.close()
    # each record handed out before the next was made (a window would hold them for 30 s)
    assert seen_with == [1, 2, 3, 4]

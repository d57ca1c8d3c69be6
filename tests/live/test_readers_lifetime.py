"""Issue 10 item 2: a reader lives exactly as long as its ``async for`` loop.

Leaving a loop over ``obj.events()``, over a started ``Probe`` or over
``tracekit.attach(...)`` by ``break``, by an exception in the body or by cancellation
(before or while waiting) releases the loop's reader at once -- asserted after every
loop, and again with the cyclic garbage collector off, so it is refcounting and explicit
closing that do it, not a later ``gc.collect()``.  1,000 such loops leave the process's
fd and mapping counts exactly as they were.  Two tasks reading one object each get a reader;
the records of the one kernel ring are split between them, none lost, none twice.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import tracekit
from tests.support import open_fds, prebuilt
from tracekit.errors import ReaderBusyError
from tracekit.object import Object, open_object
from tracekit.probe import Probe

pytestmark = [pytest.mark.live, pytest.mark.anyio]

LOOPS = 1000
ATTACH_LOOPS = 1000


def _fds() -> set[int]:
    """Open fds, after collecting garbage: an event loop of an earlier test closes its own
    fds when it is collected, which must not look like a change made by these loops."""
    gc.collect()
    return open_fds()


def _maps() -> int:
    """Lines of /proc/self/maps, after collecting garbage."""
    gc.collect()
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


#: Python's allocator maps and unmaps arenas of its own as the heap's use varies, so the
#: total line count moves by a few lines either way between any two moments; a leak of
#: one reader per loop would add 2 mappings per loop (2,000 here).  The BPF mappings, the
#: ones a reader makes, are counted exactly.
_ALLOCATOR_SLACK = 8


def _bpf_maps() -> int:
    """Mappings of BPF maps (ring buffers, mmapped global data): exact at any moment."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "anon_inode:bpf-map" in line)


def _emit(obj: Object, n: int) -> None:
    obj.programs["storm_ring"].test_run(ctx=struct.pack("<Q", n))


@pytest.fixture
def storm(live: None) -> Iterator[Object]:
    obj = open_object(prebuilt("lost_storm.bpf.c"))
    obj.load()
    try:
        yield obj
    finally:
        obj.close()


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Boom(Exception):
    pass


async def _one_loop(obj: Object, source: Any, mode: int) -> None:
    """One loop over ``source()`` left in one of four ways."""
    if mode == 0:  # break
        _emit(obj, 1)
        async for _ev in source():
            break
    elif mode == 1:  # an exception in the body
        _emit(obj, 1)
        with pytest.raises(_Boom):
            async for _ev in source():
                raise _Boom
    elif mode == 2:  # cancelled before the first record (the scope is already cancelled)
        with anyio.CancelScope() as scope:
            scope.cancel()
            async for _ev in source():
                pytest.fail("a cancelled loop got an event")
    else:  # cancelled while waiting in the kernel fd's epoll
        with anyio.move_on_after(0.001):
            async for _ev in source():
                pytest.fail("no event was produced")


def _mode(i: int) -> int:
    # waits are real time (1 ms): one loop in ten, the rest split between the others
    return 3 if i % 10 == 9 else i % 3


async def _run_loops(obj: Object, source: Any, loops: int, *, totals: bool = True) -> None:
    for i in range(3):  # the event loop's own fds (trio's epoll, asyncio's self-pipe) exist now
        await _one_loop(obj, source, i)
    fds, bpf_maps = _fds(), _bpf_maps()
    maps = _maps() if totals else 0
    for i in range(loops):
        await _one_loop(obj, source, _mode(i))
        assert obj._readers == [], f"loop {i} (mode {_mode(i)}) left its reader open"
        assert _bpf_maps() == bpf_maps, f"loop {i} (mode {_mode(i)}) left its ring mapped"
    assert _fds() == fds
    if totals:
        # (not with the collector off: the garbage trio's exceptions leave grows the heap)
        assert abs(_maps() - maps) <= _ALLOCATOR_SLACK


async def test_object_events_loops_release(storm: Object) -> None:
    await _run_loops(storm, storm.events, LOOPS)


async def test_object_events_loops_release_without_gc(storm: Object, no_gc: None) -> None:
    await _run_loops(storm, storm.events, LOOPS // 5, totals=False)


class _StormProbe(Probe[Any]):
    object = ""  # set per test: a built test object


async def test_probe_loops_release(live: None) -> None:
    class P(_StormProbe):
        object = prebuilt("lost_storm.bpf.c")

    async with P() as probe:
        assert probe.obj is not None
        obj = probe.obj
        await _run_loops(obj, probe.__aiter__, LOOPS)


async def test_attach_loops_release(live: None) -> None:
    path = prebuilt("lost_storm.bpf.c")

    async def one(mode: int) -> None:
        held = [tracekit.attach(path)]
        obj = held[0].obj
        # the loop iterates the stream itself, and is the only one holding it
        await _one_loop(obj, held.pop, mode)
        assert obj.closed, f"mode {mode}: leaving the loop did not close the attach() stream"

    for i in range(3):
        await one(i)
    fds, bpf_maps, maps = _fds(), _bpf_maps(), _maps()
    for i in range(ATTACH_LOOPS):
        await one(_mode(i))
        assert _bpf_maps() == bpf_maps
    assert _fds() == fds
    assert abs(_maps() - maps) <= _ALLOCATOR_SLACK


async def test_break_releases_at_once_without_aclose(storm: Object, no_gc: None) -> None:
    """``break`` calls no ``aclose()``: the iterator's finalizer releases the reader as the
    loop is left (CPython refcounting), before the next statement runs."""
    fds = open_fds()
    _emit(storm, 3)
    async for _ev in storm.events():
        assert len(open_fds()) > len(fds)  # the reader holds its epoll fd while the loop runs
        break
    assert open_fds() == fds
    assert storm._readers == []


async def test_break_counts_records_left_behind(storm: Object) -> None:
    """Records the loop's reader took in its batch but did not hand out are counted."""
    _emit(storm, 5)
    it: Any = storm.events()
    async for _ev in it:
        break
    assert not it.reader.closed  # `it` still refers to it: the loop may go on
    assert (await it.__anext__()).seq == 1
    await it.aclose()
    assert it.reader.closed and it.reader.discarded == 3


async def _read_until(obj: Object, source: Any, want: int, got: list[list[int]]) -> None:
    """Two consumer tasks and one producer; ends once ``want`` records arrived in all."""
    total = [0]
    done = anyio.Event()

    async def consume(mine: list[int]) -> None:
        async for ev in source():
            mine.append(ev.seq)
            total[0] += 1
            if total[0] == want:
                done.set()

    async with anyio.create_task_group() as tg:
        for mine in got:
            tg.start_soon(consume, mine)
        await anyio.sleep(0.01)  # both consumers are waiting now
        for _ in range(want // 10):
            _emit(obj, 10)  # 10 records: well below the one-page ring's ~100
            await anyio.sleep(0.002)
        with anyio.fail_after(5):
            await done.wait()
        tg.cancel_scope.cancel()


async def test_two_tasks_read_one_object(storm: Object) -> None:
    got: list[list[int]] = [[], []]
    await _read_until(storm, storm.events, 200, got)
    seqs = sorted(got[0] + got[1])
    assert seqs == list(range(seqs[0], seqs[0] + 200)), "records were lost or delivered twice"
    assert storm._readers == []


async def test_two_tasks_iterate_one_probe(live: None) -> None:
    class P(_StormProbe):
        object = prebuilt("lost_storm.bpf.c")

    async with P() as probe:
        assert probe.obj is not None
        got: list[list[int]] = [[], []]
        await _read_until(probe.obj, probe.__aiter__, 200, got)
        seqs = sorted(got[0] + got[1])
        assert seqs == list(range(200))


async def test_perf_event_array_has_one_reader_at_a_time(storm: Object) -> None:
    """A perf event array's CPU slots hold one reader's events: a second reader would
    silently take them over, so it is refused while the first is open."""
    async def first_then_second() -> None:
        async for _ev in storm.events("perf_events"):
            break

    it = storm.events("perf_events")
    with pytest.raises(ReaderBusyError, match="already has a reader"):
        storm.events("perf_events")
    await it.aclose()
    storm.programs["storm_perf"].test_run(ctx=struct.pack("<Q", 1))
    with anyio.move_on_after(0.01):  # the new reader opened after the record: nothing to read
        await first_then_second()
    assert storm._readers == []

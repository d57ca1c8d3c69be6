"""Issue 13 item 3: how a RecordStream waits.  On asyncio its fd stays registered with the
event loop across waits (one add_reader for many wake-ups), is unregistered when a wake-up
finds nobody waiting (a readable fd must not make the loop spin while the consumer is busy
elsewhere) and when the reader closes; batches of decoded, filtered events come out of
EventIterator.batches().  The fds are real pipes and the loops real asyncio/trio loops."""

from __future__ import annotations

import asyncio
import os
import select
from typing import Any

import anyio
import pytest

from tracekit.events.stream import EventIterator, RecordStream

pytestmark = pytest.mark.anyio


class PipeStream(RecordStream):
    """Records are the bytes written to a pipe (one record per byte)."""

    def __init__(self) -> None:
        self._init_stream(64)
        self.takes = 0
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self._open_epoll().register(self.r, select.EPOLLIN)

    def _take(self, out: list[Any], limit: int) -> int:
        self.takes += 1
        try:
            b = os.read(self.r, min(limit, 65536))
        except BlockingIOError:
            return 0
        out.extend(b)
        return len(b)

    def _release(self) -> None:
        os.close(self.r)
        os.close(self.w)

    def put(self, data: bytes) -> None:
        os.write(self.w, data)


async def test_one_registration_for_many_wakeups(anyio_backend: str) -> None:
    st = PipeStream()
    got: list[int] = []
    adds = 0
    if anyio_backend == "asyncio":
        loop = asyncio.get_running_loop()
        real = loop.add_reader

        def counting(*a: Any) -> Any:
            nonlocal adds
            adds += 1
            return real(*a)

        loop.add_reader = counting  # type: ignore[method-assign]

    async def produce() -> None:
        for i in range(20):
            await anyio.sleep(0.005)  # each byte arrives while the consumer waits
            st.put(bytes([i]))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async for x in st:
                got.append(x)
                if len(got) == 20:
                    break
    assert got == list(range(20))
    # per record: the take after its wake-up and the empty one before the next wait; a
    # stale callback (readiness seen before the take) would add a third
    assert st.takes <= 2 * 20 + 2
    if anyio_backend == "asyncio":
        assert adds == 1
        await anyio.sleep(0.01)  # stale callbacks (readiness seen before the last take) are ignored
        assert st._reg_loop is asyncio.get_running_loop()
        fd = st._reg_fd
        st.close()
        assert st._reg_loop is None
        assert fd not in asyncio.get_running_loop()._selector.get_map()  # type: ignore[attr-defined]
    st.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stray_wakeup_unregisters_instead_of_spinning(anyio_backend: str) -> None:
    """asyncio only: records arriving while the consumer sleeps elsewhere leave the fd
    readable; the loop must not call back on every iteration until the consumer returns."""
    st = PipeStream()
    it = aiter(st)
    st.put(b"a")
    assert await anext(it) == ord("a")
    with anyio.move_on_after(0.02):
        await anext(it)  # registers, then times out: nobody waits afterwards
    loop = asyncio.get_running_loop()
    calls = 0
    real = st._on_readable

    def counting() -> None:
        nonlocal calls
        calls += 1
        real()

    st._on_readable = counting  # type: ignore[method-assign]
    if st._reg_loop is not None:  # re-register with the counting callback
        loop.remove_reader(st._reg_fd)
        loop.add_reader(st._reg_fd, st._on_readable)
    st.put(b"b")
    await anyio.sleep(0.1)  # the consumer is elsewhere for ~100 loop iterations' worth
    assert calls <= 1 and st._reg_loop is None
    assert await anext(it) == ord("b")  # and the next wait finds the record at once
    st.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_close_wakes_a_waiter(anyio_backend: str) -> None:
    st = PipeStream()
    ended = anyio.Event()

    async def consume() -> None:
        async for _ in st:
            pass
        ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.02)
            assert st._futs
            st.close()
            await ended.wait()
    assert st._reg_loop is None and not st._futs


async def test_event_iterator_batches_decode_filter_and_release(anyio_backend: str) -> None:
    st = PipeStream()
    closed: list[Any] = []
    ev = EventIterator(st, decode=lambda x: None if x == 0 else x * 10, keep=lambda v: v != 30,
                       on_close=closed.append)
    st.put(bytes([0, 1, 2, 3, 4]))
    flushed: list[int] = []
    st.on_wait = lambda: flushed.append(1)
    batches = []

    async def later() -> None:
        await anyio.sleep(0.02)
        st.put(bytes([5, 6]))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async for batch in ev.batches():
                batches.append(batch)
                if sum(map(len, batches)) >= 5:
                    break
                if len(batches) == 1:
                    tg.start_soon(later)
    assert batches[0] == [10, 20, 40]  # 0 decoded to None, 30 filtered out
    assert [x for b in batches for x in b] == [10, 20, 40, 50, 60]
    assert flushed  # on_wait ran before the reader waited for the second batch
    del batches
    it = ev.batches()
    st.close()
    with pytest.raises(StopAsyncIteration):
        await it.__anext__()
    assert closed == [st]


def test_sync_read_available_and_wait_sync() -> None:
    """The tools' loop: no event loop at all."""
    import time

    st = PipeStream()
    ev = EventIterator(st, decode=lambda x: x + 1, keep=lambda v: v % 2 == 0)
    assert ev.read_available() == []
    t0 = time.monotonic()
    assert st.wait_sync(0.05) is False  # nothing: times out
    assert time.monotonic() - t0 >= 0.04
    flushed: list[int] = []
    st.on_wait = lambda: flushed.append(1)
    st.put(bytes([1, 2, 3, 5]))
    assert st.wait_sync(5) is True and flushed == [1]
    assert ev.read_available() == [2, 4, 6]  # decoded, 3 filtered out
    ev.close()
    assert st.closed

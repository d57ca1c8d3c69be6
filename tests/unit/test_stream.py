"""tracekit.events.stream.RecordStream through a ring reader over kernel-layout memory.

The wake-up fd is a pipe (readable once a byte is written), so the async paths run on
asyncio and trio without a kernel ring; the ring protocol itself is tested in
test_ringbuf_layout.py and against the kernel in tests/live.
"""

from __future__ import annotations

import os

import anyio
import pytest

from tests.unit.test_ringbuf_layout import FakeRing, rec
from tracekit.errors import ClosedError
from tracekit.events.ringbuf import RingBuffer

pytestmark = pytest.mark.anyio


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


async def test_iterator_and_sync_reads_share_one_pending_list(pipe) -> None:
    ring = FakeRing(4096)
    want = [rec(i, 16) for i in range(10)]
    for p in want:
        ring.output(p)
    rb = RingBuffer.from_memory(ring.memory(), fd=pipe[0])
    rb.batch_size = 6
    got = [await rb.__anext__() for _ in range(2)]  # takes a batch of 6 from the ring
    assert ring.cons == 6 * 24
    got += rb.read_available(limit=3)  # the rest of that batch comes first ...
    got += rb.read_available()  # ... then the ring
    assert got == want
    with anyio.move_on_after(0.05) as scope:  # nothing left: it waits on the empty pipe
        await rb.__anext__()
    assert scope.cancelled_caught
    ring.output(b"late")  # a cancelled wait loses nothing
    assert rb.read_available() == [b"late"]
    rb.close()


async def test_close_ends_a_waiting_iterator_and_wait_raises(pipe) -> None:
    ring = FakeRing(4096)
    rb = RingBuffer.from_memory(ring.memory(), fd=pipe[0], name="m")
    got: list[bytes] = []

    async def consume() -> None:
        async for r in rb:
            got.append(r)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.01)
            ring.output(b"abc")
            os.write(pipe[1], b"x")  # the fd becomes readable: one wake-up
            while not got:
                await anyio.sleep(0.001)
            rb.close()
    assert got == [b"abc"]
    with pytest.raises(ClosedError, match="ring buffer 'm' is closed"):
        await rb.wait()
    with pytest.raises(StopAsyncIteration):
        await rb.__anext__()


async def test_memory_only_reader_cannot_wait() -> None:
    rb = RingBuffer.from_memory(FakeRing(4096).memory())
    with pytest.raises(ClosedError, match="no fd to wait on"):
        await rb.wait()
    rb.close()

"""Ring buffer reader against the kernel: records produced in-kernel by a SEC("syscall")
program (bpf_loop + bpf_ringbuf_output, run with BPF_PROG_TEST_RUN) arrive in order with
exact contents, on asyncio and trio; wrap-around; merge; close and cancel while waiting."""

from __future__ import annotations

import anyio
import pytest

from tests.live.ringbuf_producer import Producer, expected
from tests.support import build_bpf_object, require_live
from tracekit.btf.reader import BTF
from tracekit.errors import ClosedError
from tracekit.events.records import EventType
from tracekit.events.ringbuf import RingBuffer, merge

pytestmark = pytest.mark.anyio
PAGE = 4096


@pytest.fixture
def producer():
    require_live()
    with Producer(16 * PAGE) as p:
        yield p


async def test_records_in_order_exact(producer: Producer) -> None:
    rb = RingBuffer(producer.map.fd, producer.ring_size, name="t")
    got: list[bytes] = []

    async def consume() -> None:
        async for rec in rb:
            got.append(rec)
            if len(got) == 300:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(0.01)  # let the consumer block on the empty ring first
        for run in range(3):
            assert producer.run(100, 48, base=run * 100) == 100
            await anyio.sleep(0)
    assert got == [expected(i, 48) for i in range(300)]
    assert rb.pending_bytes() == 0
    rb.close()


async def test_mixed_lengths_and_batches(producer: Producer) -> None:
    rb = RingBuffer(producer.map.fd, producer.ring_size)
    want = []
    for i, ln in enumerate((1, 7, 8, 13, 48, 64)):
        producer.run(5, ln, base=i * 10)
        want += [expected(i * 10 + j, ln) for j in range(5)]
    got: list[bytes] = []
    async for batch in rb.batches():
        got += batch
        if len(got) >= len(want):
            break
    assert got == want
    rb.close()


async def test_wrap_around_one_page_ring() -> None:
    require_live()
    with Producer(PAGE) as p:
        rb = RingBuffer(p.map.fd, PAGE)
        total, chunk = 3000, 60  # 60 * 56 bytes fit in one page; 3000 records lap it ~40 times
        got: list[bytes] = []
        done = anyio.Event()

        async def consume() -> None:
            async for rec in rb:
                got.append(rec)
                if len(got) == total:
                    done.set()
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            for base in range(0, total, chunk):
                while rb.pending_bytes():  # wait for the consumer to free the ring
                    await anyio.sleep(0)
                assert p.run(chunk, 48, base) == chunk
            with anyio.fail_after(10):
                await done.wait()
        assert got == [expected(i, 48) for i in range(total)]
        rb.close()


async def test_decoded_records(producer: Producer) -> None:
    btf = BTF.from_file(str(build_bpf_object("events_types.bpf.c")))
    et = EventType.for_map(btf, "seq")
    rb = RingBuffer(producer.map.fd, producer.ring_size, decoder=et)
    producer.run(50, 48, base=1000)
    recs = rb.read_available()
    assert [r.seq for r in recs] == list(range(1000, 1050))
    assert recs[3].k == tuple(((1003 << 8) | k) for k in range(1, 6))
    raw = RingBuffer(producer.map.fd, producer.ring_size, decoder=et, raw=True)
    producer.run(1, 48, base=7)
    assert raw.read_available() == [expected(7, 48)]
    rb.close()
    raw.close()


async def test_close_wakes_waiting_iterator(producer: Producer) -> None:
    rb = RingBuffer(producer.map.fd, producer.ring_size)
    ended = anyio.Event()

    async def consume() -> None:
        async for _ in rb:
            pytest.fail("no record was produced")
        ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.05)
            rb.close()
            await ended.wait()
    assert rb.closed
    with pytest.raises(ClosedError):
        await rb.wait()


async def test_cancelled_consumer_leaves_reader_usable(producer: Producer) -> None:
    rb = RingBuffer(producer.map.fd, producer.ring_size)
    with anyio.move_on_after(0.05):
        async for _ in rb:
            pass
    producer.run(10, 16, base=5)
    got = []
    async for rec in rb:
        got.append(rec)
        if len(got) == 4:
            break
    with anyio.CancelScope() as scope:  # cancel between records: nothing is lost
        scope.cancel()
        await anyio.sleep(1)
    got += rb.read_available()
    assert got == [expected(5 + i, 16) for i in range(10)]
    rb.close()


async def test_merge_two_rings_and_close(producer: Producer) -> None:
    with Producer(4 * PAGE, name="tk_rb2") as other:
        rs = merge(RingBuffer(producer.map.fd, producer.ring_size, name="a"),
                   RingBuffer(other.map.fd, other.ring_size, name="b"))
        got: list[bytes] = []

        async def consume() -> None:
            async for rec in rs:
                got.append(rec)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(0.01)
                producer.run(20, 24, base=0)
                other.run(20, 24, base=1000)
                while len(got) < 40:
                    await anyio.sleep(0.001)
                rs.close()  # ends the waiting iterator
        assert sorted(got) == sorted([expected(i, 24) for i in range(20)] + [expected(1000 + i, 24) for i in range(20)])
        seqs = [int.from_bytes(r[:8], "little") for r in got]
        assert [s for s in seqs if s < 1000] == list(range(20))  # each ring in its own order
        assert [s for s in seqs if s >= 1000] == list(range(1000, 1020))
        assert all(r.closed for r in rs.readers)

"""The ring reader's drain with a decoder: prefixes of equal records, a producer it chases
(decoded once per drain), and the window bound of a batching reader (_FillRate)."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.test_ringbuf_layout import FakeRing, rec
from tracekit.btf.reader import BTF
from tracekit.events import ringbuf
from tracekit.events.records import EventType
from tracekit.events.ringbuf import RingBuffer, _Drain, _FillRate

OPENSNOOP_O = Path(__file__).resolve().parents[2] / "tracekit" / "probes" / "opensnoop.bpf.o"


class Spy:
    """Counts the calls a decoder gets from the drain."""

    def __init__(self, et: Any) -> None:
        self.et = et
        self.size = et.size
        self.calls: list[tuple[str, int]] = []

    def decode(self, b: bytes) -> Any:
        self.calls.append(("one", 1))
        return self.et.decode(b)

    def decode_batch(self, bufs: list[bytes]) -> list[Any]:
        self.calls.append(("batch", len(bufs)))
        return [self.et.decode(b) for b in bufs]

    def decode_strided(self, blob: bytes, skip: int, stride: int, count: int) -> list[Any]:
        self.calls.append(("strided", count))
        return self.et.decode_strided(blob, skip, stride, count)


@pytest.fixture(scope="module")
def et() -> EventType:
    return EventType.from_btf(BTF.from_file(str(OPENSNOOP_O)), "event").eager()


def open_rec(i: int, fname: bytes = b"/dev/null", extra: int = 0) -> bytes:
    return struct.pack("<QiiIiiI16s255sx", i, 10 + i, 20 + i, 0, 3, 0, 0, b"storm\0junk", fname) + bytes(extra)


class ChasedProducer:
    """A producer position that reveals one more committed record each time the consumer
    reads it: the drain's view of a producer exactly as fast as itself."""

    def __init__(self, ring: FakeRing, stride: int, total: int) -> None:
        self.ring, self.stride, self.total = ring, stride, total
        self.reads = 0

    def __getitem__(self, i: int) -> int:
        self.reads += 1
        return min(self.reads, self.total) * self.stride


def test_a_chased_producer_is_decoded_once(et: EventType) -> None:
    ring = FakeRing(1 << 16)
    payloads = [open_rec(i) for i in range(40)]
    for p in payloads:
        ring.output(p)
    spy = Spy(et)
    m = ring.memory()
    prod = ChasedProducer(ring, 312, 40)
    d = _Drain(SimpleNamespace(cons=m.cons, prod=prod, hdr=m.hdr, data=m.data, mask=m.mask), spy)
    out: list[Any] = []
    assert d.drain(out, 1000) == 40
    assert prod.reads == 41  # a pass per record, and a last look that finds nothing
    assert spy.calls == [("strided", 40)]  # decoded once, at the end
    assert [e._asdict() for e in out] == [et.decode(p)._asdict() for p in payloads]
    assert ring.cons == 40 * 312 and d.taken == 40


def test_equal_prefix_before_a_busy_reservation_is_one_call(et: EventType) -> None:
    ring = FakeRing(1 << 16)
    for i in range(5):
        ring.output(open_rec(i))
    busy = ring.reserve(open_rec(5))  # the producer's next record, not committed yet
    spy = Spy(et)
    rb = RingBuffer.from_memory(ring.memory(), decoder=spy)
    assert [e.ts for e in rb.read_available()] == [0, 1, 2, 3, 4]
    assert spy.calls == [("strided", 5)] and ring.cons == busy
    ring.commit(busy)
    assert [e.ts for e in rb.read_available()] == [5]  # a single record: strided too
    assert spy.calls[-1] == ("strided", 1)


def test_mixed_runs_keep_ring_order(et: EventType) -> None:
    ring = FakeRing(1 << 16)
    want = []
    for i in range(12):
        # equal runs of 304 and 312-byte records, a discarded one, and short ones (a prefix)
        p = open_rec(i, extra=8 if 4 <= i < 7 else 0)
        if i == 9:
            p = p[:100]
        if i == 8:
            ring.commit(ring.reserve(p), discard=True)
            continue
        ring.output(p)
        want.append(et.decode(p)._asdict())
    spy = Spy(et)
    rb = RingBuffer.from_memory(ring.memory(), decoder=spy)
    assert [e._asdict() for e in rb.read_available()] == want
    assert ring.cons == ring.prod
    assert spy.calls[:3] == [("strided", 4), ("strided", 3), ("strided", 1)]
    assert spy.calls[3][0] == "batch"  # the discarded record: the general path walks the rest


def test_short_fixed_records_are_zero_padded(et: EventType) -> None:
    ring = FakeRing(1 << 16)
    for i in range(6):
        ring.output(open_rec(i)[:60])  # ts..comm and 12 bytes of fname
    spy = Spy(et)
    got = RingBuffer.from_memory(ring.memory(), decoder=spy).read_available()
    assert [(e.ts, e.comm, e.fname) for e in got] == [(i, "storm", "/dev/null"[:12]) for i in range(6)]
    assert spy.calls == [("batch", 6)]


def test_raw_records_with_a_chased_producer() -> None:
    ring = FakeRing(4096)
    payloads = [rec(i, 24) for i in range(20)]
    for p in payloads:
        ring.output(p)
    m = ring.memory()
    d = _Drain(SimpleNamespace(cons=m.cons, prod=ChasedProducer(ring, 32, 20), hdr=m.hdr, data=m.data,
                               mask=m.mask), None)
    out: list[Any] = []
    assert d.drain(out, 15) == 15 and out == payloads[:15]  # the limit holds while chasing
    assert ring.cons == 15 * 32


def _drains(size: int) -> tuple[SimpleNamespace, list[Any]]:
    d = SimpleNamespace(mem=SimpleNamespace(cons=[0], size=size), taken=0)
    return d, [d]


def test_fill_rate_bounds_a_window() -> None:
    size = 1 << 18
    d, drains = _drains(size)
    f = _FillRate(1)
    assert f.bound(0.02, drains, last_wake=0.0, now=1.0) == 0.02  # nothing measured yet
    # a window slept out from t=1.0: 100 KiB in 10 ms -> 10 MiB/s; a quarter of the ring fills
    # in 6.4 ms: the next window is cut to that
    d.mem.cons[0], d.taken = 100 << 10, 300
    got = f.bound(0.02, drains, last_wake=1.009, now=1.010)
    assert got == pytest.approx(ringbuf.FILL_FRACTION * size / (10 << 20) * 1.024, rel=1e-6)
    # the producer slows down 10x for one window: the estimate only halves
    d.mem.cons[0], d.taken = (100 << 10) + (10 << 10), 330  # 10 KiB in 10 ms
    slow = f.bound(0.02, drains, last_wake=1.0105, now=1.020)
    assert slow == pytest.approx(2 * got, rel=1e-6)
    assert f.bound(None, drains, last_wake=1.0105, now=1.021) is None  # no window: none made


def test_fill_rate_after_a_wait_on_the_fd() -> None:
    d, drains = _drains(1 << 18)
    f = _FillRate(1)
    f.bound(None, drains, last_wake=0.0, now=1.0)
    # one record took the reader out of its wait: it says nothing about the rate (an
    # isolated record; the stream's own window is kept)
    d.mem.cons[0], d.taken = 56, 1
    assert f.bound(0.02, drains, last_wake=5.0, now=5.0001) == 0.02
    # after the next wait on the fd, 30 records 312 bytes apart, taken within 0.1 ms of the
    # wake-up: 29 of them came in while it worked -> ~90 MB/s, a window of ~0.7 ms
    d.mem.cons[0], d.taken = 56 + 30 * 312, 31
    f.slept = False
    got = f.bound(0.02, drains, last_wake=6.0, now=6.0001)
    assert got == pytest.approx(ringbuf.FILL_FRACTION * (1 << 18) / (29 * 312 / 0.0001), rel=1e-3)


def _burst_cycle(reader: Any, rings: list[FakeRing], n: int) -> float | None:
    """One wake-up of a batching reader: records come in, it wakes, drains, decides."""
    for ring in rings:
        for i in range(n):
            ring.output(rec(i, 24))
    reader._woke()
    assert len(reader.read_available()) == n * len(rings)
    return reader._batch_delay()


def test_a_batching_reader_cuts_its_window_to_the_ring() -> None:
    ring = FakeRing(4096)
    rb = RingBuffer.from_memory(ring.memory())
    rb.batch_latency = 0.5
    rb._woke()  # a first wake-up just before: the next one makes a burst
    first = _burst_cycle(rb, [ring], 2)
    assert first is not None and first > 0.4  # no rate known yet: the stream's window
    # 64 records (2 KiB of a 4 KiB ring) within microseconds of the last decision: a window
    # of at most the time a quarter of the ring takes at that rate
    second = _burst_cycle(rb, [ring], 64)
    assert second is not None and 0 < second < 0.01
    rb.close()


def test_a_ring_set_cuts_its_window_to_its_fullest_ring() -> None:
    import os

    from tracekit.events.ringbuf import RingBufferSet

    rings = [FakeRing(4096), FakeRing(1 << 16)]
    pipes = [os.pipe() for _ in rings]
    try:
        rs = RingBufferSet([RingBuffer.from_memory(r.memory(), fd=p[0]) for r, p in zip(rings, pipes)])
        rs.batch_latency = 0.5
        rs._woke()
        assert (_burst_cycle(rs, rings, 2) or 0) > 0.4
        small = _burst_cycle(rs, rings, 64)  # the 4 KiB ring bounds the window
        assert small is not None and 0 < small < 0.01
        rs.close()
    finally:
        for a, b in pipes:
            os.close(a)
            os.close(b)

"""The ring reader against memory laid out exactly as kernel/bpf/ringbuf.c lays it out.

The kernel maps the data pages twice back to back; here a bytearray of ``2 * size`` is kept
mirrored (every byte written at ``off`` and ``off + size``), which is what the double
mapping shows user space.  The reader runs the same drain code as on a real map: only
the :class:`RingMemory` differs.
"""

from __future__ import annotations

import struct

import pytest

from tracekit.errors import ClosedError, MapError
from tracekit.events.ringbuf import BUSY_BIT, DISCARD_BIT, RingBuffer, RingMemory


class FakeRing:
    """A BPF producer over kernel-layout memory: reserve, write, commit or discard."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.consumer_page = bytearray(4096)
        self.producer_page = bytearray(4096)
        self.data = bytearray(2 * size)
        self.prod = 0

    def memory(self) -> RingMemory:
        return RingMemory(self.consumer_page, self.producer_page, self.data, self.size)

    @property
    def cons(self) -> int:
        return struct.unpack_from("<Q", self.consumer_page)[0]

    def _write(self, pos: int, b: bytes) -> None:
        for i, byte in enumerate(b):
            off = (pos + i) & (self.size - 1)
            self.data[off] = byte
            self.data[off + self.size] = byte  # the second mapping

    def reserve(self, payload: bytes) -> int:
        """Reserve and fill a record, still BUSY; returns its position."""
        stride = (len(payload) + 8 + 7) & ~7
        assert self.prod + stride - self.cons <= self.size, "ring full"
        pos = self.prod
        self._write(pos, struct.pack("<II", len(payload) | BUSY_BIT, 0) + payload)
        self.prod += stride
        struct.pack_into("<Q", self.producer_page, 0, self.prod)
        return pos

    def commit(self, pos: int, discard: bool = False) -> None:
        off = pos & (self.size - 1)
        ln = struct.unpack_from("<I", self.data, off)[0] & ~BUSY_BIT
        self._write(pos, struct.pack("<I", ln | (DISCARD_BIT if discard else 0)))

    def output(self, payload: bytes) -> None:
        self.commit(self.reserve(payload))


def rec(i: int, n: int = 20) -> bytes:
    return bytes((i + j) & 0xFF for j in range(n))


def test_records_in_order_and_consumer_committed() -> None:
    ring = FakeRing(4096)
    payloads = [rec(i, 1 + i % 13) for i in range(30)]  # mixed lengths: per-record path
    for p in payloads:
        ring.output(p)
    rb = RingBuffer.from_memory(ring.memory())
    assert rb.pending_bytes() == ring.prod
    assert rb.read_available() == payloads
    assert ring.cons == ring.prod  # consumer position published
    assert rb.read_available() == []


def test_fixed_size_fast_path_and_limit() -> None:
    ring = FakeRing(4096)
    payloads = [rec(i, 48) for i in range(40)]  # stride 56, all equal: strided path
    for p in payloads:
        ring.output(p)
    rb = RingBuffer.from_memory(ring.memory())
    first = rb.read_available(limit=15)
    assert first == payloads[:15]
    assert ring.cons == 15 * 56  # only what was taken is released to the producer
    assert rb.read_available() == payloads[15:]
    assert ring.cons == ring.prod


def test_wrap_around_reads_contiguously() -> None:
    size = 256
    ring = FakeRing(size)
    rb = RingBuffer.from_memory(ring.memory())
    got, want = [], []
    for i in range(200):  # many laps; records straddle the end of the ring
        p = rec(i, 24 + (i % 3) * 8)
        ring.output(p)
        want.append(p)
        if i % 5 == 4:
            got.extend(rb.read_available())
    got.extend(rb.read_available())
    assert got == want
    assert ring.prod > 10 * size and ring.cons == ring.prod


def test_wrap_around_fixed_size_window() -> None:
    size = 256
    ring = FakeRing(size)
    rb = RingBuffer.from_memory(ring.memory())
    for i in range(3):  # move the positions so the next window straddles the end
        ring.output(rec(100 + i, 40))
    rb.read_available()
    start = ring.prod & (size - 1)
    payloads = [rec(i, 40) for i in range(5)]
    for p in payloads:
        ring.output(p)
    assert start + 5 * 48 > size  # the window wraps
    assert rb.read_available() == payloads


def test_busy_record_stops_the_reader_until_committed() -> None:
    ring = FakeRing(4096)
    ring.output(b"one")
    busy = ring.reserve(b"two")
    ring.output(b"three")  # committed, but behind a BUSY record
    rb = RingBuffer.from_memory(ring.memory())
    assert rb.read_available() == [b"one"]
    assert ring.cons == busy  # stops exactly at the BUSY header
    assert rb.read_available() == []
    ring.commit(busy)
    assert rb.read_available() == [b"two", b"three"]
    assert ring.cons == ring.prod


def test_busy_inside_fixed_size_window() -> None:
    ring = FakeRing(4096)
    for i in range(4):
        ring.output(rec(i, 16))
    busy = ring.reserve(rec(4, 16))
    ring.output(rec(5, 16))
    rb = RingBuffer.from_memory(ring.memory())
    assert rb.read_available() == [rec(i, 16) for i in range(4)]
    assert ring.cons == busy
    ring.commit(busy)
    assert rb.read_available() == [rec(4, 16), rec(5, 16)]


def test_discarded_records_are_skipped() -> None:
    ring = FakeRing(4096)
    ring.output(rec(1, 16))
    d = ring.reserve(rec(2, 16))
    ring.commit(d, discard=True)
    ring.output(rec(3, 16))
    rb = RingBuffer.from_memory(ring.memory())
    assert rb.read_available() == [rec(1, 16), rec(3, 16)]
    assert ring.cons == ring.prod  # the discarded record's space is released too


def test_decoder_is_applied_on_both_paths() -> None:
    class U32Pair:
        size = 8
        st = struct.Struct("<II")

        def decode(self, b: bytes) -> tuple[int, int]:
            return self.st.unpack_from(b)

        def decode_batch(self, bufs: list[bytes]) -> list[tuple[int, int]]:
            return [self.decode(b) for b in bufs]

        def decode_strided(self, blob: bytes, skip: int, stride: int, count: int) -> list[tuple[int, int]]:
            return [self.st.unpack_from(blob, k * stride + skip) for k in range(count)]

    ring = FakeRing(4096)
    for i in range(10):
        ring.output(struct.pack("<II", i, i * i))
    ring.output(struct.pack("<IIxxxx", 10, 100))  # different length: general path
    rb = RingBuffer.from_memory(ring.memory(), decoder=U32Pair())
    assert rb.read_available() == [(i, i * i) for i in range(11)]
    class NoStrided:  # a minimal decoder: decode_batch() gets the fixed-size records
        size = 8

        def decode(self, b: bytes) -> tuple[int, int]:
            return struct.unpack_from("<II", b)

        def decode_batch(self, bufs: list[bytes]) -> list[tuple[int, int]]:
            return [self.decode(b) for b in bufs]

    for i in range(3):
        ring.output(struct.pack("<II", i, 7))
    assert RingBuffer.from_memory(ring.memory(), decoder=NoStrided()).read_available() == [(i, 7) for i in range(3)]
    ring.output(struct.pack("<II", 1, 2))
    raw = RingBuffer.from_memory(ring.memory(), decoder=U32Pair(), raw=True)
    assert raw.read_available() == [struct.pack("<II", 1, 2)]


def test_corrupt_header_is_reported() -> None:
    ring = FakeRing(4096)
    ring.output(b"x" * 8)
    ring._write(0, struct.pack("<I", 3000))  # length runs past the producer position
    rb = RingBuffer.from_memory(ring.memory())
    with pytest.raises(MapError, match="corrupt"):
        rb.read_available()


def test_close_is_idempotent_and_final() -> None:
    ring = FakeRing(4096)
    ring.output(b"abc")
    rb = RingBuffer.from_memory(ring.memory())
    rb.close()
    rb.close()
    assert rb.closed
    with pytest.raises(ClosedError):
        rb.read_available()


def test_bad_memory_is_rejected() -> None:
    with pytest.raises(MapError, match="power of two"):
        RingMemory(bytearray(8), bytearray(8), bytearray(600), 300)
    with pytest.raises(MapError, match="mapped twice"):
        RingMemory(bytearray(8), bytearray(8), bytearray(256), 256)
    with pytest.raises(MapError, match="writable"):
        RingMemory(bytes(8), bytearray(8), bytearray(512), 256)

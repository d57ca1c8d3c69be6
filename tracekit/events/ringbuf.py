"""BPF ring-buffer reader: mmap the map as the kernel lays it out, drain it, await it.

Layout (kernel/bpf/ringbuf.c), as seen from user space through the map fd:

* offset 0, one page, read-write: the *consumer page*; its first u64 is the consumer
  position, which only user space writes.
* offset ``page_size``, read-only, ``page_size + 2 * max_entries`` bytes: the *producer
  page* (first u64: producer position) followed by the data area mapped **twice** back
  to back, so a record that wraps past the end of the ring still reads as one contiguous
  run of bytes.  Positions grow forever; ``pos & (max_entries - 1)`` is the offset.
* each record: an 8-byte header ``{u32 len; u32 pg_off}``, then ``len`` bytes; bit 31
  of ``len`` is BUSY (reserved, not yet committed: stop there), bit 30 is DISCARD
  (skip it); the next record starts ``round_up(len + 8, 8)`` bytes later.

Design choices:

* **Copies, not leases.**  A batch's committed records are copied out of the mmap (by
  ONE memcpy, or cut straight out of it by one ``iter_unpack`` for raw fixed-size
  records: the double mapping makes the whole ``[consumer, producer)`` window
  contiguous), then the consumer position is advanced once for the whole batch.  The
  records handed out are ``bytes`` (or decoded objects) that stay valid forever; a
  zero-copy lease would save one memcpy per batch but make every caller responsible for
  committing, and a forgotten commit stalls the BPF producer.  The memcpy is ~150 M
  records/s here, far from being the bottleneck of a Python consumer.
* **Headers first, then data.**  Headers are read from live memory with single aligned
  4-byte loads, in order, before the data are copied; Python has no explicit fences, so
  the acquire ordering the protocol needs comes from the CPU (x86-64 TSO: loads are not
  reordered with older loads; stores with older stores).  The consumer position is
  written with one aligned 8-byte store (a ``memoryview`` cast to ``Q``; ``struct``'s
  little-endian packers would store byte by byte, which the kernel could see torn).
* **Fixed-size fast path.**  The records of the window that have the same length as
  the first (the normal case: one ``struct event``; the window often ends with the
  producer's next reservation, still BUSY) are checked with one strided slice of their
  headers (C speed) and cut or decoded with ``struct.iter_unpack``: no Python loop per
  record.  A DISCARD record or a mix of sizes takes the per-record path.
* **Decoded once per drain.**  A consumer as fast as the producer finds a few new
  records on each look at the producer position; their copies are collected and
  decoded at the end of the drain, so a decoder's per-call cost is not paid per look.
* **Bounded batching windows.**  A reader batching a burst (``batch_latency``) sleeps
  out a window instead of waiting on the fd; the window is cut so that the ring fills
  to at most :data:`FILL_FRACTION` at the producer's estimated rate (a 256 KiB ring of
  312-byte records is full after 2.8 ms of a 300 k/s storm).
* **No lost wake-ups.**  The kernel only wakes a waiter when a record is committed
  while the consumer had caught up to it; a record committed after we read the producer
  position but before we published the consumer position would wake no one.  So after
  committing, the producer position is read again and draining continues (libbpf does
  the same).
* **Waiting, closing, cancellation** are :mod:`tracekit.events.stream`'s, shared with the perf
  buffer: a ring waits on its map fd (readable while data are unconsumed), a merged
  reader over several rings (:class:`RingBufferSet`) on ONE epoll fd holding all the map
  fds; records taken from the ring are handed out from the reader's own pending list, so
  cancelling a consumer at any await loses nothing.
"""

from __future__ import annotations

import functools
import mmap
import select
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from tracekit.errors import ClosedError, MapError
from tracekit.events.stream import DEFAULT_BATCH, RecordStream

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8
_LEN_MASK = DISCARD_BIT - 1
PAGE_SIZE = mmap.PAGESIZE



class Decoder(Protocol):
    """What a ring-buffer decoder offers (tracekit.events.records.EventType implements it)."""

    size: int

    def decode(self, buf: bytes) -> Any: ...

    def decode_batch(self, bufs: Sequence[bytes]) -> list[Any]: ...

    def decode_strided(self, blob: bytes, skip: int, stride: int, count: int) -> list[Any]:
        """Optional fast path: ``count`` records ``stride`` apart, ``skip`` bytes in."""
        ...


def _as_fd(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    fileno = getattr(fd, "fileno", None)
    if fileno is not None:
        return int(fileno())
    inner = getattr(fd, "fd", None)
    if isinstance(inner, int):
        return inner
    raise TypeError(f"expected a map fd (int or object with fileno()), got {fd!r}")


class RingMemory:
    """The three views of a ring the reader needs; the one thing tests substitute.

    ``consumer``: writable buffer whose first 8 bytes are the consumer position.
    ``producer``: buffer whose first 8 bytes are the producer position.
    ``data``: buffer holding the data area twice (``2 * size`` bytes from ``data_offset``).
    ``closers``: called (in order) by :meth:`close` after the views are released.
    """

    def __init__(self, consumer: Any, producer: Any, data: Any, size: int, *, data_offset: int = 0,
                 closers: Sequence[Callable[[], None]] = ()) -> None:
        if size <= 0 or size & (size - 1):
            raise MapError(f"ring buffer size {size} is not a power of two")
        self.size = size
        self.mask = size - 1
        self._views: list[memoryview] = []
        cons = self._view(consumer)
        prod = self._view(producer)
        dat = self._view(data)
        if cons.readonly:
            raise MapError("ring buffer consumer page must be writable")
        if len(dat) < data_offset + 2 * size:
            raise MapError(f"ring buffer data area has {len(dat) - data_offset} bytes, need {2 * size} "
                           "(the data pages mapped twice)")
        self.cons = self._keep(cons[:8].cast("Q"))  # u64 consumer position (one 8-byte store)
        self.prod = self._keep(prod[:8].cast("Q"))  # u64 producer position
        self.data = self._keep(dat[data_offset : data_offset + 2 * size])
        self.hdr = self._keep(self.data.cast("I"))  # aligned u32 loads of record headers
        self._closers = list(closers)

    def _view(self, obj: Any) -> memoryview:
        return self._keep(memoryview(obj).cast("B"))

    def _keep(self, v: memoryview) -> memoryview:
        self._views.append(v)
        return v

    def close(self) -> None:
        # Views must be released before an mmap may be closed (else BufferError).
        for v in reversed(self._views):
            v.release()
        self._views.clear()
        closers, self._closers = self._closers, []
        for c in closers:
            c()

    @classmethod
    def from_map_fd(cls, fd: int, max_entries: int, name: str = "") -> RingMemory:
        """mmap a BPF_MAP_TYPE_RINGBUF map exactly as the kernel exposes it."""
        what = f"ring buffer {name!r}" if name else "ring buffer"
        if max_entries <= 0 or max_entries & (max_entries - 1) or max_entries % PAGE_SIZE:
            raise MapError(f"{what}: max_entries {max_entries} must be a power of two and a multiple "
                           f"of the page size ({PAGE_SIZE})")
        try:
            cons = mmap.mmap(fd, PAGE_SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        except OSError as e:
            _mmap_limit(what, e)
            raise MapError(f"{what}: mmap of the consumer page failed: {e.strerror} "
                           "(is the fd a BPF_MAP_TYPE_RINGBUF map?)") from None
        try:
            ro = mmap.mmap(fd, PAGE_SIZE + 2 * max_entries, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ,
                           offset=PAGE_SIZE)
        except OSError as e:
            cons.close()
            _mmap_limit(what, e)
            raise MapError(f"{what}: mmap of the producer page and data failed: {e.strerror} "
                           f"(does max_entries={max_entries} match the map?)") from None
        try:
            return cls(cons, ro, ro, max_entries, data_offset=PAGE_SIZE, closers=(ro.close, cons.close))
        except BaseException:
            ro.close()
            cons.close()
            raise


@functools.lru_cache(maxsize=64)
def _cutter(ln: int, stride: int) -> struct.Struct:
    """``header | ln bytes | padding`` -> (payload,): cuts fixed-size records in C."""
    return struct.Struct(f"{HDR_SIZE}x{ln}s{stride - HDR_SIZE - ln}x")


#: While a reader batches a burst (``batch_latency``), the ring may fill at most this
#: fraction of its size during one window: at high rates the window is cut short.  A
#: 256 KiB ring of opensnoop's 312-byte records holds 840 of them, 2.8 ms of a 300 k/s
#: open() storm: a 20 ms window would drop 85% of it.
FILL_FRACTION = 0.25


#: Ring fds sit in the reader's epoll edge-triggered.  Waiting on the epoll fd itself
#: (poll(), asyncio, trio) is unchanged: it is readable while a ring holds records.  But an
#: epoll_wait on it reports each kernel wake-up once, so a reader sleeping out a batching
#: window can clear them and then wait for the NEXT one: the kernel wakes the consumer on
#: the first record after it caught up, and tracekit.h's tk_ringbuf_submit() forces a
#: wake-up once the ring is FILL_FRACTION full (BPF_RB_FORCE_WAKEUP), so a storm that
#: starts inside a window is taken before it overflows the ring.
_EVENTS = select.EPOLLIN | select.EPOLLET


def _consume_edges(ep: select.epoll | None) -> bool:
    if ep is None:
        return False
    try:
        ep.poll(0)
    except OSError:
        return False
    return True


class _FillRate:
    """How fast the producer fills the rings of a batching reader, measured between the
    reader's waits (bytes consumed / time), to bound its next window.

    After a window slept out, the bytes consumed since came in during the window and
    the handling of the batch.  After a wait on the fd, the first record ended the wait
    (its idle time says nothing about the rate): the others came in while the reader
    woke and worked, so the rate is taken without that first record over the time since
    the wake-up (an overestimate: the safe side).  The estimate is a decaying maximum (at
    most halved per window): a window in which the producer happened to be slow
    (descheduled, between bursts) must not open a long window into which it comes back
    at full speed."""

    __slots__ = ("t", "pos", "count", "rate", "slept")

    def __init__(self, n: int) -> None:
        self.t = 0.0
        self.pos = [-1] * n
        self.count = [0] * n
        self.rate = [0.0] * n  # bytes per second
        self.slept = False

    def bound(self, delay: float | None, drains: Sequence[_Drain], last_wake: float,
              now: float | None = None) -> float | None:
        """``delay`` (the stream's window; None: no window), shortened so that no ring fills
        past FILL_FRACTION during it at the estimated rate."""
        if now is None:
            now = time.monotonic()
        # (after a wait that timed out, the previous decision is later than the last wake)
        dt = now - (self.t if self.slept else max(self.t, last_wake))
        for i, d in enumerate(drains):
            m = d.mem
            pos, count = m.cons[0], d.taken
            prev, n = self.pos[i], count - self.count[i]
            self.pos[i], self.count[i] = pos, count
            if prev >= 0 and dt > 0 and n > 0:
                nbytes = pos - prev if self.slept else (pos - prev) * (n - 1) // n
                self.rate[i] = max(nbytes / dt, self.rate[i] * 0.5)
            else:
                self.rate[i] *= 0.5
            if delay and self.rate[i] > 0:
                delay = min(delay, FILL_FRACTION * m.size / self.rate[i])
        self.t = now
        self.slept = delay is not None
        return delay


class _Drain:
    """The ring protocol over a :class:`RingMemory`; shared by every front end."""

    __slots__ = ("mem", "decoder", "strided", "taken")

    def __init__(self, mem: RingMemory, decoder: Decoder | None) -> None:
        self.mem = mem
        self.decoder = decoder
        self.taken = 0  # records taken so far (for _FillRate)
        # Decoders without the strided entry point get cut records via decode_batch().
        self.strided = decoder is not None and hasattr(decoder, "decode_strided")

    def available(self) -> int:
        """Bytes between consumer and producer (0: empty)."""
        m = self.mem
        return m.prod[0] - m.cons[0]

    def drain(self, out: list[Any], limit: int) -> int:
        """Append up to ``limit`` committed records to ``out``; return how many."""
        m = self.mem
        cons_v, prod_v, hdr, data = m.cons, m.prod, m.hdr, m.data
        mask = m.mask
        dec = self.decoder
        got = 0
        cons = cons_v[0]
        # A consumer as fast as the producer chases it: each pass of this loop finds only
        # the few records committed since the last one.  Their copies are kept here and
        # decoded once at the end, so a decoder's per-call cost is paid per drain, not per
        # pass (issue 13: ~20 k passes/s of 1-3 records each in an open() storm).
        # Each run: [record length, stride, copies, count]; length -1: cut records.
        runs: list[list[Any]] = []
        while got < limit:
            prod = prod_v[0]
            if cons >= prod:
                break
            start = cons & mask
            # The window [cons, prod) is at most `size` bytes and starts below `size`: the
            # double mapping makes it contiguous in `data`.
            first = hdr[start >> 2]
            if first & BUSY_BIT:
                break
            if not first & DISCARD_BIT:
                # Fixed-size fast path: the records laid `stride` apart from `cons` whose
                # headers read exactly `first` (committed, same length): one strided slice
                # reads them all, in order.  The window often ends with the producer's next
                # reservation (BUSY) or a record of another size: the equal prefix is taken.
                ln = first & _LEN_MASK
                stride = (ln + HDR_SIZE + 7) & ~7
                n = min((prod - cons) // stride, limit - got)
                s4 = stride >> 2
                heads = hdr[start >> 2 : (start >> 2) + n * s4 : s4].tolist()
                k = heads.count(first)
                if k != n and heads[:k].count(first) != k:
                    k = 0  # not a prefix: the general path sorts it out
                if k:
                    end = start + k * stride
                    if dec is None:
                        # raw records: one C-level pass cuts each straight out of the ring
                        out += [r for (r,) in _cutter(ln, stride).iter_unpack(data[start:end])]
                    elif runs and runs[-1][0] == ln:
                        runs[-1][2].append(data[start:end].tobytes())
                        runs[-1][3] += k
                    else:
                        runs.append([ln, stride, [data[start:end].tobytes()], k])
                    got += k
                    cons += k * stride
                    cons_v[0] = cons  # publish once per pass (the copies are taken)
                    continue
            # General path: walk headers one by one, then copy the committed span once.
            pos = cons
            spans: list[tuple[int, int]] = []
            while pos < prod and got + len(spans) < limit:
                off = pos & mask
                h = hdr[off >> 2]
                if h & BUSY_BIT:
                    break
                ln = h & _LEN_MASK
                if not h & DISCARD_BIT:
                    spans.append((pos - cons + HDR_SIZE, ln))
                pos += (ln + HDR_SIZE + 7) & ~7
                if pos > prod:  # a committed record cannot end past the producer
                    raise MapError(f"ring buffer: record header {h:#x} at offset {off} runs past the "
                                   f"producer position {prod}: the ring is corrupt")
            if pos == cons:
                break  # the next record is BUSY
            blob = data[start : start + (pos - cons)].tobytes()
            recs = [blob[a : a + b] for a, b in spans]
            if dec is None:
                out += recs
            elif runs and runs[-1][0] < 0:
                runs[-1][2] += recs
            else:
                runs.append([-1, 0, recs, len(recs)])
            got += len(spans)
            cons = pos
            cons_v[0] = cons
        # Decode in ring order (the records are copies: the ring space is released already).
        for ln, stride, parts, count in runs:
            if ln < 0:
                out += dec.decode_batch(parts)  # type: ignore[union-attr]
                continue
            blob = parts[0] if len(parts) == 1 else b"".join(parts)
            # Records shorter than the event struct (a program sending only the used prefix)
            # are zero-padded one by one by decode_batch instead.
            if self.strided and ln >= getattr(dec, "size", 0):
                out += dec.decode_strided(blob, HDR_SIZE, stride, count)  # type: ignore[union-attr]
            else:
                out += dec.decode_batch([r for (r,) in _cutter(ln, stride).iter_unpack(blob)])  # type: ignore[union-attr]
        self.taken += got
        return got


def _mmap_limit(what: str, e: OSError) -> None:
    """Raise the resource error when an mmap ran out of fds (mmap dups the fd) or memory."""
    from tracekit.errors import RESOURCE_ERRNOS

    if e.errno in RESOURCE_ERRNOS:
        from tracekit.kernel.syscalls.diagnose import resource_error

        raise resource_error(f"{what}: mmap", e.errno, kind="mmap") from None


class RingBuffer(RecordStream):
    """Reader of one BPF_MAP_TYPE_RINGBUF map.

    ``RingBuffer(map_fd, max_entries, name=..., decoder=EventType|None, raw=False)``.
    Records are ``bytes`` unless a decoder is given (and ``raw`` is false).  The reader
    does not own ``map_fd`` (the map object does); it keeps its own mmap of the ring.

    It waits on an epoll instance of its own (created on the first wait) that holds the
    map fd, never on the map fd itself: two readers of one map in one event loop would
    otherwise register the same fd twice (``anyio.BusyResourceError``).  Readers of one
    map consume from one kernel ring, so they split its records between them.

    ``drop_counter`` is a callable returning the probe's running count of records it
    could not reserve (``TK_DROP_COUNTER(map)``); :attr:`lost` is its growth since the
    reader was opened (0 without one: the kernel itself does not count ring-buffer drops).
    """

    def __init__(self, map_fd: Any, max_entries: int, *, name: str = "", decoder: Decoder | None = None,
                 raw: bool = False, batch_size: int = DEFAULT_BATCH, memory: RingMemory | None = None,
                 drop_counter: Callable[[], int] | None = None) -> None:
        self._init_stream(batch_size)
        self._drop_counter = drop_counter
        self._lost_base = drop_counter() if drop_counter is not None else 0
        self._lost_final = 0
        self.name = name
        self.max_entries = max_entries
        self._fd = _as_fd(map_fd) if map_fd is not None else -1
        if memory is None:
            if self._fd < 0:
                raise ValueError("RingBuffer needs a map fd or a RingMemory")
            memory = RingMemory.from_map_fd(self._fd, max_entries, name)
        self._mem = memory
        self.decoder = None if raw else decoder
        self._drain = _Drain(memory, self.decoder)
        self._fill_rate = _FillRate(1)
        self._take = self._drain.drain  # type: ignore[method-assign]  # no wrapper frame per batch

    @classmethod
    def from_memory(cls, memory: RingMemory, *, fd: int | None = None, name: str = "",
                    decoder: Decoder | None = None, raw: bool = False) -> RingBuffer:
        """A reader over any memory laid out like the kernel's (tests, replays)."""
        return cls(fd, memory.size, name=name, decoder=decoder, raw=raw, memory=memory)

    def fileno(self) -> int:
        """The pollable map fd (readable while records are unconsumed)."""
        if self._fd < 0:
            raise ClosedError(f"{self._what()} has no fd (memory-only reader)")
        return self._fd

    def _what(self) -> str:
        return f"ring buffer {self.name!r}" if self.name else "ring buffer"

    def pending_bytes(self) -> int:
        """Bytes produced but not yet consumed (records, headers and padding)."""
        self._check()
        return self._drain.available()

    @property
    def lost(self) -> int:
        """Records the probe dropped on this ring since the reader opened (its drop counter)."""
        if self._drop_counter is None or self._closed:
            return self._lost_final
        try:
            self._lost_final = max(0, self._drop_counter() - self._lost_base)
        except Exception:  # noqa: BLE001 - the object's global data went away: keep the last count
            pass
        return self._lost_final

    def _batch_delay(self) -> float | None:
        # the stream's window, no longer than the ring takes to fill to FILL_FRACTION
        return self._fill_rate.bound(super()._batch_delay(), (self._drain,), self._last_wake)

    def _window_full(self) -> bool:
        return self._drain.available() >= FILL_FRACTION * self._mem.size

    def _consume_edges(self) -> bool:
        return _consume_edges(self._ep)

    def _wait_fd(self) -> int:
        self._check()
        if self._fd < 0:
            raise ClosedError(f"{self._what()} has no fd to wait on (memory-only reader)")
        ep = self._ep
        if ep is None:
            # Created on first use: rings merged into a RingBufferSet never wait themselves.
            ep = self._open_epoll()
            ep.register(self._fd, _EVENTS)
        return ep.fileno()

    def _release(self) -> None:
        """Unmap the ring (the map fd belongs to the map object); the epoll fd, if any, is
        the stream's to close."""
        _ = self.lost  # the final count, while the counter can still be read
        self._mem.close()


class RingBufferSet(RecordStream):
    """Several ring buffers read through one iterator.

    All map fds sit in one epoll instance and the reader awaits that single fd: one
    wake-up serves every ring, with no helper tasks.  Each wake-up drains every ring in
    turn (each in its own order; there is no global order across rings, as in libbpf's
    ``ring_buffer__poll``).  The set owns the readers given to it.
    """

    def __init__(self, readers: Iterable[RingBuffer], *, batch_size: int = DEFAULT_BATCH) -> None:
        self._init_stream(batch_size)
        self.readers = list(readers)
        if not self.readers:
            raise ValueError("RingBufferSet needs at least one ring buffer")
        self._fill_rate = _FillRate(len(self.readers))
        ep = self._open_epoll()
        try:
            for r in self.readers:
                ep.register(r.fileno(), _EVENTS)
        except BaseException:
            ep.close()
            self._ep = None
            raise

    def _what(self) -> str:
        return "ring buffer set"

    def _window_full(self) -> bool:
        return any(r._drain.available() >= FILL_FRACTION * r._mem.size for r in self.readers)

    def _consume_edges(self) -> bool:
        return _consume_edges(self._ep)

    def _batch_delay(self) -> float | None:
        # no ring of the set may fill past FILL_FRACTION during a window
        return self._fill_rate.bound(super()._batch_delay(), [r._drain for r in self.readers], self._last_wake)

    def fileno(self) -> int:
        """The epoll fd over every ring (readable when any has records)."""
        return self._wait_fd()

    def _take(self, out: list[Any], limit: int) -> int:
        # Each ring's read_available: records its own iterator already took come first.
        n = len(out)
        for r in self.readers:
            if len(out) - n >= limit:
                break
            out.extend(r.read_available(limit - (len(out) - n)))
        return len(out) - n

    @property
    def lost(self) -> int:
        """Records dropped on any of the rings since the set opened."""
        return sum(r.lost for r in self.readers)

    def _release(self) -> None:
        for r in self.readers:
            r.close()


def merge(*readers: RingBuffer, batch_size: int = DEFAULT_BATCH) -> RingBufferSet:
    """One iterator over several ring buffers (the set takes ownership of them)."""
    return RingBufferSet(readers, batch_size=batch_size)


def open_readers(maps: Sequence[tuple[Any, int, str]], *, decoder: Decoder | None = None,
                 raw: bool = False,
                 drop_counters: dict[str, Callable[[], int]] | None = None) -> RingBuffer | RingBufferSet:
    """Readers for ``(map_fd, max_entries, name)`` triples: one ring, or a merged set.

    ``drop_counters`` maps a ring's name to its drop counter (see :class:`RingBuffer`)."""
    readers: list[RingBuffer] = []
    counters = drop_counters or {}
    try:
        for fd, max_entries, name in maps:
            readers.append(RingBuffer(fd, max_entries, name=name, decoder=decoder, raw=raw,
                                      drop_counter=counters.get(name)))
        if len(readers) == 1:
            return readers[0]
        return RingBufferSet(readers)
    except BaseException:
        for r in readers:
            r.close()
        raise


__all__ = [
    "BUSY_BIT",
    "DISCARD_BIT",
    "HDR_SIZE",
    "Decoder",
    "RingBuffer",
    "RingBufferSet",
    "RingMemory",
    "merge",
    "open_readers",
]

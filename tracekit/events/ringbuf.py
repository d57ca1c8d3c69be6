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
* **Fixed-size fast path.**  When every record in the window has the same length (the
  normal case: one ``struct event``), the headers are checked with one strided slice
  (C speed) and the records are cut or decoded with ``struct.iter_unpack``: no Python
  loop per record.  Mixed sizes, DISCARD and BUSY records take the per-record path.
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


class _Drain:
    """The ring protocol over a :class:`RingMemory`; shared by every front end."""

    __slots__ = ("mem", "decoder", "strided")

    def __init__(self, mem: RingMemory, decoder: Decoder | None) -> None:
        self.mem = mem
        self.decoder = decoder
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
            ln = first & _LEN_MASK
            stride = (ln + HDR_SIZE + 7) & ~7
            window = prod - cons
            n = window // stride
            if not first & DISCARD_BIT and n > 1 and window == n * stride:
                # Fixed-size fast path: every header in the window must read exactly `first`
                # (no BUSY, no DISCARD, same length); one strided slice checks them all.
                n = min(n, limit - got)
                s4 = stride >> 2
                if hdr[start >> 2 : (start >> 2) + n * s4 : s4].tolist().count(first) == n:
                    end = start + n * stride
                    # Records shorter than the event struct (a program sending only the used
                    # prefix) are zero-padded one by one by decode_batch instead.
                    if dec is not None and self.strided and ln >= getattr(dec, "size", 0):
                        out.extend(dec.decode_strided(data[start:end].tobytes(), HDR_SIZE, stride, n))
                    else:
                        # One C-level pass cuts every record straight out of the ring (the
                        # records are copies; the span is not released before it is done).
                        recs = [r for (r,) in _cutter(ln, stride).iter_unpack(data[start:end])]
                        if dec is None:
                            out += recs
                        else:
                            out += dec.decode_batch(recs)
                    got += n
                    cons += n * stride
                    cons_v[0] = cons  # publish once per batch
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
            if dec is None:
                out.extend([blob[a : a + b] for a, b in spans])
            else:
                out.extend(dec.decode_batch([blob[a : a + b] for a, b in spans]))
            got += len(spans)
            cons = pos
            cons_v[0] = cons
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

    def _wait_fd(self) -> int:
        self._check()
        if self._fd < 0:
            raise ClosedError(f"{self._what()} has no fd to wait on (memory-only reader)")
        ep = self._ep
        if ep is None:
            # Created on first use: rings merged into a RingBufferSet never wait themselves.
            ep = self._open_epoll()
            ep.register(self._fd, select.EPOLLIN)
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
        ep = self._open_epoll()
        try:
            for r in self.readers:
                ep.register(r.fileno(), select.EPOLLIN)
        except BaseException:
            ep.close()
            self._ep = None
            raise

    def _what(self) -> str:
        return "ring buffer set"

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

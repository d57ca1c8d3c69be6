"""BPF perf buffer reader: BPF_MAP_TYPE_PERF_EVENT_ARRAY + one perf ring per CPU.

``bpf_perf_event_output(ctx, &map, BPF_F_CURRENT_CPU, data, size)`` writes a
PERF_RECORD_SAMPLE into the perf ring of the CPU the program runs on.  Each ring is a
``PERF_COUNT_SW_BPF_OUTPUT`` software event opened on that CPU and stored in the map at
index ``cpu``; user space maps it as ``1 + 2^n`` pages:

* page 0 is ``struct perf_event_mmap_page``: ``data_head`` (u64 at 1024, written by the
  kernel), ``data_tail`` (u64 at 1032, written by us), ``data_offset``/``data_size``;
* then the data area (``2^n`` pages, mapped once: a record may wrap around its end).
* records: ``struct perf_event_header {u32 type; u16 misc; u16 size}`` then the body;
  PERF_RECORD_SAMPLE (9) with PERF_SAMPLE_RAW is ``{u32 size; u8 data[size]}`` (the
  kernel pads ``data`` so the record stays 8-byte aligned: the padding is part of the
  bytes handed out, as with libbpf); PERF_RECORD_LOST (2) is ``{u64 id; u64 lost}``.

Design, in line with :mod:`tracekit.events.ringbuf` (same decoder interface; the waiting,
iteration and closing machinery is :class:`tracekit.events.stream.RecordStream`, shared):

* each drain copies the whole ``[tail, head)`` window out of the ring (at most two
  slices when it wraps), publishes ``data_tail`` with one aligned 8-byte store, then cuts
  records out of the private copy, so handed-out records stay valid forever;
* all CPU fds sit in one epoll instance that the reader awaits with
  ``anyio.wait_readable`` (asyncio and trio): one wake-up drains every ring;
* lost-record notices are counted (``lost``, ``lost_by_cpu``) and optionally passed to
  ``on_lost(cpu, count)``; they never reach the record stream;
* closing removes the map entries (the map holds a reference to each perf event, which
  would otherwise keep the rings alive until the map goes), unmaps, closes the events and
  wakes waiters.
"""

from __future__ import annotations

import ctypes
import mmap
import select
import struct
from collections.abc import Callable, Sequence
from typing import Any

from tracekit.errors import MapError, SyscallError
from tracekit.events.ringbuf import Decoder
from tracekit.events.stream import DEFAULT_BATCH, RecordStream
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.kernel.syscalls import perf as _perf

PAGE_SIZE = mmap.PAGESIZE
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_HDR = struct.Struct("<IHH")
_U32 = struct.Struct("<I")
_LOST = struct.Struct("<QQ")
# u64 indexes into perf_event_mmap_page
_DATA_HEAD = 1024 // 8
_DATA_TAIL = 1032 // 8
_DATA_OFFSET = 1040 // 8
_DATA_SIZE = 1048 // 8


class _CpuRing:
    """One CPU's perf event and its mmapped ring."""

    def __init__(self, cpu: int, fd: FD, page_count: int) -> None:
        self.cpu = cpu
        self.fd = fd
        try:
            self.mm = mmap.mmap(fd.fd, (1 + page_count) * PAGE_SIZE, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:  # mmap dups the fd: EMFILE is possible; never a raw OSError
            from tracekit.kernel.syscalls.diagnose import syscall_error

            raise syscall_error(f"mmap perf buffer of CPU {cpu}", e.errno or 12, kind="mmap",
                                need=("CAP_PERFMON", "CAP_IPC_LOCK")) from None
        self.meta = memoryview(self.mm)[:PAGE_SIZE].cast("Q")
        off = self.meta[_DATA_OFFSET] or PAGE_SIZE  # data_offset is 0 before Linux 4.1
        size = self.meta[_DATA_SIZE] or page_count * PAGE_SIZE
        self.size = size
        self.mask = size - 1
        self.data = memoryview(self.mm)[off : off + size]

    def available(self) -> int:
        return self.meta[_DATA_HEAD] - self.meta[_DATA_TAIL]

    def drain(self, out: list[bytes], limit: int) -> tuple[int, int]:
        """Move up to ``limit`` raw samples to ``out``; returns (samples, lost count seen)."""
        meta = self.meta
        tail = meta[_DATA_TAIL]
        head = meta[_DATA_HEAD]  # x86-64 TSO: loads after this one are not hoisted above it
        if head == tail:
            return 0, 0
        n = head - tail
        start = tail & self.mask
        if start + n <= self.size:
            blob = self.data[start : start + n].tobytes()
        else:
            blob = self.data[start:].tobytes() + self.data[: start + n - self.size].tobytes()
        got = lost = 0
        p = 0
        while p < n and got < limit:
            typ, _misc, size = _HDR.unpack_from(blob, p)
            if size < 8:  # never written by a sane kernel; stop rather than spin
                raise MapError(f"perf ring of CPU {self.cpu}: corrupt record header at {tail + p}")
            if typ == PERF_RECORD_SAMPLE:
                (raw,) = _U32.unpack_from(blob, p + 8)
                out.append(blob[p + 12 : p + 12 + raw])
                got += 1
            elif typ == PERF_RECORD_LOST:
                lost += _LOST.unpack_from(blob, p + 8)[1]
            p += size
        # One aligned 8-byte store hands the space back to the kernel.
        meta[_DATA_TAIL] = tail + p
        return got, lost

    def close(self) -> None:
        for v in (self.meta, self.data):
            v.release()
        self.mm.close()
        self.fd.close()


class PerfBuffer(RecordStream):
    """Reader of a BPF_MAP_TYPE_PERF_EVENT_ARRAY: one perf ring per online CPU.

    ``PerfBuffer(map_fd, max_entries, page_count=8, decoder=EventType|None, raw=False)``.
    Records are ``bytes`` (with the kernel's alignment padding) unless a decoder is given.
    The reader does not own ``map_fd``; it owns the perf events it puts in the map.

    ``lost`` counts the records the kernel dropped because this reader's rings were full
    (PERF_RECORD_LOST notices, seen as the rings are drained).  A perf event array has
    one slot per CPU, so one map has one reader at a time (:meth:`Object.reader` refuses a
    second).
    """

    #: records lost (PERF_RECORD_LOST), counted as the rings are drained
    lost: int = 0

    def __init__(self, map_fd: Any, max_entries: int, *, name: str = "", decoder: Decoder | None = None,
                 raw: bool = False, page_count: int = 8, cpus: Sequence[int] | None = None,
                 wakeup_events: int = 1, batch_size: int = DEFAULT_BATCH,
                 on_lost: Callable[[int, int], None] | None = None) -> None:
        if page_count <= 0 or page_count & (page_count - 1):
            raise MapError(f"perf buffer page_count {page_count} is not a power of two")
        self._init_stream(batch_size)
        self.name = name
        self._map_fd = map_fd if isinstance(map_fd, int) else int(map_fd.fileno())
        self.decoder = None if raw else decoder
        self.on_lost = on_lost
        self.lost = 0
        self.lost_by_cpu: dict[int, int] = {}
        self._rings: list[_CpuRing] = []
        self._in_map: list[int] = []
        self._open_epoll()
        try:
            # inside the try: a failure reading the CPU list must close the epoll fd too
            wanted = list(cpus) if cpus is not None else _perf.online_cpus()
            for cpu in wanted:
                if cpu >= max_entries:
                    continue  # the map has no slot for it (libbpf skips these too)
                self._add_cpu(cpu, page_count, wakeup_events)
            if not self._rings:
                raise MapError(f"{self._what()}: no CPU of {wanted} fits in the map's {max_entries} entries")
        except BaseException:
            self.close()
            raise

    def _add_cpu(self, cpu: int, page_count: int, wakeup_events: int) -> None:
        attr = _perf.PerfEventAttr(type=_perf.PERF_TYPE_SOFTWARE, config=_perf.PERF_COUNT_SW_BPF_OUTPUT,
                                   sample_type=_perf.PERF_SAMPLE_RAW, sample_period=1,
                                   wakeup_events=max(1, wakeup_events))
        attr.size = ctypes.sizeof(attr)
        fd = _perf.perf_event_open(attr, -1, cpu, -1, _perf.PERF_FLAG_FD_CLOEXEC,
                                   what=f"BPF output event on CPU {cpu}")
        try:
            ring = _CpuRing(cpu, fd, page_count)
        except BaseException:
            fd.close()
            raise
        self._rings.append(ring)
        key, val = ctypes.c_uint32(cpu), ctypes.c_uint32(fd.fd)
        err = _bpf.map_update_elem(self._map_fd, key, val, 0)
        if err:
            raise SyscallError(f"put the CPU {cpu} perf event into {self._what()}", err,
                               "is the map a BPF_MAP_TYPE_PERF_EVENT_ARRAY?")
        self._in_map.append(cpu)
        assert self._ep is not None
        self._ep.register(fd.fd, select.EPOLLIN)

    def _what(self) -> str:
        return f"perf buffer {self.name!r}" if self.name else "perf buffer"

    @property
    def cpus(self) -> list[int]:
        return [r.cpu for r in self._rings]

    def fileno(self) -> int:
        """The epoll fd over every CPU's ring (readable when any has data)."""
        return self._wait_fd()

    def pending_bytes(self) -> int:
        self._check()
        return sum(r.available() for r in self._rings)

    def _batch_delay(self) -> float | None:
        # No batching windows over perf buffers: their per-CPU rings are small (8 pages by
        # default), the kernel cannot be told to wake the reader as they fill (ring buffers
        # can: tracekit.h tk_ringbuf_submit), and a window would turn a burst into lost
        # records.  batch_latency is a ring-buffer feature; a perf reader wakes per record.
        self._got = False
        return None

    def _take(self, out: list[Any], limit: int) -> int:
        raws: list[bytes] = []
        for r in self._rings:
            if len(raws) >= limit:
                break
            _, lost = r.drain(raws, limit - len(raws))
            if lost:
                self.lost += lost
                self.lost_by_cpu[r.cpu] = self.lost_by_cpu.get(r.cpu, 0) + lost
                if self.on_lost is not None:
                    self.on_lost(r.cpu, lost)
        if raws:
            out.extend(raws if self.decoder is None else self.decoder.decode_batch(raws))
        return len(raws)

    def _release(self) -> None:
        """Take the events out of the map, unmap the rings and close the events."""
        for cpu in self._in_map:
            key = ctypes.c_uint32(cpu)
            _bpf.map_delete_elem(self._map_fd, key)  # errno ignored: map may be gone
        self._in_map.clear()
        if self._ep is not None:
            for r in self._rings:
                try:
                    self._ep.unregister(r.fd.fd)
                except (OSError, ValueError):
                    pass
        for r in self._rings:
            r.close()
        self._rings.clear()


__all__ = ["PerfBuffer", "PERF_RECORD_LOST", "PERF_RECORD_SAMPLE"]

"""The async reader core shared by every kernel-to-user record channel.

:class:`tracekit.events.ringbuf.RingBuffer`, :class:`tracekit.events.ringbuf.RingBufferSet` and
:class:`tracekit.events.perfbuf.PerfBuffer` differ only in how records leave the kernel; how a
reader waits, hands records out and shuts down is the same, and lives here once.

A subclass provides three things:

* ``_take(out, limit) -> int``: move up to ``limit`` committed records into ``out``
  without blocking (the ring protocol, decoding included) and say how many;
* ``_wait_fd() -> int``: the fd that is readable while records may be there (raises
  :class:`ClosedError` when there is nothing to wait on).  The default is the reader's own
  epoll fd (:meth:`_open_epoll`);
* ``_release() -> None``: close its kernel resources; :meth:`close` calls it once.

Design:

* **Taken records are the reader's, not the task's.**  Records move from the kernel into
  one private list with no await in between, and every consumer (the per-record
  iterator, :meth:`read_available`, :meth:`batches`) takes from the same list iterator,
  so cancelling a consumer at any await loses nothing and the next consumer continues.
* **One checkpoint per batch, none per record.**  The per-record path is a list-iterator
  step; the event loop is only entered when the list is empty (a cancellation point
  before taking the next batch, then a wait on the fd if the kernel has nothing).
* **Waiting** is on one fd; readers over several kernel rings put them all in ONE epoll
  instance: one wake-up per burst, no helper tasks, no channels.  On asyncio the fd stays
  registered with the loop (``add_reader``) across waits, and a wait is one future
  (issue 13: ``anyio.wait_readable`` added and removed the fd and built a cancel scope on
  every wait, ~25 us, the whole cost of a reader at low event rates); the registration is
  dropped when the reader closes, when a wake-up finds nobody waiting (so a consumer busy
  elsewhere cannot make the loop spin on a readable fd) or when another loop waits.
  Other backends (trio) use ``anyio.wait_readable``.
* **Closing wakes waiters** by cancelling the cancel scope each waiter registered
  (``anyio.notify_closing`` is not enough on asyncio: its waiter table lives in a context
  variable another task may not see); their iterators then end cleanly.  An owned epoll fd
  that a waiter is still registered on is closed by the last waiter on its way out, so its
  number cannot be reused under the event loop's feet.  ``close()`` must be called from
  the event-loop thread (or when nothing waits).
"""

from __future__ import annotations

import select
import sys
import time
from itertools import islice
from operator import length_hint
from typing import TYPE_CHECKING, Any

from tracekit.errors import ClosedError

if TYPE_CHECKING:
    import anyio

# anyio is imported by the async paths only: the synchronous API (read_available,
# wait_sync: the bundled tools' default loop) needs no event loop library, and importing
# anyio is ~4-5 ms of a tool's start (issue 13)

#: records taken from the kernel per refill of the per-record iterator (bounds latency and
#: memory; larger batches amortise the refill but hold records back from other tasks)
DEFAULT_BATCH = 4096

#: "no limit" for read_available()
_ALL = 1 << 62

_EMPTY: Any = iter(())


class RecordStream:
    """Async (and non-blocking sync) reader of records a kernel buffer hands over.

    Sync: :meth:`read_available`, :meth:`close`, ``with``.  Async: ``async for rec in r``,
    ``await r.__anext__()``, ``async for batch in r.batches()``, :meth:`wait`,
    ``async with``.  Iteration ends (StopAsyncIteration) once the reader is closed.
    """

    batch_size: int
    #: records taken from the kernel but not handed out when the reader closed
    discarded: int = 0
    #: called before every wait, i.e. once everything available was handed out (a tool
    #: flushes its buffered output here: at least once per batch, never per record)
    on_wait: Any = None
    #: Wake-up batching, in seconds (0: off).  When two wake-ups come less than this apart
    #: (a burst), the reader stops waiting on the fd and sleeps out the rest of the window
    #: instead, so the records of a burst are handed over in batches of up to this age,
    #: and the process wakes once per window rather than once per record.  A record that
    #: arrives while the reader waits on the fd is handed over at once (no added latency
    #: at low rates); while batching, none waits longer than this.  At an exec storm's
    #: ~1,000 records/s each wake-up of a Python process costs ~40 us, ~4x the C front
    #: end's whole cost per record (issue 13); the bundled tools set 20 ms.  Ring buffers
    #: only (a window also ends as soon as a ring is a quarter full, where the program
    #: submits with tracekit.h's tk_ringbuf_submit); perf buffers ignore it.
    batch_latency: float = 0.0

    def _init_stream(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._closed = False
        # Records taken from the kernel but not handed out yet, as one list iterator:
        # every consumer advances the same one (cancellation-safe, no double delivery).
        self._it: Any = _EMPTY
        self._waiters: set[anyio.CancelScope] = set()
        self._ep: select.epoll | None = None
        self._ep_close_deferred = False
        # asyncio fast path: the loop our fd is registered with, the fd, pending futures
        self._reg_loop: Any = None
        self._reg_fd = -1
        self._futs: list[Any] = []
        self._skip_stale = False  # see _on_readable
        self._trio_waits = 0
        self._trio_fd = -1
        self._waiting = 0  # waits and fills in progress (a wake-up then is expected, not stray)
        # wake-up batching (batch_latency): the last two wake-ups' times, whether records
        # were taken since the last one, and whether the reader is batching a burst
        self._prev_wake = self._last_wake = -1e18
        self._got = False
        self._burst = False

    # --- what subclasses provide -----------------------------------------------------------

    def _what(self) -> str:
        return "reader"

    def _take(self, out: list[Any], limit: int) -> int:
        """Append up to ``limit`` records to ``out`` without blocking; return how many."""
        raise NotImplementedError

    def _wait_fd(self) -> int:
        """The fd readable while records may be available; ClosedError if none."""
        if self._closed or self._ep is None:
            raise ClosedError(f"{self._what()} is closed")
        return self._ep.fileno()

    def _release(self) -> None:
        """Close the subclass's kernel resources (called once, by :meth:`close`)."""

    def _open_epoll(self) -> select.epoll:
        """An epoll instance owned by the reader (its default :meth:`_wait_fd`)."""
        try:
            self._ep = select.epoll()
        except OSError as e:  # EMFILE/ENOMEM: a TracekitError naming the limit (issue 10 item 5)
            from tracekit.kernel.syscalls.diagnose import resource_error

            raise resource_error(f"{self._what()}: epoll_create", e.errno or 12, kind="file") from None
        return self._ep

    # --- synchronous API -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def lost(self) -> int:
        """Records the kernel could not hand to this reader (0 when the channel cannot tell).

        Perf buffers count the kernel's PERF_RECORD_LOST notices; ring buffers read the
        drop counter the probe declares (``TK_DROP_COUNTER(map)`` in tracekit.h).
        """
        return 0

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"{self._what()} is closed")

    def read_available(self, limit: int | None = None) -> list[Any]:
        """Drain without blocking: up to ``limit`` records (default: all there are).

        Records already taken from the kernel by the async iterator come first.
        """
        self._check()
        lim = _ALL if limit is None else limit
        out = list(islice(self._it, lim)) if length_hint(self._it) else []
        if len(out) < lim:
            self._take(out, lim - len(out))
        if out:
            self._got = True
        return out

    def _batch_delay(self) -> float | None:
        """Seconds to sleep instead of waiting on the fd (None: wait on the fd); see
        :attr:`batch_latency`.  Called right before a wait, i.e. with everything handed out."""
        got, self._got = self._got, False
        if not got:
            # the last wake-up (or window) brought nothing: the burst is over, wait on the fd
            self._burst = False
            return None
        if not self._burst and self._last_wake - self._prev_wake >= self.batch_latency:
            return None  # an isolated wake-up: the next record is handed over as it comes
        self._burst = True
        # 0 when handling the window took longer than the window: take the next one now
        return max(0.0, self._last_wake + self.batch_latency - time.monotonic())

    def _woke(self) -> None:
        self._prev_wake, self._last_wake = self._last_wake, time.monotonic()

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block (no event loop) until records may be available or ``timeout`` seconds
        pass; True if the fd became readable.  For synchronous consumers such as the
        bundled tools' default loop: no asyncio or trio to import, and one poll() per
        wake-up.  Ctrl-C interrupts it with KeyboardInterrupt."""
        fd = self._wait_fd()
        if self.on_wait is not None:
            self.on_wait()
        delay = self._batch_delay() if self.batch_latency > 0 else None
        if delay is not None:
            # batching a burst: let the window fill instead of waking per record
            if timeout is not None and timeout < delay:
                self._window_sync(max(0.0, timeout))
                return False
            self._window_sync(delay)
            self._woke()
            return True
        p = select.poll()
        p.register(fd, select.POLLIN)
        ready = bool(p.poll(None if timeout is None else max(0, int(timeout * 1000)) or 0))
        if ready:
            self._woke()
        return ready

    # --- batching windows: subclasses whose kernel side can wake them early override ------

    def _window_full(self) -> bool:
        """True when the records pending must be taken before the window ends (a ring
        filling up); the default cannot tell."""
        return False

    def _consume_edges(self) -> bool:
        """Clear the wake-ups reported so far on an edge-triggered wait fd; False when the
        wait fd is not edge-triggered (a window is then slept out whole)."""
        return False

    def _window_sync(self, delay: float) -> None:
        """Spend a batching window of ``delay`` seconds: sleep, or -- where the kernel side
        forces a wake-up as the buffer fills (tracekit.h's tk_ringbuf_submit) -- wait for
        that wake-up, so a burst starting inside the window cannot overflow the buffer."""
        if not self._consume_edges():
            time.sleep(delay)
            return
        end = time.monotonic() + delay
        fd = self._wait_fd()
        p = select.poll()
        p.register(fd, select.POLLIN)
        while not self._window_full():
            left = end - time.monotonic()
            if left <= 0:
                return
            # readable again only on a new wake-up: the first record after the reader caught
            # up (the kernel's own rule; the loop goes on) or a forced one (the ring fills)
            p.poll(max(1, int(left * 1000)))
            self._consume_edges()

    def close(self) -> None:
        """Release the kernel resources and wake any task waiting (idempotent)."""
        if self._closed:
            return
        self._closed = True
        # records taken from the kernel but never handed out (a loop left early)
        self.discarded = length_hint(self._it)
        self._it = _EMPTY
        for scope in list(self._waiters):
            scope.cancel()
        if self._trio_waits:
            import trio

            trio.lowlevel.notify_closing(self._trio_fd)
        # unregister before the fd closes (its number may be reused), then wake the waiters
        self._unregister()
        futs, self._futs = self._futs, []
        for fut in futs:
            if not fut.done():
                fut.set_result(None)
        try:
            self._release()
        finally:
            if self._ep is not None:
                if self._waiters or self._trio_waits:
                    self._ep_close_deferred = True  # the waiter's unwinding still uses the fd
                else:
                    self._ep.close()
                    self._ep = None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- async API -------------------------------------------------------------------------

    # --- waiting ---------------------------------------------------------------------------

    def _on_readable(self) -> None:
        """asyncio reader callback: wake the waiters; with none, stop watching."""
        # The select of the loop iteration right after a wake-up still sees the fd readable
        # (the woken consumer runs after it and takes the records), so the callback it
        # queues is stale: it would wake the consumer's next wait for nothing (a whole
        # extra trip per event) or unregister it.  Skip callbacks until two iterations on.
        # (No poll() to check: perf events' poll consumes their readiness.)
        if self._skip_stale:
            return
        futs = self._futs
        if futs:
            self._futs = []
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
            loop = self._reg_loop
            if loop is not None:
                self._skip_stale = True
                # call_soon from a callback runs next iteration; from there, the one after
                loop.call_soon(loop.call_soon, self._end_stale)
        elif not self._waiting:
            # Nobody will take the records until the consumer comes back: a level-triggered
            # readable fd would wake the loop on every iteration until then.
            self._unregister()

    def _close_deferred_ep(self) -> None:
        """The last waiter out closes an epoll fd that close() left to it (see close())."""
        if self._ep_close_deferred and not self._waiters and not self._trio_waits and self._ep is not None:
            self._ep.close()
            self._ep = None

    def _end_stale(self) -> None:
        self._skip_stale = False

    def _unregister(self) -> None:
        loop, self._reg_loop = self._reg_loop, None
        self._skip_stale = False
        if loop is not None:
            try:
                loop.remove_reader(self._reg_fd)
            except (RuntimeError, ValueError, OSError):  # loop closed or fd gone: nothing registered
                pass
            self._reg_fd = -1

    async def wait(self) -> None:
        """Return once records may be available; raise ClosedError if closed meanwhile."""
        fd = self._wait_fd()
        if self.on_wait is not None:
            self.on_wait()
        if self.batch_latency > 0:
            delay = self._batch_delay()
            if delay is not None:
                await self._batch_sleep(delay)
                return
        await self._wait_readable(fd)
        if self.batch_latency > 0:
            self._woke()

    async def _batch_sleep(self, delay: float) -> None:
        """Sleep out a batching window (see :attr:`batch_latency`); close() ends it."""
        import anyio
        # A readable fd left registered with asyncio would run the reader callback on every
        # loop iteration while nobody waits: drop it for the window (one epoll_ctl each way).
        self._unregister()
        with anyio.CancelScope() as scope:
            self._waiters.add(scope)
            try:
                if not self._consume_edges():
                    await anyio.sleep(delay)
                else:
                    # as _window_sync: wait for a wake-up the ring forces as it fills
                    end = time.monotonic() + delay
                    fd = self._wait_fd()
                    while not self._window_full():
                        left = end - time.monotonic()
                        if left <= 0:
                            break
                        with anyio.move_on_after(left):
                            await self._wait_readable(fd)
                        if self._closed:
                            break
                        self._consume_edges()
            finally:
                self._waiters.discard(scope)
                self._close_deferred_ep()
        if self._closed:
            raise ClosedError(f"{self._what()} was closed while waiting")
        self._woke()

    async def _wait_readable(self, fd: int) -> None:
        loop = _running_asyncio_loop()
        if loop is not None:
            if self._reg_loop is not loop or self._reg_fd != fd:
                self._unregister()
                loop.add_reader(fd, self._on_readable)
                self._reg_loop, self._reg_fd = loop, fd
            fut = loop.create_future()
            self._futs.append(fut)
            self._waiting += 1
            try:
                # a plain future: anyio cancels asyncio tasks with Task.cancel(), which
                # interrupts this await like any other
                await fut
            finally:
                self._waiting -= 1
                if not fut.done():
                    fut.cancel()
                # a cancelled wait (asyncio cancels the awaited future too) leaves its future
                try:
                    self._futs.remove(fut)
                except ValueError:
                    pass
            if self._closed:
                raise ClosedError(f"{self._what()} was closed while waiting")
            return
        if _current_library() == "trio":
            # trio's own wait (one epoll_ctl per wait, no anyio scope); close() wakes it with
            # notify_closing, which trio delivers to waiters of any task
            import trio

            self._trio_fd = fd
            self._trio_waits += 1
            try:
                await trio.lowlevel.wait_readable(fd)
            except trio.ClosedResourceError:
                pass
            finally:
                self._trio_waits -= 1
                self._close_deferred_ep()
            if self._closed:
                raise ClosedError(f"{self._what()} was closed while waiting")
            return
        import anyio

        with anyio.CancelScope() as scope:
            self._waiters.add(scope)
            try:
                await anyio.wait_readable(fd)
            finally:
                self._waiters.discard(scope)
                self._close_deferred_ep()
        if self._closed:
            raise ClosedError(f"{self._what()} was closed while waiting")

    async def _fill(self) -> bool:
        """Make the pending iterator non-empty; False once the reader is closed."""
        import anyio.lowlevel
        waited = False
        self._waiting += 1
        try:
            while not self._closed:
                # Cancellation point before taking records: none are taken if it raises.
                await anyio.lowlevel.checkpoint_if_cancelled()
                if self._closed:
                    return False
                if length_hint(self._it):
                    return True  # another consumer refilled while we were suspended
                pend: list[Any] = []
                if self._take(pend, self.batch_size):
                    self._got = True
                    self._it = iter(pend)
                    if not waited:
                        # Records without a wait (a busy ring): one trip through the event
                        # loop per batch, so other tasks run.  Shielded: the records are in
                        # self._it already, a cancellation here would only strand them.  After
                        # a wait (at low rates, every event) the wait was that trip: a second
                        # per event would double the loop's cost (issue 13).
                        await anyio.lowlevel.cancel_shielded_checkpoint()
                    return True
                try:
                    await self.wait()
                except ClosedError:
                    return False
                waited = True
            return False
        finally:
            self._waiting -= 1

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        # Hot path: one list-iterator step, no await, no attribute writes.
        for rec in self._it:
            return rec
        while await self._fill():
            for rec in self._it:
                return rec
        raise StopAsyncIteration

    def batches(self, limit: int | None = None) -> _Batches:
        """Async iterator of non-empty lists of at most ``limit`` (default ``batch_size``)
        records as they become available, until closed."""
        return _Batches(self, limit or self.batch_size)


class _Batches:
    """``RecordStream.batches()``: a class, not an async generator, so leaving the loop
    early leaves nothing to finalize (trio warns about unfinished async generators)."""

    __slots__ = ("_stream", "_limit")

    def __init__(self, stream: RecordStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> list[Any]:
        import anyio.lowlevel

        st = self._stream
        waited = False
        st._waiting += 1
        try:
            while not st._closed:
                # a trip through the loop before each batch (fairness, and the cancellation
                # point: nothing is taken if it raises), except right after a wait, which was
                # one (at low rates every batch follows a wait: no second trip per event)
                if waited:
                    await anyio.lowlevel.checkpoint_if_cancelled()
                else:
                    await anyio.lowlevel.checkpoint()
                if st._closed:
                    break
                batch = st.read_available(self._limit)
                if batch:
                    return batch
                try:
                    await st.wait()
                except ClosedError:
                    break
                waited = True
        finally:
            st._waiting -= 1
        raise StopAsyncIteration


def _current_library() -> str | None:
    import sniffio

    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def _running_asyncio_loop() -> Any:
    """The running asyncio loop when the current task runs on asyncio, else None (trio, or
    asyncio hosting another library through a guest mode)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    import sniffio

    # trio in guest mode on an asyncio loop also has a running loop: ask who runs the task
    return loop if sniffio.current_async_library() == "asyncio" else None


__all__ = ["DEFAULT_BATCH", "EventIterator", "RecordStream"]


class EventIterator:
    """An async iterator over a reader of its own, with optional decode and filter steps:
    one ``async for`` loop over ``obj.events()`` or a started ``Probe``.

    **Lifetime: the reader lives exactly as long as the loop.**  It is released (its
    mmaps and fds closed) when iteration ends, when ``__anext__`` raises (a failing
    decoder, or a cancellation of the waiting task: a cancelled ``async for`` is over),
    on ``close()``/``aclose()``/leaving ``with``, and when the iterator is finalized.  The
    last case is how ``break`` and an exception raised in the loop body release it:
    ``async for`` does not call ``aclose()``, but CPython drops the iterator (which only
    the loop refers to) as soon as the loop is left, and :meth:`__del__` closes the reader
    then.  Keep a reference (``it = obj.events()``) and the reader stays open until ``it``
    goes; to wait for one record under a timeout and go on reading afterwards, use a
    reader (``obj.reader()``), whose reads may be cancelled without losing records.

    A plain class rather than an async generator: nothing is left to finalize on trio
    (which warns about unfinished async generators).

    **Several loops over one object** each get their own reader.  Readers of one ring
    buffer consume from the same kernel ring (there is one consumer position per map), so
    the records are *split* between them, each record going to exactly one loop (within
    one thread; readers in different threads would race on the consumer position).
    A reader takes records from the kernel in batches: those it took but had not handed
    out when its loop ended are gone with it, counted in ``reader.discarded``.  ``lost``
    is the reader's count of records the kernel side could not deliver
    (:attr:`RecordStream.lost`).
    """

    __slots__ = ("_reader", "_next", "_decode", "_keep", "_on_close")

    def __init__(self, reader: Any, *, decode: Any = None, keep: Any = None, on_close: Any = None) -> None:
        self._reader = reader
        self._next = reader.__aiter__().__anext__
        self._decode = decode
        self._keep = keep
        self._on_close = on_close

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> Any:
        decode, keep = self._decode, self._keep
        try:
            while True:
                rec = await self._next()
                ev = decode(rec) if decode is not None else rec
                if ev is not None and (keep is None or keep(ev)):
                    return ev
        except BaseException:
            # StopAsyncIteration, a decode/filter error or a cancellation: in each case the
            # `async for` is over, and a traceback kept by the caller must not hold the
            # reader's fds and mmaps open.
            self.close()
            raise

    def read_available(self, limit: int | None = None) -> list[Any]:
        """Synchronous: the decoded, filtered events available now (up to ``limit``
        records taken; see :meth:`RecordStream.read_available`), without waiting; pair it
        with ``reader.wait_sync()``.  The reader is released on close() as usual."""
        batch = self._reader.read_available(limit)
        decode, keep = self._decode, self._keep
        if decode is not None:
            batch = [ev for ev in map(decode, batch) if ev is not None]
        if keep is not None:
            batch = list(filter(keep, batch))
        return batch

    def batches(self, limit: int | None = None) -> _EventBatches:
        """The same events as non-empty lists, as the reader hands them over (decoded and
        filtered; see :meth:`RecordStream.batches`): one await per batch instead of one per
        event, for consumers that handle a burst at once (a tool writing its rows).  Same
        lifetime rules: the reader is released when this loop ends or fails."""
        return _EventBatches(self, limit)

    @property
    def reader(self) -> Any:
        """The reader this loop consumes (closed once the loop is over)."""
        return self._reader

    @property
    def lost(self) -> int:
        """Records lost by the kernel side of this loop's reader (see the reader's ``lost``)."""
        return int(getattr(self._reader, "lost", 0))

    def close(self) -> None:
        self._reader.close()
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb(self._reader)

    def __del__(self) -> None:
        # `break` (or an exception in the loop body) leaves `async for` without aclose():
        # this is where the loop's reader goes, right after the loop under refcounting.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finalizer must not raise; the object's close still runs
            pass

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventIterator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> EventIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EventBatches:
    """:meth:`EventIterator.batches`."""

    __slots__ = ("_owner", "_inner")

    def __init__(self, owner: EventIterator, limit: int | None) -> None:
        self._owner = owner
        self._inner = owner._reader.batches(limit)

    def __aiter__(self) -> _EventBatches:
        return self

    async def __anext__(self) -> list[Any]:
        o = self._owner
        decode, keep = o._decode, o._keep
        try:
            while True:
                batch = await self._inner.__anext__()
                if decode is not None:
                    batch = [ev for ev in map(decode, batch) if ev is not None]
                if keep is not None:
                    batch = list(filter(keep, batch))
                if batch:
                    return batch
        except BaseException:
            o.close()  # as EventIterator.__anext__: the loop is over
            raise

#!/usr/bin/env python3
"""Per wake-up cost of a tracekit reader (issue 13 item 3), against baselines in the same run.

    python bench/bench_wakeup.py [-n 3000] [--interval-us 400] [--rounds 3]

A child process writes one byte to a pipe every ``--interval-us`` (a low event rate: every
record is a wake-up); the parent consumes them and its CPU time (``time.process_time``,
the child excluded) per wake-up is reported for:

- ``sync_epoll``: a bare ``select.epoll`` loop (the floor for any Python consumer);
- ``anyio_wait_readable_<backend>``: ``anyio.wait_readable`` per wait in an ``anyio.CancelScope``
  (what tracekit.events.stream did before issue 13);
- ``recordstream_<backend>``: :class:`tracekit.events.stream.RecordStream` over the pipe
  (``async for``), i.e. what a ring buffer reader pays per wake-up besides the ring protocol.

Ratios are to ``sync_epoll`` and to the old anyio way, from the same round.  No root needed.
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import sys
import time
from typing import Any


def _producer(w: int, n: int, interval: float) -> None:
    t = time.perf_counter()
    for _ in range(n):
        t += interval
        delay = t - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        os.write(w, b"x")
    os.close(w)


def _spawn(n: int, interval: float) -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _producer(w, n, interval)
        finally:
            os._exit(0)
    os.close(w)
    return r, pid


def _read_all(r: int) -> int:
    got = 0
    while True:
        try:
            b = os.read(r, 65536)
        except BlockingIOError:
            return got
        if not b:
            return got if got else -1
        got += len(b)


def run_sync(n: int, interval: float) -> float:
    r, pid = _spawn(n, interval)
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    seen = wakes = 0
    c0 = time.process_time()
    while seen < n:
        ep.poll()
        wakes += 1
        got = _read_all(r)
        if got < 0:
            break
        seen += got
    c1 = time.process_time()
    os.waitpid(pid, 0)
    ep.close()
    os.close(r)
    return (c1 - c0) / max(wakes, 1)


def run_anyio(n: int, interval: float, backend: str) -> float:
    import anyio

    out: list[float] = []

    async def main() -> None:
        r, pid = _spawn(n, interval)
        seen = wakes = 0
        c0 = time.process_time()
        while seen < n:
            with anyio.CancelScope():
                await anyio.wait_readable(r)
            wakes += 1
            got = _read_all(r)
            if got < 0:
                break
            seen += got
            await anyio.lowlevel.checkpoint()
        out.append((time.process_time() - c0) / max(wakes, 1))
        os.waitpid(pid, 0)
        os.close(r)

    anyio.run(main, backend=backend)
    return out[0]


def run_stream(n: int, interval: float, backend: str) -> float:
    import anyio

    from tracekit.events.stream import RecordStream

    class PipeStream(RecordStream):
        def __init__(self, fd: int) -> None:
            self._init_stream(4096)
            self.fd = fd
            self.wakes = 0
            ep = self._open_epoll()
            ep.register(fd, select.EPOLLIN)

        def _take(self, out: list[Any], limit: int) -> int:
            got = _read_all(self.fd)
            if got <= 0:
                if got < 0:
                    self.close()
                return 0
            self.wakes += 1
            out.extend(range(got))
            return got

    out: list[float] = []

    async def main() -> None:
        r, pid = _spawn(n, interval)
        st = PipeStream(r)
        seen = 0
        c0 = time.process_time()
        async for _ in st:
            seen += 1
            if seen >= n:
                break
        out.append((time.process_time() - c0) / max(st.wakes, 1))
        st.close()
        os.waitpid(pid, 0)
        os.close(r)

    anyio.run(main, backend=backend)
    return out[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3000, help="wake-ups per measurement")
    ap.add_argument("--interval-us", type=float, default=400.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    iv = args.interval_us / 1e6
    res: dict[str, list[float]] = {}
    for _ in range(args.rounds):  # interleaved: every variant sees the same machine load
        res.setdefault("sync_epoll", []).append(run_sync(args.n, iv))
        for be in ("asyncio", "trio"):
            res.setdefault(f"anyio_wait_readable_{be}", []).append(run_anyio(args.n, iv, be))
            res.setdefault(f"recordstream_{be}", []).append(run_stream(args.n, iv, be))
    med = {k: statistics.median(v) * 1e6 for k, v in res.items()}
    for k, v in med.items():
        print(f"{k}_us_per_wakeup={v:.2f}")
    for be in ("asyncio", "trio"):
        print(f"ratio_recordstream_{be}_to_sync={med[f'recordstream_{be}'] / med['sync_epoll']:.2f}")
        print(f"ratio_recordstream_{be}_to_anyio_wait_readable="
              f"{med[f'recordstream_{be}'] / med[f'anyio_wait_readable_{be}']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""JIT symbol maps: ``/tmp/perf-PID.map`` (the perf convention used by V8/Node, the JVM's
perf-map-agent, LuaJIT, CPython 3.12's ``-X perf``, ...).

Each line is ``START SIZE NAME`` with START and SIZE in hex (``0x`` optional) and NAME the
rest of the line (it may contain spaces).  Later lines win where a JIT reused memory, as
perf does: the index keeps, for each start address, the last entry written.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_right

from tracekit.symbols.elfsyms import Symbol


class PerfMap:
    """The symbols of one perf map file, sorted for bisection."""

    __slots__ = ("_starts", "_sizes", "_names", "stamp")

    def __init__(self, entries: list[tuple[int, int, str]], stamp: tuple[int, int] = (0, 0)) -> None:
        latest: dict[int, tuple[int, str]] = {}
        for start, size, name in entries:
            latest[start] = (size, name)
        order = sorted(latest)
        self._starts = array("Q", order)
        self._sizes = array("Q", [latest[s][0] for s in order])
        self._names = [latest[s][1] for s in order]
        #: (st_mtime_ns, st_size) of the file when read: a changed stamp means re-read
        self.stamp = stamp

    @classmethod
    def parse(cls, text: str, stamp: tuple[int, int] = (0, 0)) -> PerfMap:
        entries: list[tuple[int, int, str]] = []
        for line in text.splitlines():
            parts = line.strip().split(None, 2)
            if len(parts) < 3:
                continue
            try:
                entries.append((int(parts[0], 16), int(parts[1], 16), parts[2]))
            except ValueError:
                continue
        return cls(entries, stamp)

    @classmethod
    def read(cls, path: str) -> PerfMap | None:
        """The perf map at ``path``, or None if there is none."""
        try:
            with open(path, errors="replace") as f:
                st = os.fstat(f.fileno())
                return cls.parse(f.read(), (st.st_mtime_ns, st.st_size))
        except (FileNotFoundError, PermissionError, NotADirectoryError, ProcessLookupError):
            return None

    def lookup(self, addr: int) -> Symbol | None:
        i = bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        start, size = self._starts[i], self._sizes[i]
        if addr >= start + max(size, 1):
            return None
        return Symbol(self._names[i], start, size)

    def __len__(self) -> int:
        return len(self._starts)


def perf_map_path(pid: int) -> str:
    """Where the perf map of ``pid`` is, seen through the process's own root.

    A process in a container writes ``/tmp/perf-<its own pid>.map`` inside its mount
    namespace, so the file is ``/proc/PID/root/tmp/perf-NSPID.map`` with NSPID the last
    pid of ``NSpid:`` in ``/proc/PID/status``.
    """
    nspid = pid
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    nspid = int(line.split()[-1])
                    break
    except (OSError, ValueError):
        pass
    return f"/proc/{pid}/root/tmp/perf-{nspid}.map"


__all__ = ["PerfMap", "perf_map_path"]

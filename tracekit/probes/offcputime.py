"""offcputime: time threads spend blocked (off-CPU), summed by stack (BCC's offcputime).

The object is ``offcputime.bpf.o`` (source ``offcputime.bpf.c``, key ``offcputime.h``).
At each ``sched_switch`` the outgoing thread's stacks are taken (it is still current) and
the time it is switched in again closes the interval; totals are microseconds per (tid,
tgid, comm, user stack, kernel stack).  Hook: tp_btf/sched_switch, else raw_tp (both
4.17+/5.5+ on every kernel of the matrix; no kprobe needed).

::

    async with OffCPUTime(pids=[pid]) as p:
        await anyio.sleep(5)
        for b in p.totals():
            print(b.comm, b.usecs, [f.bare for f in p.stacks.kernel(b.kernel_stack_id)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tracekit.errors import TracekitError
from tracekit.object import Object
from tracekit.probe import Probe

U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Blocked:
    """Off-CPU time of one (thread, user stack, kernel stack)."""

    tid: int
    tgid: int
    comm: str
    user_stack_id: int
    kernel_stack_id: int
    usecs: int


class OffCPUTime(Probe[None]):
    """Sums off-CPU time by stack; read with :meth:`totals`, symbolize with :attr:`stacks`."""

    object = "offcputime"
    event = None
    fallbacks: ClassVar[Mapping[str, Sequence[str]]] = {"sched_switch": ("sched_switch_btf", "sched_switch_raw")}

    filter_pids: bool = False
    filter_tids: bool = False
    user_threads_only: bool = False
    kernel_threads_only: bool = False
    user_stacks: bool = True
    kernel_stacks: bool = True
    state: int = -1                  # --state MASK (-1: any)
    min_block_ns: int = 1000         # -m (BCC's default: 1 us)
    max_block_ns: int = U64_MAX      # -M

    def __init__(self, *, pids: Iterable[int] = (), tids: Iterable[int] = (), stack_storage_size: int = 16384,
                 **knobs: Any) -> None:
        self.pids, self.tids = sorted(set(pids)), sorted(set(tids))
        knobs.setdefault("filter_pids", bool(self.pids))
        knobs.setdefault("filter_tids", bool(self.tids))
        entries = {"stacks": stack_storage_size}
        if self.pids:
            entries["pids"] = len(self.pids)
        if self.tids:
            entries["tids"] = len(self.tids)
        super().__init__(map_entries=entries, **knobs)
        self._stacks: Any = None

    def start(self) -> OffCPUTime:
        obj = self.obj or self.open()
        try:
            obj.load()
            for name, ids in (("pids", self.pids), ("tids", self.tids)):
                m = obj.maps[name].typed
                for i in ids:
                    m[i] = 1
            obj.attach()
        except BaseException:
            self.close()
            raise
        return self

    def _loaded(self) -> Object:
        if self.obj is None or not self.obj.loaded:
            raise TracekitError("OffCPUTime is not started: use 'async with' or start()")
        return self.obj

    @property
    def stacks(self) -> Any:
        """The :class:`tracekit.symbols.StackTraces` of the ``stacks`` map."""
        if self._stacks is None:
            from tracekit.symbols import StackTraces

            self._stacks = StackTraces(self._loaded().maps["stacks"])
        return self._stacks

    def totals(self, *, reset: bool = False) -> list[Blocked]:
        """Off-CPU totals, ascending (BCC's order); ``reset`` empties them (symbolize before
        :meth:`clear_stacks`)."""
        m = self._loaded().maps["counts"].typed
        pairs = m.pop_all() if reset else m.items()
        out = [Blocked(k.pid, k.tgid, k.comm, k.user_stack_id, k.kernel_stack_id, int(v)) for k, v in pairs]
        out.sort(key=lambda b: b.usecs)
        return out

    def clear_stacks(self) -> None:
        self.stacks.clear()

    @property
    def dropped(self) -> int:
        """Intervals not counted because a map was full."""
        obj = self._loaded()
        return int(obj.bss.start_full) + int(obj.bss.counts_full)

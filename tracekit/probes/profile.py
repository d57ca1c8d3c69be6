"""profile: timed stack sampling (BCC's and libbpf-tools' profile).

The object is ``profile.bpf.o`` (source ``profile.bpf.c``, key ``profile.h``).  Its one
program runs on the software cpu-clock of every CPU (or of the chosen ones) at a frequency
(or every N clock events) and counts samples per (tgid, comm, user stack, kernel stack).
cpu-clock always exists, also in VMs without a PMU, which is why it is the only event
(libbpf-tools does the same; BCC tries the hardware cycle counter first).

::

    async with Profile(pids=[pid], frequency=99) as p:
        await anyio.sleep(5)
        for s in p.samples():
            print(s.comm, s.count, [f.bare for f in p.stacks.user(s.user_stack_id, s.pid)])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracekit.errors import TracekitError
from tracekit.object import Object
from tracekit.probe import Probe

#: the kernel's PERF_MAX_STACK_DEPTH, the probe's stack depth
MAX_STACK_DEPTH = 127


@dataclass(frozen=True, slots=True)
class Sample:
    """Samples of one (process, comm, user stack, kernel stack)."""

    pid: int              # process id (tgid); 0 for the idle task
    comm: str
    user_stack_id: int    # an id of the `stacks` map, or -errno (-EFAULT: none / not collected)
    kernel_stack_id: int
    count: int


class Profile(Probe[None]):
    """Counts stack samples; read them with :meth:`samples` and symbolize with :attr:`stacks`."""

    object = "profile"
    event = None

    filter_pids: bool = False
    filter_tids: bool = False
    include_idle: bool = False
    user_stacks: bool = True
    kernel_stacks: bool = True

    def __init__(self, *, pids: Iterable[int] = (), tids: Iterable[int] = (), frequency: int | None = 49,
                 period: int | None = None, cpus: Iterable[int] | None = None, stack_storage_size: int = 16384,
                 hash_storage_size: int = 40960, **knobs: Any) -> None:
        """``frequency`` samples per second per CPU, or one sample every ``period``
        cpu-clock nanoseconds; ``pids``/``tids`` limit sampling to those processes/threads."""
        self.pids, self.tids = sorted(set(pids)), sorted(set(tids))
        if period is not None:
            frequency = None
        if (frequency is None) == (period is None):
            raise TracekitError("Profile: give a sampling frequency or a period")
        knobs.setdefault("filter_pids", bool(self.pids))
        knobs.setdefault("filter_tids", bool(self.tids))
        entries = {"stacks": stack_storage_size, "counts": hash_storage_size}
        if self.pids:
            entries["pids"] = max(len(self.pids), 1)
        if self.tids:
            entries["tids"] = max(len(self.tids), 1)
        super().__init__(map_entries=entries, **knobs)
        self.frequency, self.period = frequency, period
        self.cpus = sorted(set(cpus)) if cpus is not None else None
        self._stacks: Any = None

    def start(self) -> Profile:
        obj = self.obj or self.open()
        try:
            obj.load()
            self._fill(obj)
            obj.programs["do_perf_event"].attach_perf_event(sample_freq=self.frequency, sample_period=self.period,
                                                            cpus=self.cpus)
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _fill_set(obj: Object, name: str, ids: list[int]) -> None:
        m = obj.maps[name].typed
        for i in ids:
            m[i] = 1

    def _fill(self, obj: Object) -> None:
        self._fill_set(obj, "pids", self.pids)
        self._fill_set(obj, "tids", self.tids)

    @property
    def stacks(self) -> Any:
        """The :class:`tracekit.symbols.StackTraces` of the ``stacks`` map (one symbolizer)."""
        if self._stacks is None:
            from tracekit.symbols import StackTraces

            if self.obj is None or not self.obj.loaded:
                raise TracekitError("Profile is not started: use 'async with' or start()")
            self._stacks = StackTraces(self.obj.maps["stacks"])
        return self._stacks

    def samples(self, *, reset: bool = False) -> list[Sample]:
        """The sample counts, ascending (BCC's order); ``reset`` empties the counts (the
        stacks stay until :meth:`clear_stacks`: symbolize first)."""
        if self.obj is None or not self.obj.loaded:
            raise TracekitError("Profile is not started: use 'async with' or start()")
        m = self.obj.maps["counts"].typed
        pairs = m.pop_all() if reset else m.items()
        out = [Sample(k.pid, k.comm, k.user_stack_id, k.kernel_stack_id, int(v)) for k, v in pairs]
        out.sort(key=lambda s: s.count)
        return out

    def clear_stacks(self) -> None:
        self.stacks.clear()

    @property
    def counts_full(self) -> int:
        """Samples dropped because the counts map was full (raise hash_storage_size)."""
        return int(self.obj.bss.counts_full) if self.obj is not None and self.obj.loaded else 0

"""``SEC("perf_event")`` programs: sampling on a perf event, one event per CPU.

A perf event counts on one CPU (or follows one task); a sampling program wants every CPU,
so :func:`attach_perf_event` opens the event on each online CPU (or a given set) with
``pid = -1`` -- as BCC's ``attach_perf_event`` and libbpf-tools' profile do -- and attaches
the program to each through :func:`tracekit.hooks.links.attach_perf_event` (a BPF perf
link, or PERF_EVENT_IOC_SET_BPF on old kernels).  The per-CPU links are held by one
:class:`PerfEventLink`, which closes them together (and with the object that owns it).

Events are sampled by frequency (``sample_freq``: the kernel adjusts the period to reach
that many samples per second, ``attr.freq = 1``) or by period (``sample_period``: one
sample every N events).  Software ``cpu-clock`` always exists; hardware events need a PMU,
which most VMs lack: ``perf_event_open`` then answers ENOENT/EOPNOTSUPP/ENODEV and we raise
:class:`tracekit.errors.NotSupportedError` saying to sample cpu-clock instead.
"""

from __future__ import annotations

import ctypes
import errno as _errno
from collections.abc import Iterable, Iterator

from tracekit import _log
from tracekit.errors import AttachError, NotSupportedError, PermissionDeniedError, SyscallError
from tracekit.hooks.links import Link
from tracekit.hooks.links import attach_perf_event as _attach_one
from tracekit.kernel.syscalls import perf as _perf
from tracekit.obj.sections import PerfEventTarget, parse_perf_event_target

log = _log.getLogger("tracekit.hooks.perf_event")

PERF_TYPE_HARDWARE = _perf.PERF_TYPE_HARDWARE
PERF_TYPE_SOFTWARE = _perf.PERF_TYPE_SOFTWARE
PERF_COUNT_SW_CPU_CLOCK = _perf.PERF_COUNT_SW_CPU_CLOCK
PERF_COUNT_HW_CPU_CYCLES = 0
_FLAG_FREQ = 1 << _perf.ATTR_FLAG_BITS["freq"]

_TYPE_NAMES = {0: "hardware", 1: "software", 2: "tracepoint", 3: "hw_cache", 4: "raw", 5: "breakpoint"}


def _describe(type: int, config: int) -> str:
    return f"{_TYPE_NAMES.get(type, f'type {type}')} event config={config:#x}"


class PerfEventLink:
    """The per-CPU links of one perf-event attachment; ``close()`` detaches them all."""

    kind = "perf_event"

    def __init__(self, links: list[Link], cpus: list[int], target: str) -> None:
        self.links = links
        self.cpus = cpus
        self.target = target

    @property
    def closed(self) -> bool:
        return all(link.closed for link in self.links)

    @property
    def fds(self) -> list[int]:
        """The BPF link fds (perf event fds on kernels without perf links), one per CPU."""
        return [link.fd for link in self.links if not link.closed]

    @property
    def perf_fds(self) -> list[int]:
        return [fd for link in self.links if (fd := link.perf_fd) is not None]

    def close(self) -> None:
        for link in self.links:
            link.close()

    detach = close

    def __iter__(self) -> Iterator[Link]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)

    def __enter__(self) -> PerfEventLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.links)} cpus"
        return f"<PerfEventLink {self.target} {state}>"


def _max_sample_rate() -> int | None:
    try:
        with open("/proc/sys/kernel/perf_event_max_sample_rate") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _open_error(e: SyscallError, ptype: int, config: int, cpu: int, freq: int | None) -> Exception:
    what = _describe(ptype, config)
    if isinstance(e, PermissionDeniedError) or e.__class__ is not SyscallError:
        return e  # a specific class (no permission, out of fds...) already says what to do
    if e.errno in (_errno.ENOENT, _errno.EOPNOTSUPP, _errno.ENODEV) and ptype != PERF_TYPE_SOFTWARE:
        return NotSupportedError(
            f"sampling the {what}", None,
            f"perf_event_open on CPU {cpu} answered {_errno.errorcode.get(e.errno, e.errno)}: this machine has no "
            "PMU for it (common in VMs without PMU passthrough). Sample the software cpu-clock instead "
            "(type=1 config=0, i.e. perf_event/type=1,config=0,frequency=F)")
    if e.errno == _errno.EINVAL and freq is not None:
        limit = _max_sample_rate()
        if limit is not None and freq > limit:
            return AttachError(f"cannot sample the {what} at {freq} Hz: above kernel.perf_event_max_sample_rate "
                               f"({limit}); lower the frequency or raise the sysctl")
    if e.errno == _errno.ENOENT:
        return NotSupportedError(f"the {what}", None, "this kernel does not know this software event")
    return AttachError(f"cannot open the {what} on CPU {cpu} for sampling: {e}")


def attach_perf_event(prog_fd: int, *, type: int = PERF_TYPE_SOFTWARE, config: int = PERF_COUNT_SW_CPU_CLOCK,
                      sample_freq: int | None = None, sample_period: int | None = None,
                      cpus: Iterable[int] | None = None, pid: int = -1, cookie: int = 0) -> PerfEventLink:
    """Attach a perf_event program to a sampling event on every online CPU (or ``cpus``).

    Give exactly one of ``sample_freq`` (Hz) and ``sample_period`` (events).  With ``pid``
    the events follow that process (on each CPU of ``cpus``, or on any CPU when ``cpus`` is
    None).  All-or-nothing: if one CPU fails, the links made so far are closed.
    """
    if (sample_freq is None) == (sample_period is None):
        raise AttachError("perf_event attach: give exactly one of sample_freq= (samples per second) "
                          "and sample_period= (events per sample)")
    rate = sample_freq if sample_freq is not None else sample_period
    assert rate is not None
    if rate <= 0:
        raise AttachError(f"perf_event attach: the sampling {'frequency' if sample_freq else 'period'} "
                          f"must be positive, not {rate}")
    if cpus is None:
        cpu_list = [-1] if pid != -1 else _perf.online_cpus()
        explicit = False
    else:
        cpu_list = sorted(set(cpus))
        explicit = True
        online = set(_perf.online_cpus())
        off = [c for c in cpu_list if c not in online]
        if off:
            raise AttachError(f"perf_event attach: CPU(s) {off} are not online (online: "
                              f"{sorted(online)}); pass online CPUs or cpus=None for all of them")
    if not cpu_list:
        raise AttachError("perf_event attach: no CPU to sample on (cpus is empty)")
    target = f"{_describe(type, config)} " + (f"freq={sample_freq}" if sample_freq else f"period={sample_period}")
    links: list[Link] = []
    used: list[int] = []
    try:
        for cpu in cpu_list:
            attr = _perf.PerfEventAttr(type=type, config=config, sample_period=rate)
            attr.size = ctypes.sizeof(attr)
            if sample_freq is not None:
                attr.flags |= _FLAG_FREQ  # sample_period is the union's sample_freq then
            try:
                pfd = _perf.perf_event_open(attr, pid, cpu, -1, _perf.PERF_FLAG_FD_CLOEXEC,
                                            what=f"{_describe(type, config)} on CPU {cpu}")
            except SyscallError as e:
                if e.errno == _errno.ENODEV and not explicit and type == PERF_TYPE_SOFTWARE:
                    log.info("CPU %d went offline while attaching; not sampling it", cpu)
                    continue
                raise _open_error(e, type, config, cpu, sample_freq) from None
            links.append(_attach_one(prog_fd, pfd, cookie=cookie, kind="perf_event",
                                     target=f"{target} cpu={cpu}"))
            used.append(cpu)
    except BaseException:
        for link in links:
            link.close()
        raise
    if not links:
        raise AttachError(f"perf_event attach: no CPU could be sampled ({target})")
    return PerfEventLink(links, used, target)


def attach_from_section(prog_fd: int, target: str, *, cpus: Iterable[int] | None = None, pid: int = -1,
                        cookie: int = 0) -> PerfEventLink:
    """Attach as ``SEC("perf_event/type=T,config=C,frequency=F")`` (or ``period=P``) says."""
    t: PerfEventTarget = parse_perf_event_target(target)
    return attach_perf_event(prog_fd, type=t.type, config=t.config, sample_freq=t.sample_freq,
                             sample_period=t.sample_period, cpus=cpus, pid=pid, cookie=cookie)


__all__ = ["PerfEventLink", "attach_perf_event", "attach_from_section", "PERF_TYPE_HARDWARE",
           "PERF_TYPE_SOFTWARE", "PERF_COUNT_SW_CPU_CLOCK", "PERF_COUNT_HW_CPU_CYCLES"]

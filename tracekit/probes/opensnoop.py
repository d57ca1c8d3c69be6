"""opensnoop: open(), openat() and openat2() with their result, from syscall tracepoints.

The object is ``opensnoop.bpf.o`` (source ``opensnoop.bpf.c``, record ``opensnoop.h``).
Its records decode from BTF alone; :class:`Open` only names their fields and types for
type checkers and readers.
"""

from __future__ import annotations

from typing import Any, Protocol

from tracekit.probe import Probe

#: "no uid filter" (the probe's INVALID_UID)
INVALID_UID = 0xFFFFFFFF


class Open(Protocol):
    """One open: struct event of opensnoop.h, decoded from the object's BTF."""

    ts: int          # bpf_ktime_get_ns() at syscall exit (CLOCK_MONOTONIC)
    pid: int         # process id (tgid)
    tid: int         # thread id
    uid: int
    ret: int         # the new fd, or -errno
    flags: int       # O_* flags
    mode: int        # mode bits given with O_CREAT / O_TMPFILE
    comm: str
    fname: str       # the path as passed to open(), truncated to 254 bytes


class OpenSnoop(Probe[Open]):
    """syscalls:sys_{enter,exit}_{open,openat,openat2}, filtered in the kernel by the knobs.

    ``targ_pid`` is a *thread* id and ``targ_tgid`` a *process* id (the kernel's and
    libbpf-tools' naming): the tool's ``-t TID`` sets the first, ``-p PID`` the second.
    """

    object = "opensnoop"
    event = "event"
    # open() does not exist on every architecture and openat2 is 5.6+: skip what is missing
    optional_programs = (
        "tracepoint__syscalls__sys_enter_open",
        "tracepoint__syscalls__sys_exit_open",
        "tracepoint__syscalls__sys_enter_openat2",
        "tracepoint__syscalls__sys_exit_openat2",
    )

    targ_pid: int = 0            # thread id to trace (0: all)
    targ_tgid: int = 0           # process id to trace (0: all)
    targ_uid: int = INVALID_UID  # uid to trace
    targ_failed: bool = False    # only failed opens

    def reader(self, *, raw: bool = False) -> Any:
        """A reader whose records carry ``comm`` and ``fname`` already decoded: every
        consumer of opens reads them, and decoding a whole batch's strings at once is
        cheaper than one Python-level call per access (issue 13)."""
        if raw or self.obj is None or not self.obj.loaded:
            return super().reader(raw=raw)  # (also: the "not started" error)
        return self.obj.reader(self.events_map, event_type=self.obj.event_type(self.event or "event").eager())

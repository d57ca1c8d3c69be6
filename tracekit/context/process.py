"""pid -> comm, cmdline, cgroup and container id, from /proc.

Events carry pids; what a user wants to see is the program and the container.  Each read
is one small /proc file; a process may exit between the event and the read, which is
normal for tracing and is reported as ``exited=True`` with empty fields, never raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tracekit.errors import KernelFileError

#: container runtimes name cgroups after the container's 64-hex id: docker-<id>.scope,
#: /docker/<id>, cri-containerd-<id>.scope, crio-<id>, libpod-<id>, /kubepods/.../<id>
_CONTAINER_ID = re.compile(r"(?:^|[/\-:])([0-9a-f]{64})(?:\.scope)?(?:/|$)")


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    comm: str = ""
    cmdline: list[str] = field(default_factory=list)
    #: the cgroup-v2 path ("/system.slice/foo.service"), "" if none
    cgroup: str = ""
    #: the container's id (64 hex digits) when a container runtime's cgroup holds the process
    container_id: str | None = None
    #: the process was gone by the time it was looked up
    exited: bool = False


def _read(pid: int, name: str) -> bytes | None:
    path = f"/proc/{pid}/{name}"
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited (or never was)
    except OSError as e:
        raise KernelFileError(f"read {name} of pid {pid}", e.errno or 0, path=path) from None


def comm(pid: int) -> str | None:
    """The task's comm (at most 15 characters), or None when the process has exited."""
    raw = _read(pid, "comm")
    return None if raw is None else raw.rstrip(b"\n").decode("utf-8", "replace")


def cmdline(pid: int) -> list[str] | None:
    """argv as the process sees it now ([] for kernel threads); None when it has exited."""
    raw = _read(pid, "cmdline")
    if raw is None:
        return None
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


def cgroups(pid: int) -> dict[str, str] | None:
    """/proc/PID/cgroup as {hierarchy: path}: "" is the cgroup-v2 one, v1 ones by controller."""
    raw = _read(pid, "cgroup")
    if raw is None:
        return None
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def container_id(pid: int) -> str | None:
    """The container id in any of the process's cgroup paths (v2 first), or None."""
    cg = cgroups(pid)
    if not cg:
        return None
    for key in sorted(cg, key=lambda k: k != ""):
        m = _CONTAINER_ID.search(cg[key])
        if m:
            return m.group(1)
    return None


def info(pid: int) -> ProcessInfo:
    """Everything above in one record (``exited`` when the process is gone)."""
    c = comm(pid)
    if c is None:
        return ProcessInfo(pid, exited=True)
    cg = cgroups(pid) or {}
    args = cmdline(pid)
    return ProcessInfo(pid, c, args or [], cg.get("", ""), container_id(pid), exited=args is None)

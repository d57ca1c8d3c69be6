"""Attaching loaded programs to hooks, and the :class:`Link` that keeps them attached.

A program stays attached while its link fd is open.  For tracepoints the link also owns
the perf event it was attached through; on kernels without perf-event BPF links (< 5.15)
the program is attached with PERF_EVENT_IOC_SET_BPF and only the perf event fd is held.
Closing the :class:`Link` detaches in every case.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Callable

from tracekit import _log
from tracekit.errors import (
    AttachError,
    NotSupportedError,
    PermissionDeniedError,
    ResourceLimitError,
    SyscallError,
)
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.kernel.syscalls import fs as _fs
from tracekit.kernel.syscalls import perf as _perf
from tracekit.kernel.syscalls.bpf import ENOTSUPP, LinkInfo
from tracekit.uapi import AttachType

log = _log.getLogger("tracekit.hooks.links")


class Link:
    """An attachment; ``close()`` (or ``detach()``) removes it.  Idempotent; a context manager."""

    def __init__(self, fd: FD | None, *, perf_fd: FD | None = None, kind: str, target: str,
                 cookie: int = 0, cleanup: Callable[[], None] | None = None) -> None:
        if fd is None and perf_fd is None:
            raise ValueError("a Link needs a BPF link fd or a perf event fd")
        self._fd = fd
        self._perf_fd = perf_fd
        self.kind = kind
        self.target = target
        self.cookie = cookie
        # Runs once after the fds are closed: removes what the attachment created outside
        # the fds (a legacy tracefs kprobe/uprobe event, which the kernel refuses to
        # delete while a perf event still uses it).
        self._cleanup = cleanup

    @property
    def fd(self) -> int:
        """The BPF link fd (the perf event fd for ioctl-attached tracepoints)."""
        return self._fd.fd if self._fd is not None else self._perf_fd.fd  # type: ignore[union-attr]

    @property
    def perf_fd(self) -> int | None:
        return self._perf_fd.fd if self._perf_fd is not None and not self._perf_fd.closed else None

    @property
    def is_bpf_link(self) -> bool:
        """False for the PERF_EVENT_IOC_SET_BPF fallback (no pin, no info)."""
        return self._fd is not None

    @property
    def closed(self) -> bool:
        return all(f is None or f.closed for f in (self._fd, self._perf_fd))

    def close(self) -> None:
        """Detach by closing the link's fds (the kernel drops the attachment with the last ref)."""
        if self._fd is None and self._perf_fd is not None and not self._perf_fd.closed:
            try:  # stop the program firing before the event goes away
                _perf.disable(self._perf_fd.fd)
            except SyscallError:
                pass
        for f in (self._fd, self._perf_fd):
            if f is not None:
                f.close()
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            try:
                cleanup()
            except Exception as e:  # closing must not raise; the event is swept later
                log.warning("%s: cleanup after detach failed: %s", self, e)

    def detach(self) -> bool:
        """Force-detach (BPF_LINK_DETACH) even if the link is pinned or shared, then close.

        Returns False when the kernel cannot force-detach this link type (tracepoint,
        raw_tp and tracing links as of Linux 6.18 answer EOPNOTSUPP): the fds are closed all
        the same, which detaches an unpinned link; a pinned one stays until its pin is
        unlinked.
        """
        forced = False
        if self._fd is not None and not self._fd.closed:
            try:
                _bpf.link_detach(self._fd.fd)
                forced = True
            except SyscallError as e:
                if e.errno not in (_errno.EINVAL, _errno.EOPNOTSUPP, ENOTSUPP):
                    raise
        self.close()
        return forced

    def pin(self, path: str) -> None:
        """Pin on bpffs so the attachment outlives this process (until the pin is unlinked)."""
        if self._fd is None:
            raise NotSupportedError("pinning tracepoint links", "5.15",
                                    "this kernel attached through PERF_EVENT_IOC_SET_BPF (no BPF link)")
        _bpf.obj_pin(self._fd.fd, path)

    def info(self) -> LinkInfo:
        if self._fd is None:
            raise NotSupportedError("BPF link info for tracepoints", "5.15",
                                    "this kernel attached through PERF_EVENT_IOC_SET_BPF (no BPF link)")
        return _bpf.link_info(self._fd.fd)

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<Link {self.kind} {self.target} {state}>"


def _attach_error(what: str, e: SyscallError, hint: str) -> Exception:
    if isinstance(e, (PermissionDeniedError, ResourceLimitError)):
        return e  # already says what is missing; wrapping would say it twice or hide the class
    return AttachError(f"cannot attach {what}: {e}" + (f"; {hint}" if hint else ""))


def attach_perf_event(prog_fd: int, perf_fd: FD, *, cookie: int = 0, kind: str = "perf_event",
                      target: str = "", cleanup: Callable[[], None] | None = None,
                      force_ioctl: bool = False) -> Link:
    """Attach to an open perf event (tracepoint, kprobe, uprobe PMU event); takes ``perf_fd``.

    BPF_LINK_CREATE with BPF_PERF_EVENT (carries ``cookie``); on kernels without perf
    links, PERF_EVENT_IOC_SET_BPF + ENABLE (``force_ioctl`` takes that path directly, to
    test it).  ``perf_fd`` is closed and ``cleanup`` run on failure; on success the Link
    owns both.
    """
    what = f"{kind} {target}".strip()
    try:
        if force_ioctl:
            link_err: SyscallError | str = "not tried (force_ioctl)"
        else:
            try:
                lfd = _bpf.link_create(prog_fd, perf_fd.fd, AttachType.PERF_EVENT, bpf_cookie=cookie)
                return Link(lfd, perf_fd=perf_fd, kind=kind, target=target, cookie=cookie, cleanup=cleanup)
            except (PermissionDeniedError, ResourceLimitError):
                raise  # out of fds is not "old kernel": no fallback to the ioctl path
            except SyscallError as e:
                link_err = e
        # LINK_CREATE failed: maybe an old kernel without perf links; try the ioctl path.
        try:
            _perf.set_bpf(perf_fd.fd, prog_fd)
        except SyscallError as e2:
            if isinstance(e2, PermissionDeniedError):
                raise
            hint = ("is the program of the right type for this hook (e.g. SEC(\"tracepoint/...\") "
                    "for a tracepoint, SEC(\"kprobe/...\") or SEC(\"uprobe/...\") for a probe)?")
            raise AttachError(f"cannot attach {what}: {link_err}; PERF_EVENT_IOC_SET_BPF also "
                              f"failed: {e2}; {hint}") from None
        if cookie:
            raise NotSupportedError("BPF cookies on perf-event attachments", "5.15",
                                    "this kernel has no BPF perf links")
        _perf.enable(perf_fd.fd)
        return Link(None, perf_fd=perf_fd, kind=kind, target=target, cleanup=cleanup)
    except BaseException:
        perf_fd.close()
        if cleanup is not None:
            try:
                cleanup()
            except Exception as e:
                log.warning("cleanup after failed attach of %s failed: %s", what, e)
        raise


def attach_tracepoint(prog_fd: int, category: str, name: str, *, cookie: int = 0) -> Link:
    """Attach a tracepoint program to ``category:name`` (e.g. ``syscalls``, ``sys_enter_getpid``)."""
    target = f"{category}:{name}"
    try:
        tp_id = _fs.tracepoint_id(category, name)
    except NotSupportedError as e:
        raise AttachError(f"cannot attach to tracepoint {target}: tracefs is unavailable: {e}") from e
    try:
        pfd = _perf.open_tracepoint(tp_id, what=f"tracepoint {target}")
    except (PermissionDeniedError, ResourceLimitError):
        raise
    except SyscallError as e:
        raise AttachError(f"cannot open a perf event for tracepoint {target}: {e}") from e
    return attach_perf_event(prog_fd, pfd, cookie=cookie, kind="tracepoint", target=target)


def attach_raw_tracepoint(prog_fd: int, name: str, *, cookie: int = 0) -> Link:
    """Attach a raw_tracepoint program to ``name`` (e.g. ``sys_enter``)."""
    try:
        fd = _bpf.raw_tracepoint_open(prog_fd, name, cookie)
    except SyscallError as e:
        hint = {
            _errno.ENOENT: f"no raw tracepoint {name!r} on this kernel (names are tracepoint "
                           "names without category, e.g. 'sys_enter', 'sched_switch')",
            _errno.EINVAL: "the program must be a raw_tracepoint program (SEC(\"raw_tp/...\"))"
                           + (" and cookies need Linux 6.10+" if cookie else ""),
        }.get(e.errno, "")
        raise _attach_error(f"raw tracepoint {name}", e, hint) from None
    return Link(fd, kind="raw_tracepoint", target=name, cookie=cookie)


def attach_tracing(prog_fd: int, attach_type: int, *, cookie: int = 0, target: str = "") -> Link:
    """Attach a BTF-typed tracing program (tp_btf, fentry, fexit, fmod_ret, lsm).

    The target was fixed at load time (attach_btf_id); BPF_LINK_CREATE carries the
    cookie.  Kernels before LINK_CREATE supported tracing use BPF_RAW_TRACEPOINT_OPEN
    with a NULL name.
    """
    try:
        at_name = AttachType(attach_type).name.lower()
    except ValueError:
        at_name = str(attach_type)
    label = target or at_name
    try:
        fd = _bpf.link_create(prog_fd, 0, attach_type, tracing_cookie=cookie)
        return Link(fd, kind=at_name, target=label, cookie=cookie)
    except (PermissionDeniedError, ResourceLimitError):
        raise
    except SyscallError as e:
        link_err = e
    if cookie:
        raise _attach_error(f"{label} program", link_err,
                            "tracing cookies need BPF_LINK_CREATE support for tracing programs (Linux 6.0+)")
    try:
        fd = _bpf.raw_tracepoint_open(prog_fd, None)
    except SyscallError as e:
        hint = ("was the program loaded with the matching expected_attach_type and attach_btf_id?")
        raise _attach_error(f"{label} program", e, f"BPF_LINK_CREATE failed first ({link_err}); {hint}") from None
    return Link(fd, kind=at_name, target=label)


__all__ = ["Link", "LinkInfo", "attach_perf_event", "attach_tracepoint", "attach_raw_tracepoint",
           "attach_tracing"]

"""Kernel probes: kprobe/kretprobe, ksyscall/kretsyscall and kprobe.multi attachment.

Two ways to create a probe event, tried in this order (as libbpf does):

* the **PMU** way: ``perf_event_open`` on the dynamic ``kprobe`` PMU (its type number in
  ``/sys/bus/event_source/devices/kprobe/type``; the return-probe flag is the config bit
  named in ``format/retprobe``; ``config1`` points at the function name, ``config2`` is
  the offset).  The event lives exactly as long as its fd: nothing to clean up.
* the **legacy** way: append ``p:tracekit/<event> func+off`` to tracefs ``kprobe_events``,
  open the resulting tracepoint by id, and remove the event on detach.  Event names carry
  our pid (``tk_<pid>_<seq>_<func>``) so events left behind by a tracekit process that was
  killed are recognised and swept on the next legacy attach.

The shared PMU and tracefs machinery is also used by :mod:`tracekit.hooks.uprobe`.

kprobe.multi attaches one program to many functions with one BPF link
(BPF_TRACE_KPROBE_MULTI, Linux 5.18, needs CONFIG_FPROBE): functions are chosen by a glob
over ``available_filter_functions``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fnmatch
import itertools
import os
import re
import threading
from collections.abc import Sequence

from tracekit.errors import (
    RESOURCE_ERRNOS,
    AttachError,
    NotSupportedError,
    PermissionDeniedError,
    ResourceLimitError,
    SyscallError,
    TracekitError,
)
from tracekit.hooks.links import Link, attach_perf_event
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.kernel.syscalls import diagnose as _diag
from tracekit.kernel.syscalls import fs as _fs
from tracekit.kernel.syscalls import perf as _perf
from tracekit.kernel.syscalls.bpf import ENOTSUPP
from tracekit.uapi import AttachType

PMU_ROOT = "/sys/bus/event_source/devices"
#: tracefs group of our legacy events
LEGACY_GROUP = "tracekit"
#: BPF_F_KPROBE_MULTI_RETURN (link_create.kprobe_multi.flags)
KPROBE_MULTI_RETURN = 1
# The kernel limits event names to MAX_EVENT_NAME_LEN (64) including the NUL.
_MAX_EVENT_NAME = 63
_LEGACY_NAME = re.compile(r"^tk_(\d+)_\d+_")
_seq = itertools.count()
_lock = threading.Lock()


# --------------------------------------------------------------------------- PMU

def pmu_type(pmu: str) -> int | None:
    """The perf type number of dynamic PMU ``pmu`` ("kprobe", "uprobe"), None if absent.

    Only a missing file means "no PMU": EMFILE or EACCES raise (a TracekitError), so an
    fd shortage never silently sends us down the legacy tracefs path.
    """
    path = f"{PMU_ROOT}/{pmu}/type"
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _diag.file_error("read", path, e) from None
    try:
        return int(text.strip())
    except ValueError:
        return None


def retprobe_bit(pmu: str) -> int:
    """The config bit that makes a ``pmu`` event a return probe (``format/retprobe``: "config:0")."""
    path = f"{PMU_ROOT}/{pmu}/format/retprobe"
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace").strip()
    except FileNotFoundError:
        return 0  # every kernel with the PMU so far uses bit 0
    except OSError as e:
        raise _diag.file_error("read", path, e) from None
    m = re.fullmatch(r"config:(\d+)", text)
    if not m:
        raise AttachError(f"unexpected {PMU_ROOT}/{pmu}/format/retprobe contents {text!r}")
    return int(m.group(1))


def open_pmu_probe(pmu: str, name: str | bytes, offset: int, *, retprobe: bool, pid: int = -1,
                   what: str, extra_config: int = 0) -> FD:
    """perf_event_open on the ``pmu`` PMU: ``name`` is the kernel function or the binary path.

    ``extra_config`` is OR-ed into ``config`` (the uprobe PMU's ``ref_ctr_offset`` field)."""
    typ = pmu_type(pmu)
    if typ is None:
        raise NotSupportedError(f"the {pmu} PMU", "4.17", f"{PMU_ROOT}/{pmu} does not exist")
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    buf = ctypes.create_string_buffer(raw)
    attr = _perf.PerfEventAttr(type=typ, config=((1 << retprobe_bit(pmu)) if retprobe else 0) | extra_config)
    attr.size = ctypes.sizeof(attr)
    attr.config1 = ctypes.addressof(buf)
    attr.config2 = offset
    # A BPF program attached to a probe runs wherever the probe fires, whatever CPU its
    # event was opened on: cpu 0 for "every task", any CPU (-1) for one task.
    cpu = 0 if pid < 0 else -1
    try:
        return _perf.perf_event_open(attr, pid, cpu, -1, _perf.PERF_FLAG_FD_CLOEXEC, what)
    finally:
        del buf  # the kernel copied the string during the call


# --------------------------------------------------------------------------- legacy tracefs events

def legacy_events_file(kind: str) -> str:
    """Path of tracefs ``kprobe_events``/``uprobe_events`` (mounting tracefs if needed)."""
    path = os.path.join(_fs.tracefs_path(), f"{kind}_events")
    if not os.path.exists(path):
        raise NotSupportedError(f"{kind}s", detail=f"{path} does not exist (kernel built without "
                                f"CONFIG_{kind.upper()}_EVENTS?)")
    return path


def _write_events(path: str, line: str) -> None:
    """Append one command line to a tracefs events file.

    Raises OSError (the kernel's answer: EINVAL, ENOENT, EBUSY, ... for the command) or,
    when the file cannot even be opened (EMFILE, EACCES), the TracekitError saying why —
    which is an OSError too, so callers' ``except OSError`` keep working.
    """
    # tracefs refuses the seek that open(path, "a") does (EINVAL): append with O_APPEND.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError as e:
        raise _diag.file_error("open", path, e) from None
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def legacy_event_name(label: str) -> str:
    """A unique event name carrying our pid: ``tk_<pid>_<seq>_<label>``."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", label)
    name = f"tk_{os.getpid()}_{next(_seq)}_{clean}"
    return name[:_MAX_EVENT_NAME]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_legacy_events(kind: str) -> list[str]:
    """Names of tracekit's events (``tracekit/tk_*``) currently in ``<kind>_events``."""
    path = legacy_events_file(kind)
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        raise _diag.file_error("read", path, e) from None
    out = []
    for line in lines:
        # "p:tracekit/tk_123_0_do_sys_openat2 do_sys_openat2" / "r4:tracekit/... ..."
        head = line.split(" ", 1)[0]
        _, _, ev = head.partition(":")
        group, _, name = ev.partition("/")
        if group == LEGACY_GROUP:
            out.append(name)
    return out


def sweep_stale_events(kind: str) -> list[str]:
    """Remove our events left behind by tracekit processes that no longer exist."""
    removed = []
    path = legacy_events_file(kind)
    for name in list_legacy_events(kind):
        m = _LEGACY_NAME.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                _write_events(path, f"-:{LEGACY_GROUP}/{name}")
                removed.append(name)
            except TracekitError:
                raise  # cannot open the file at all (EMFILE, EACCES): say so
            except OSError:
                pass  # still in use (EBUSY) or raced with another sweeper: leave it
    return removed


#: (pid, kind) already swept: keyed by pid so that a forked child, which inherits this set,
#: still sweeps once itself (it may start after processes the parent outlived were killed)
_swept: set[tuple[int, str]] = set()


def sweep_once(kind: str) -> None:
    """Sweep events of dead tracekit processes once per process and kind, whichever way we
    attach: a probe through the PMU must clean up after a killed legacy user too.  Best
    effort: no tracefs, no privilege or no ``<kind>_events`` means nothing to sweep."""
    if (os.getpid(), kind) in _swept:
        return
    try:
        sweep_stale_events(kind)
    except (TracekitError, OSError) as e:
        if isinstance(e, SyscallError) and e.errno in RESOURCE_ERRNOS:
            raise  # out of fds now: the attach would fail next anyway, with the same truth
        log_sweep(kind, e)
    _swept.add((os.getpid(), kind))


def log_sweep(kind: str, e: BaseException) -> None:
    from tracekit import _log

    _log.getLogger("tracekit.hooks.kprobe").debug("no sweep of stale %s events: %s", kind, e)


#: our own events whose removal failed (out of fds, say): retried by the next legacy
#: operation of this process and at exit, so a transient EMFILE leaves nothing behind
_pending_removal: set[tuple[str, str]] = set()


def remove_legacy_event(kind: str, name: str) -> None:
    """Delete our event ``name`` from ``<kind>_events``; on failure it is remembered and
    retried later (:func:`retry_pending_removals`) before the error is raised."""
    try:
        _write_events(legacy_events_file(kind), f"-:{LEGACY_GROUP}/{name}")
    except OSError as e:
        if e.errno == _errno.ENOENT:
            return  # already gone
        if not _pending_removal:
            import atexit

            atexit.register(retry_pending_removals)
        _pending_removal.add((kind, name))
        raise
    _pending_removal.discard((kind, name))
    if _pending_removal:
        retry_pending_removals()


def retry_pending_removals() -> None:
    """Try again to delete the events whose removal failed; keep the ones that still fail."""
    for kind, name in sorted(_pending_removal):
        try:
            _write_events(legacy_events_file(kind), f"-:{LEGACY_GROUP}/{name}")
        except (OSError, TracekitError) as e:
            if getattr(e, "errno", None) != _errno.ENOENT:
                continue
        _pending_removal.discard((kind, name))


def open_legacy_probe(kind: str, spec_text: str, label: str, *, retprobe: bool, pid: int = -1,
                      what: str) -> tuple[FD, str]:
    """Create ``p|r:tracekit/<name> <spec_text>`` in ``<kind>_events`` and open it.

    Returns the perf fd and the event name; the caller removes the event after the fd is
    closed (:func:`remove_legacy_event`).  Nothing is left behind on error.
    """
    path = legacy_events_file(kind)
    with _lock:
        if _pending_removal:
            retry_pending_removals()
        sweep_stale_events(kind)
        name = legacy_event_name(label)
        try:
            _write_events(path, f"{'r' if retprobe else 'p'}:{LEGACY_GROUP}/{name} {spec_text}")
        except TracekitError:
            raise
        except OSError as e:
            err = e.errno or _errno.EIO
            if err in RESOURCE_ERRNOS:
                raise _diag.resource_error(f"write {path}", err, kind="file") from None
            if err in (_errno.EPERM, _errno.EACCES):
                raise PermissionDeniedError(f"write {path}", err) from None
            hint = {
                _errno.ENOENT: "no such symbol or file",
                _errno.EINVAL: "the target cannot be probed (unknown, blacklisted or inlined function, "
                               "or a bad offset)",
                _errno.EEXIST: "an event of that name already exists",
            }.get(err, "")
            raise AttachError(f"cannot create {what} through {path}: {os.strerror(err)}"
                              + (f" ({hint})" if hint else "")) from None
    try:
        tp_id = _fs.tracepoint_id(LEGACY_GROUP, name)
        cpu = 0 if pid < 0 else -1
        return _perf.open_tracepoint(tp_id, pid=pid, cpu=cpu, what=what), name
    except BaseException:
        try:
            remove_legacy_event(kind, name)
        except OSError:
            pass  # (out of fds, say): the next start's sweep removes it, the name has our pid
        raise


# --------------------------------------------------------------------------- kprobe / kretprobe

def kprobe_pmu_available() -> bool:
    return pmu_type("kprobe") is not None


def _kprobe_events_available() -> bool:
    # Only "absent" is an answer; a privilege or fd problem propagates with its own message.
    try:
        legacy_events_file("kprobe")
        return True
    except NotSupportedError:
        return False


def parse_kprobe_target(target: str) -> tuple[str, int]:
    """``"func"``, ``"func+0x10"`` or ``"func+16"`` -> (func, offset)."""
    func, sep, off = target.partition("+")
    if not func or not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.$]*", func):
        raise AttachError(f"invalid kprobe target {target!r}: expected 'function' or 'function+offset'")
    if not sep:
        return func, 0
    try:
        return func, int(off, 0)
    except ValueError:
        raise AttachError(f"invalid kprobe offset {off!r} in {target!r}: expected a number such as 0x10") from None


def attach_kprobe(prog_fd: int, func: str, offset: int = 0, *, retprobe: bool = False, cookie: int = 0,
                  legacy: bool | None = None, force_ioctl: bool = False) -> Link:
    """Attach a kprobe program to kernel function ``func`` (+``offset``), or to its return.

    ``legacy`` None picks the kprobe PMU when the kernel has one, else tracefs
    ``kprobe_events``; True/False force one way (for tests and odd kernels).
    """
    kind = "kretprobe" if retprobe else "kprobe"
    if retprobe and offset:
        raise AttachError(f"{kind} {func}+{offset:#x}: return probes take no offset")
    label = f"{func}+{offset:#x}" if offset else func
    what = f"{kind} {label}"
    use_pmu = kprobe_pmu_available() if legacy is None else not legacy
    if use_pmu:
        sweep_once("kprobe")
    if use_pmu:
        if not kprobe_pmu_available():
            raise NotSupportedError("the kprobe PMU", "4.17", f"{PMU_ROOT}/kprobe does not exist")
        try:
            pfd = open_pmu_probe("kprobe", func, offset, retprobe=retprobe, what=what)
        except (PermissionDeniedError, ResourceLimitError):
            raise
        except SyscallError as e:
            raise _kprobe_error(what, func, e) from None
        return attach_perf_event(prog_fd, pfd, cookie=cookie, kind=kind, target=label,
                                 force_ioctl=force_ioctl)
    if not _kprobe_events_available():
        raise NotSupportedError(
            "kprobes", detail="this kernel has neither the kprobe PMU (/sys/bus/event_source/devices/kprobe) "
            "nor tracefs kprobe_events (CONFIG_KPROBES/CONFIG_KPROBE_EVENTS off)")
    pfd, name = open_legacy_probe("kprobe", f"{func}+{offset}" if offset else func, label,
                                  retprobe=retprobe, what=what)
    return attach_perf_event(prog_fd, pfd, cookie=cookie, kind=kind, target=label,
                             cleanup=lambda: remove_legacy_event("kprobe", name), force_ioctl=force_ioctl)


def _kprobe_error(what: str, func: str, e: SyscallError) -> Exception:
    hint = {
        _errno.ENOENT: f"the kernel has no probe-able function {func!r} (not in /proc/kallsyms, "
                       "or inlined); see available_filter_functions",
        _errno.EINVAL: f"{func!r} cannot be probed here (blacklisted, notrace, or a bad offset)",
        _errno.EADDRNOTAVAIL: f"the offset is not an instruction boundary in {func!r}",
        _errno.EILSEQ: f"the offset is not an instruction boundary in {func!r}",
    }.get(e.errno, "")
    return AttachError(f"cannot create {what}: {e}" + (f"; {hint}" if hint else ""))


# --------------------------------------------------------------------------- ksyscall

_syscall_prefix: str | None = None


def _kallsyms_has(names: Sequence[bytes]) -> dict[bytes, bool]:
    """Which of ``names`` are text symbols in /proc/kallsyms (one pass, C-speed search)."""
    found = {n: False for n in names}
    data = _diag.read_kernel_file("/proc/kallsyms")
    for n in names:
        # lines are "addr type name[\t[module]]\n"
        found[n] = (b" " + n + b"\n") in data or (b" " + n + b"\t") in data
    return found


def syscall_prefix() -> str:
    """The prefix of syscall entry points: ``__x64_sys_`` on kernels with syscall wrappers
    (x86-64 since 4.17), else ``sys_``."""
    global _syscall_prefix
    if _syscall_prefix is None:
        import platform

        arch = {"x86_64": "x64", "aarch64": "arm64", "s390x": "s390", "riscv64": "riscv"}.get(
            platform.machine(), "")
        wrapped = f"__{arch}_sys_getpid".encode() if arch else b""
        have = _kallsyms_has([wrapped] if wrapped else [])
        _syscall_prefix = f"__{arch}_sys_" if wrapped and have.get(wrapped) else "sys_"
    return _syscall_prefix


def attach_ksyscall(prog_fd: int, name: str, *, retprobe: bool = False, cookie: int = 0) -> Link:
    """Attach to syscall ``name``'s entry point (``__x64_sys_<name>`` on wrapped kernels)."""
    if not re.fullmatch(r"[a-z0-9_]+", name or ""):
        raise AttachError(f"invalid syscall name {name!r}: expected e.g. 'openat'")
    link = attach_kprobe(prog_fd, syscall_prefix() + name, retprobe=retprobe, cookie=cookie)
    link.kind = "kretsyscall" if retprobe else "ksyscall"
    return link


# --------------------------------------------------------------------------- kprobe.multi

def _filter_functions() -> list[str]:
    """Names in available_filter_functions (module suffixes dropped), else kallsyms text symbols."""
    path = "available_filter_functions"
    try:
        path = os.path.join(_fs.tracefs_path(), "available_filter_functions")
        with open(path) as f:
            text = f.read()
        names = [line.split(None, 1)[0] for line in text.splitlines() if line]
        if names:
            return names
    except OSError as e:  # unreadable (not root, ...): kallsyms below; out of fds: say so
        if e.errno in RESOURCE_ERRNOS:
            if isinstance(e, TracekitError):
                raise
            raise _diag.file_error("read", path, e) from None
    except NotSupportedError:
        pass
    out = []
    for raw in _diag.read_kernel_file("/proc/kallsyms").splitlines():
        parts = raw.decode("ascii", "replace").split()
        if len(parts) >= 3 and parts[1] in "tT":
            out.append(parts[2])
    return out


def match_functions(pattern: str) -> list[str]:
    """Kernel functions matching glob ``pattern``, deduplicated, in kernel order."""
    seen: dict[str, None] = {}
    exact = not any(c in pattern for c in "*?[")
    for name in _filter_functions():
        # ftrace lists functions it could not resolve under this placeholder
        if name.startswith("__ftrace_invalid_address"):
            continue
        if (name == pattern) if exact else fnmatch.fnmatchcase(name, pattern):
            seen.setdefault(name)
    return list(seen)


def attach_kprobe_multi(prog_fd: int, pattern: str | Sequence[str], *, retprobe: bool = False,
                        cookie: int = 0, cookies: Sequence[int] | None = None) -> Link:
    """Attach one program to every kernel function matching glob ``pattern`` (or to a list).

    ``cookie`` is given to every function; ``cookies`` (one per function of an explicit
    list) gives each its own.
    """
    kind = "kretprobe.multi" if retprobe else "kprobe.multi"
    if isinstance(pattern, str):
        syms = match_functions(pattern)
        label = pattern
        if not syms:
            raise AttachError(f"{kind}: no kernel function matches {pattern!r} "
                              "(in available_filter_functions)")
    else:
        syms = list(pattern)
        label = ",".join(syms[:3]) + (",..." if len(syms) > 3 else "")
        if not syms:
            raise AttachError(f"{kind}: empty function list")
    if cookies is not None:
        if isinstance(pattern, str) or len(cookies) != len(syms):
            raise AttachError(f"{kind}: per-function cookies need an explicit list of functions, one cookie each")
        cks: list[int] | None = list(cookies)
    else:
        cks = [cookie] * len(syms) if cookie else None
    try:
        fd = _bpf.link_create(prog_fd, 0, AttachType.TRACE_KPROBE_MULTI, kprobe_multi_syms=syms,
                              kprobe_multi_cookies=cks,
                              kprobe_multi_flags=KPROBE_MULTI_RETURN if retprobe else 0)
    except (PermissionDeniedError, ResourceLimitError):
        raise
    except SyscallError as e:
        if e.errno in (_errno.EOPNOTSUPP, ENOTSUPP):
            raise NotSupportedError(
                "kprobe.multi links", "5.18",
                f"BPF_LINK_CREATE answered {_errno.errorcode.get(e.errno, e.errno)} (kernel built without "
                "CONFIG_FPROBE); attach each function with kprobe/<func> instead") from None
        hint = {
            _errno.ENOENT: "a function is not in kallsyms",
            _errno.ESRCH: "a function is not in kallsyms",
            _errno.EINVAL: "a function cannot be traced (notrace/duplicate), or the program was not "
                           "loaded as SEC(\"kprobe.multi/...\")",
            _errno.EBUSY: "a function is already attached by an incompatible fprobe",
        }.get(e.errno, "")
        raise AttachError(f"cannot attach {kind} to {len(syms)} functions ({label}): {e}"
                          + (f"; {hint}" if hint else "")) from None
    return Link(fd, kind=kind, target=label, cookie=cookie)


__all__ = [
    "attach_kprobe", "attach_ksyscall", "attach_kprobe_multi", "parse_kprobe_target", "match_functions",
    "syscall_prefix", "pmu_type", "open_pmu_probe", "open_legacy_probe", "remove_legacy_event",
    "list_legacy_events", "sweep_stale_events", "sweep_once", "kprobe_pmu_available", "retry_pending_removals",
]

"""One exception hierarchy for everything tracekit raises.

Every error a user can hit derives from :class:`TracekitError`, so an agent can catch
one class; the subclasses say *what* went wrong so a caller can react (retry without a
program, fall back to another attach type, ask for root, ...).  Messages are written to
be acted on: they name the object, program, map or feature involved.
"""

from __future__ import annotations

import errno as _errno
import os


class TracekitError(Exception):
    """Base class of every tracekit error."""


# --- parsing (pure layer) -------------------------------------------------------------


class ParseError(TracekitError):
    """An input file (ELF object, BTF blob) is malformed or unsupported."""


class ELFError(ParseError):
    """The ELF object is not a usable BPF relocatable object."""


class BTFError(ParseError):
    """A BTF blob (object .BTF, .BTF.ext, kernel BTF) is malformed."""


class SectionError(ParseError):
    """A program section name tracekit cannot map to a program type."""


# --- relocation (pure layer) ----------------------------------------------------------


class RelocationError(TracekitError):
    """An instruction could not be relocated (map, subprogram, data, extern)."""


class CORERelocationError(RelocationError):
    """A CO-RE relocation failed (incompatible types, bad access string, ...)."""


class AmbiguousRelocationError(CORERelocationError):
    """Several target candidates matched a CO-RE relocation but disagree."""


class ExternError(RelocationError):
    """A kernel extern (kfunc, ksym, kconfig) could not be resolved."""


class LinkerError(TracekitError):
    """The static linker refused its inputs (conflicts, mismatched types, ...)."""


# --- kernel interaction ---------------------------------------------------------------


class SyscallError(TracekitError, OSError):
    """A system call failed; ``errno`` and ``op`` say which and why."""

    errno: int  # always set (OSError's may be None): the failed call's errno

    def __init__(self, op: str, err: int, detail: str = "") -> None:
        self.op = op
        msg = f"{op}: {os.strerror(err)} ({_errno.errorcode.get(err, err)})"
        if detail:
            msg += f": {detail}"
        OSError.__init__(self, err, msg)
        self.errno = err

    def __str__(self) -> str:  # OSError's default str repeats errno; keep ours readable
        return str(self.args[1]) if len(self.args) > 1 else super().__str__()


class PermissionDeniedError(SyscallError, PermissionError):
    """The caller lacks the privileges the operation needs (usually: run as root)."""


class NotSupportedError(TracekitError):
    """The running kernel lacks a feature; ``feature`` and ``min_kernel`` say which."""

    def __init__(self, feature: str, min_kernel: str | None = None, detail: str = "") -> None:
        self.feature = feature
        self.min_kernel = min_kernel
        msg = f"{feature} is not supported by this kernel"
        if min_kernel:
            msg += f" (needs Linux {min_kernel} or newer)"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class LoadError(TracekitError):
    """Creating a kernel object (map, BTF, program) failed."""


class BTFLoadError(LoadError):
    """The kernel rejected the object's BTF; ``log`` holds the kernel's BTF log."""

    def __init__(self, message: str, log: str = "") -> None:
        self.log = log
        super().__init__(message + (f"\n--- kernel BTF log ---\n{log.rstrip()}" if log else ""))


class MapError(LoadError):
    """A map could not be created or used."""


class VerifierError(LoadError):
    """The verifier rejected a program; ``log`` holds the full verifier log."""

    #: lines of the log shown in ``str()``; the full log is always in ``.log``
    TAIL_LINES = 40

    def __init__(self, program: str, err: int, log: str, hint: str = "") -> None:
        self.program = program
        self.errno = err
        self.log = log
        self.hint = hint
        lines = log.rstrip().splitlines()
        shown = lines[-self.TAIL_LINES :]
        head = f"verifier rejected program {program!r}: {os.strerror(err)}"
        if hint:
            head += f"\nhint: {hint}"
        if len(shown) < len(lines):
            head += f"\n--- verifier log (last {len(shown)} of {len(lines)} lines; full log in .log) ---"
        else:
            head += "\n--- verifier log ---"
        super().__init__(head + "\n" + "\n".join(shown))


class AttachError(TracekitError):
    """A program could not be attached to its hook."""


class ClosedError(TracekitError):
    """The object, map, link or reader was already closed."""


def error_for_errno(op: str, err: int, detail: str = "") -> SyscallError:
    """Map an errno from a syscall to the most specific tracekit exception.

    This is the pure fallback: it knows the class but not the live figures.  The kernel
    layer (:mod:`tracekit.kernel.syscalls.diagnose`) builds the same classes with the
    numbers filled in (open fds, limits, missing capabilities).
    """
    if err in (_errno.EPERM, _errno.EACCES):
        hint = detail or "tracekit needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"
        return PermissionDeniedError(op, err, hint)
    if err in RESOURCE_ERRNOS:
        return resource_error_class(err)(op, err, detail)
    return SyscallError(op, err, detail)


class ProbeNotFoundError(TracekitError, LookupError):
    """No bundled probe has the requested name."""


class ObjectNotFoundError(TracekitError, FileNotFoundError):
    """The BPF object file named by a path does not exist."""


class KnobError(TracekitError, TypeError):
    """A probe knob (a global variable set before load) is unknown or has the wrong type;
    the message names the knob and what it takes."""


class EventTypeError(TracekitError, LookupError):
    """The records of a ring buffer have no type tracekit can find in the object's BTF;
    the message says how to mark it in the probe (``TK_EVENT_TYPE``)."""


# --- resource limits and kernel files (appended: issue 10, item 5) -----------------------

#: errnos that mean "a limit ran out", never "the input is wrong"
RESOURCE_ERRNOS = frozenset({_errno.EMFILE, _errno.ENFILE, _errno.ENOMEM, _errno.EAGAIN, _errno.E2BIG})


class ResourceLimitError(SyscallError):
    """A process or system limit ran out (file descriptors, memory, a size limit).

    ``resource`` names what ran out ("file descriptors", "memory for BPF objects", ...),
    ``limit`` the limit that applies with its current value when known (``"RLIMIT_NOFILE
    soft limit 1024"``).  Never a verifier or parse error: the same input succeeds once
    the limit is raised.  ``log`` keeps a verifier log if the kernel wrote one.
    """

    #: what ran out and the limit that applies, when the errno alone says it (subclasses)
    default_resource = "a kernel or process resource"
    default_limit = ""

    def __init__(self, op: str, err: int, detail: str = "", *, resource: str = "", limit: str = "",
                 log: str = "") -> None:
        self.resource = resource or self.default_resource
        self.limit = limit or self.default_limit
        self.log = log
        if not detail:
            detail = f"out of {self.resource}" + (f" ({self.limit})" if self.limit else "")
        super().__init__(op, err, detail)


class FileDescriptorLimitError(ResourceLimitError):
    """EMFILE (this process's RLIMIT_NOFILE) or ENFILE (the system's fs.file-max)."""

    default_resource = "file descriptors"
    default_limit = "RLIMIT_NOFILE: raise it with ulimit -n; or fs.file-max for ENFILE"


class MemoryLimitError(ResourceLimitError):
    """ENOMEM: the memory cgroup, RLIMIT_MEMLOCK (kernels before 5.11), RLIMIT_AS or RAM."""

    default_resource = "memory"
    default_limit = "the memory cgroup's limit; RLIMIT_MEMLOCK (ulimit -l) before Linux 5.11"


class SizeLimitError(ResourceLimitError):
    """E2BIG: an object is larger than the kernel allows (program, BTF, map, attr size)."""

    default_resource = "size limit"


class ResourceBusyError(ResourceLimitError):
    """EAGAIN: the resource is temporarily exhausted; retrying later may succeed."""

    default_resource = "a temporarily unavailable kernel resource"


def resource_error_class(err: int) -> type[ResourceLimitError]:
    """The :class:`ResourceLimitError` subclass for a resource errno."""
    if err in (_errno.EMFILE, _errno.ENFILE):
        return FileDescriptorLimitError
    if err == _errno.ENOMEM:
        return MemoryLimitError
    if err == _errno.E2BIG:
        return SizeLimitError
    return ResourceBusyError


class KernelFileError(SyscallError):
    """Reading or writing a kernel file (tracefs, sysfs, procfs) failed; ``path`` says which."""

    def __init__(self, op: str, err: int, detail: str = "", *, path: str = "") -> None:
        self.path = path
        super().__init__(op, err, detail)


class SymbolsUnavailableError(TracekitError):
    """Symbols cannot be read at all (e.g. /proc/kallsyms hides addresses); the message says how to fix it."""


class USDTError(ParseError):
    """A binary's ``.note.stapsdt`` USDT notes or an argument spec in them cannot be used;
    the message names the probe and the argument."""


class ReaderBusyError(TracekitError):
    """A kernel channel that admits one reader at a time (a perf event array: one perf
    event per CPU slot) already has one; the message says how to share it."""


class MapCodecError(MapError, ValueError):
    """A key or value cannot be encoded in a map's BTF type (unknown field, out of range,
    too long); the message names the field and what it takes."""


class HistogramError(TracekitError, ValueError):
    """A map does not hold a histogram layout tracekit reads, or the histogram options do
    not fit it; the message says which option to give."""


class AgentConfigError(TracekitError, ValueError):
    """An agent config (ebpf_exporter YAML or a Python declaration) is invalid, or does
    not fit its object (a missing map, a key layout that does not add up); the message
    names the config, the metric and the key to fix."""


class DecoderError(TracekitError, ValueError):
    """A label decoder cannot decode a map key field (a wrong size for ``uint``, an unknown
    decoder name); the agent counts these in ``ebpf_exporter_decoder_errors_total``."""

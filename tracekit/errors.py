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
    """Map an errno from a syscall to the most specific tracekit exception."""
    if err in (_errno.EPERM, _errno.EACCES):
        hint = detail or "tracekit needs root (CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)"
        return PermissionDeniedError(op, err, hint)
    return SyscallError(op, err, detail)


class ProbeNotFoundError(TracekitError, LookupError):
    """No bundled probe has the requested name."""


class ObjectNotFoundError(TracekitError, FileNotFoundError):
    """The BPF object file named by a path does not exist."""

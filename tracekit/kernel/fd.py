"""One owned file descriptor.

Every kernel object tracekit creates (map, program, BTF, link, perf event) is reached
through an fd.  Wrapping each one in :class:`FD` gives one place that closes it exactly
once, makes double-close harmless, and turns a forgotten ``close()`` into a
``ResourceWarning`` plus a close by the garbage collector instead of a silent leak that
keeps a program attached to the kernel.
"""

from __future__ import annotations

import os
import warnings
import weakref

from tracekit.errors import ClosedError


def _close_leaked(fd: int, what: str) -> None:
    # Runs from the garbage collector: never raise, but tell the developer.
    warnings.warn(f"unclosed {what} (fd {fd}); closing it", ResourceWarning, stacklevel=2)
    try:
        os.close(fd)
    except OSError:
        pass


class FD:
    """Owns one file descriptor: ``close()`` is idempotent; a leaked FD is closed by GC."""

    __slots__ = ("_fd", "_what", "_finalizer", "__weakref__")

    def __init__(self, fd: int, what: str = "fd") -> None:
        if not isinstance(fd, int) or fd < 0:
            raise ValueError(f"invalid file descriptor {fd!r} for {what}")
        self._fd = fd
        self._what = what
        self._finalizer = weakref.finalize(self, _close_leaked, fd, what)
        # The OS closes every fd at exit; warning about each then is noise.
        self._finalizer.atexit = False

    @property
    def fd(self) -> int:
        """The raw descriptor number; raises :class:`ClosedError` once closed."""
        if self._fd < 0:
            raise ClosedError(f"{self._what} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @property
    def what(self) -> str:
        return self._what

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Close the descriptor; calling it again does nothing."""
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        self._finalizer.detach()
        os.close(fd)

    def detach(self) -> int:
        """Give up ownership and return the raw descriptor (the caller must close it)."""
        fd = self.fd
        self._fd = -1
        self._finalizer.detach()
        return fd

    def dup(self, what: str | None = None) -> FD:
        """A new owned descriptor for the same kernel object (close-on-exec)."""
        import fcntl

        return FD(fcntl.fcntl(self.fd, fcntl.F_DUPFD_CLOEXEC, 3), what or self._what)

    def __enter__(self) -> FD:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __int__(self) -> int:
        return self.fd

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<FD {self._what} {state}>"

"""bcc-style tools: command lines over :mod:`tracekit.probes` (installed as ``tracekit-<name>``).

Importing this package first makes Ctrl-C (SIGINT) and SIGTERM stop a tool quietly from
its very first instruction: while Python is still importing tracekit, before any probe is
loaded, an interrupt ends the process with no traceback.  Installing the handler also
undoes a SIG_IGN inherited from a shell that started the tool in the background
(``tracekit-opensnoop &`` in a script), which would otherwise make the tool ignore Ctrl-C
and SIGINT for its whole life; the C tools install their own handlers for the same reason.
:func:`tracekit_tools.common.run` then turns both signals into a clean detach and exit.
"""

from __future__ import annotations

import signal
from types import FrameType


def _quit_during_startup(signum: int, frame: FrameType | None) -> None:
    # Nothing is attached yet: kernel objects die with the process's fds.
    raise SystemExit(0)


signal.signal(signal.SIGINT, _quit_during_startup)
signal.signal(signal.SIGTERM, _quit_during_startup)

"""tracekit's loggers, without importing :mod:`logging` on the start path (issue 13).

``import logging`` costs ~4 ms (it pulls in traceback, threading, string, weakref, ...),
a tenth of a bundled tool's whole start-up, for messages nobody sees by default.  This
shim has the part of :class:`logging.Logger` tracekit uses and forwards to the real
logger of the same name -- so handlers, levels, ``caplog`` and ``logging.basicConfig``
work exactly as with ``logging.getLogger(name)`` -- but imports logging only when it has
to:

- ``warning``/``error`` always go through logging: with no handler configured, logging's
  last-resort handler prints them on stderr, and users must keep seeing them;
- ``debug``/``info`` are dropped while logging has not been imported by anyone: then no
  handler or level can have been configured, and the root logger's default level
  (WARNING) would drop them too.  Once the application imports logging (to configure
  it), every later call is forwarded.
"""

from __future__ import annotations

import sys
from typing import Any

_WARNING = 30  # logging.WARNING, the root logger's default level


class Logger:
    """``logging.getLogger(name)``, resolved on first real use."""

    __slots__ = ("name", "_real")

    def __init__(self, name: str) -> None:
        self.name = name
        self._real: Any = None

    def _logger(self) -> Any:
        real = self._real
        if real is None:
            import logging

            real = self._real = logging.getLogger(self.name)
        return real

    # stacklevel=2: the record names tracekit's caller, not this shim (funcName, lineno)
    def debug(self, msg: str, *args: object, **kwargs: Any) -> None:
        if "logging" in sys.modules:
            self._logger().debug(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)

    def info(self, msg: str, *args: object, **kwargs: Any) -> None:
        if "logging" in sys.modules:
            self._logger().info(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)

    def warning(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._logger().warning(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)

    def error(self, msg: str, *args: object, **kwargs: Any) -> None:
        self._logger().error(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        if "logging" not in sys.modules:
            return level >= _WARNING
        return bool(self._logger().isEnabledFor(level))


def getLogger(name: str) -> Logger:
    return Logger(name)

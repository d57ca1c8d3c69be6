"""Where the bundled probe objects are: ``tracekit/probes/NAME.bpf.o`` and ``NAME.bpf.c``.

The objects are built by ``python -m tracekit.probes.build`` and committed, so using a
bundled probe needs no compiler at run time.  This module only locates files; the probes'
Python declarations live in :mod:`tracekit.probes`, above the user API, so the loader
(:mod:`tracekit.object`) can resolve a bundled name without importing them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tracekit.errors import ProbeNotFoundError

if TYPE_CHECKING:
    from pathlib import Path

    PROBES_DIR: Path

__all__ = ["PROBES_DIR", "ProbeNotFoundError", "names", "object_path", "path", "source"]

# os.path, not pathlib, on the loader's path: pathlib (with urllib.parse, ipaddress, ...)
# costs ~3 ms at import, a noticeable part of a bundled tool's start-up (issue 13).  The
# public API still hands out Path objects, built when asked for.
_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "probes")

_OBJ_SUFFIX = ".bpf.o"
_SRC_SUFFIX = ".bpf.c"


def __getattr__(name: str) -> Any:
    if name == "PROBES_DIR":  # the probes' folder, as a Path
        from pathlib import Path

        return Path(_DIR)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def names() -> list[str]:
    """Names of the bundled probe objects, sorted (e.g. ``["execsnoop", "opensnoop"]``)."""
    return sorted(f[: -len(_OBJ_SUFFIX)] for f in os.listdir(_DIR) if f.endswith(_OBJ_SUFFIX))


def _stem(name: str) -> str:
    # Accept "execsnoop", "execsnoop.bpf.o" and "execsnoop.bpf.c" alike; a path with a
    # directory part is not a bundled name, so refuse it rather than escape PROBES_DIR.
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ProbeNotFoundError(f"{name!r} is not a bundled probe name; available: {', '.join(names()) or 'none'}")
    for suffix in (_OBJ_SUFFIX, _SRC_SUFFIX, ".bpf"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def object_path(name: str) -> str:
    """:func:`path` as a string (what the loader uses: no pathlib import)."""
    obj = os.path.join(_DIR, _stem(name) + _OBJ_SUFFIX)
    if not os.path.isfile(obj):
        available = ", ".join(names()) or "none (run: python -m tracekit.probes.build)"
        raise ProbeNotFoundError(f"no bundled probe named {name!r}; available: {available}")
    return obj


def path(name: str) -> Path:
    """Path of the bundled object ``name`` ("execsnoop" or "execsnoop.bpf.o").

    Raises ProbeNotFoundError, listing the available names, when there is no such probe.
    """
    from pathlib import Path

    return Path(object_path(name))


def source(name: str) -> Path:
    """Path of the C source of the bundled probe ``name`` (for reading, or rebuilding)."""
    from pathlib import Path

    src = os.path.join(_DIR, _stem(name) + _SRC_SUFFIX)
    if not os.path.isfile(src):
        raise ProbeNotFoundError(f"no source for a bundled probe named {name!r}; available: {', '.join(names())}")
    return Path(src)

"""Where the bundled probe objects are: ``tracekit/probes/NAME.bpf.o`` and ``NAME.bpf.c``.

The objects are built by ``python -m tracekit.probes.build`` and committed, so using a
bundled probe needs no compiler at run time.  This module only locates files; the probes'
Python declarations live in :mod:`tracekit.probes`, above the user API, so the loader
(:mod:`tracekit.object`) can resolve a bundled name without importing them.
"""

from __future__ import annotations

from pathlib import Path

from tracekit.errors import ProbeNotFoundError

__all__ = ["PROBES_DIR", "ProbeNotFoundError", "names", "path", "source"]

PROBES_DIR = Path(__file__).resolve().parent / "probes"

_OBJ_SUFFIX = ".bpf.o"
_SRC_SUFFIX = ".bpf.c"



def names() -> list[str]:
    """Names of the bundled probe objects, sorted (e.g. ``["execsnoop", "opensnoop"]``)."""
    return sorted(p.name[: -len(_OBJ_SUFFIX)] for p in PROBES_DIR.glob("*" + _OBJ_SUFFIX))


def _stem(name: str) -> str:
    # Accept "execsnoop", "execsnoop.bpf.o" and "execsnoop.bpf.c" alike; a path with a
    # directory part is not a bundled name, so refuse it rather than escape PROBES_DIR.
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ProbeNotFoundError(f"{name!r} is not a bundled probe name; available: {', '.join(names()) or 'none'}")
    for suffix in (_OBJ_SUFFIX, _SRC_SUFFIX, ".bpf"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def path(name: str) -> Path:
    """Path of the bundled object ``name`` ("execsnoop" or "execsnoop.bpf.o").

    Raises ProbeNotFoundError, listing the available names, when there is no such probe.
    """
    obj = PROBES_DIR / (_stem(name) + _OBJ_SUFFIX)
    if not obj.is_file():
        available = ", ".join(names()) or "none (run: python -m tracekit.probes.build)"
        raise ProbeNotFoundError(f"no bundled probe named {name!r}; available: {available}")
    return obj


def source(name: str) -> Path:
    """Path of the C source of the bundled probe ``name`` (for reading, or rebuilding)."""
    src = PROBES_DIR / (_stem(name) + _SRC_SUFFIX)
    if not src.is_file():
        raise ProbeNotFoundError(f"no source for a bundled probe named {name!r}; available: {', '.join(names())}")
    return src

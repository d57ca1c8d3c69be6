"""The probes bundled with tracekit: for each, its BPF C source, its prebuilt CO-RE object
and its Python declaration, side by side in this folder.

::

    from tracekit import probes
    probes.names()                      # ['execsnoop', 'opensnoop']
    probes.ExecSnoop, probes.OpenSnoop  # the declarations (tracekit.Probe subclasses)
    probes.declaration("execsnoop")     # the same, by name

``tracekit.attach("execsnoop")`` goes through the declaration, so its events are what the
declaration makes of them (execsnoop's argv as ``list[str]``).  The declarations use only
the public :class:`tracekit.Probe` API: a user's own probe can do everything they do.

The objects are rebuilt with ``python -m tracekit.probes.build``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tracekit.bundled import names, path, source
from tracekit.errors import ProbeNotFoundError

if TYPE_CHECKING:
    from pathlib import Path

    from tracekit.probe import Probe
    from tracekit.probes.execsnoop import Exec, ExecSnoop
    from tracekit.probes.opensnoop import Open, OpenSnoop

    PROBES_DIR: Path

# Imported on first use (issue 13): ``from tracekit.probes.opensnoop import ...`` runs this
# file first, and a tool needs its own declaration only, not every bundled one.
_LAZY = {
    "Exec": "tracekit.probes.execsnoop", "ExecSnoop": "tracekit.probes.execsnoop",
    "Open": "tracekit.probes.opensnoop", "OpenSnoop": "tracekit.probes.opensnoop",
    "PROBES_DIR": "tracekit.bundled",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name != "PROBES_DIR":  # a fresh Path each time is fine; classes are cached
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "PROBES_DIR", "Exec", "ExecSnoop", "Open", "OpenSnoop", "ProbeNotFoundError",
    "declaration", "names", "path", "source",
]

#: bundled object name -> "module:Class" of its declaration.  A table rather than an
#: import-time registry, so listing or resolving never imports a probe it does not need.
_DECLARATIONS = {
    "execsnoop": "tracekit.probes.execsnoop:ExecSnoop",
    "opensnoop": "tracekit.probes.opensnoop:OpenSnoop",
    "syscount": "tracekit.probes.syscount:SysCount",
    "biolatency": "tracekit.probes.biolatency:BioLatency",
    "biosnoop": "tracekit.probes.biosnoop:BioSnoop",
    "runqlat": "tracekit.probes.runqlat:RunQLat",
    "cachestat": "tracekit.probes.cachestat:CacheStat",
    "funccount": "tracekit.probes.funccount:FuncCount",
    "profile": "tracekit.probes.profile:Profile",
    "offcputime": "tracekit.probes.offcputime:OffCPUTime",
    "oomkill": "tracekit.probes.oomkill:OOMKill",
    "fsslower": "tracekit.probes.fsslower:Ext4Slower",
    "tcpconnect": "tracekit.probes.tcpconnect:TcpConnect", "tcplife": "tracekit.probes.tcplife:TcpLife", "tcpretrans": "tracekit.probes.tcpretrans:TcpRetrans", "bindsnoop": "tracekit.probes.bindsnoop:BindSnoop", "sigsnoop": "tracekit.probes.sigsnoop:SigSnoop",  # noqa: E501
}


def declaration(name: str) -> type[Probe] | None:
    """The :class:`~tracekit.Probe` subclass declared for bundled object ``name``, or
    None when the object has no declaration (it is then read with BTF decoding alone)."""
    stem = name.removesuffix(".bpf.o").removesuffix(".o")
    ref = _DECLARATIONS.get(stem)
    if ref is None:
        return None
    module, _, cls = ref.partition(":")
    found: type[Probe] = getattr(importlib.import_module(module), cls)
    return found

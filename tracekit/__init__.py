"""tracekit: CO-RE BPF tracing in pure Python, with async event streams.

::

    import anyio, tracekit

    async def main():
        async for ev in tracekit.attach("execsnoop"):
            print(ev.pid, ev.comm, ev.args)

    anyio.run(main)              # or anyio.run(main, backend="trio")

Layers, bottom up: a pure layer (``elf``, ``btf``, ``core``, ``plan``) that turns ELF
bytes + target BTF into a load plan with no syscalls; a thin syscall layer
(``syscalls``, ``maps``, ``links``, ``ringbuf``); and this user API (``Object``,
``Probe``, ``attach``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tracekit import errors, uapi
from tracekit.btf.reader import BTF
from tracekit.errors import (
    AttachError,
    BTFError,
    ClosedError,
    CORERelocationError,
    ELFError,
    LoadError,
    NotSupportedError,
    ParseError,
    PermissionDeniedError,
    RelocationError,
    SectionError,
    SyscallError,
    TracekitError,
    VerifierError,
)
from tracekit.object import Object, ObjectMap, Program
from tracekit.object import open_object as _open_object
from tracekit.probe import EventStream, Probe

__version__ = "0.1.0"

# Imported on first use: most programs never link or probe features, and ``import
# tracekit`` should stay cheap for short-lived tools.
_LAZY = {"link": ("obj.linker", "link"), "LibraryView": ("library", "LibraryView"), "features": ("kernel.features", None)}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tracekit' has no attribute {name!r}") from None
    import importlib

    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def open(  # noqa: A001 - the field's name for this operation (libbpf: bpf_object__open)
    src: str | os.PathLike[str] | bytes,
    *,
    btf: str | os.PathLike[str] | BTF | None = None,
    name: str | None = None,
    link: Sequence[str | os.PathLike[str] | bytes] | None = None,
    pin_root_path: str | os.PathLike[str] | None = None,
) -> Object:
    """Open a BPF object: a path to a ``.bpf.o``, a bundled probe name, or ELF bytes.

    ``pin_root_path`` is the directory (on a bpffs) where maps declared with
    ``__uint(pinning, LIBBPF_PIN_BY_NAME)`` are pinned and reused; default /sys/fs/bpf.

    ``link`` names library objects linked in before relocation, so the object can call
    their global functions and use their variables and maps (:func:`link`).

    ``btf`` replaces the running kernel's BTF as the CO-RE target (raw BTF or an ELF with
    ``.BTF``), like libbpf's ``btf_custom_path``.  Nothing touches the kernel until
    :meth:`Object.load`.
    """
    return _open_object(src, btf=btf, name=name, link=link, pin_root_path=pin_root_path)


def attach(
    src: str | os.PathLike[str] | bytes,
    *,
    btf: str | os.PathLike[str] | BTF | None = None,
    map_name: str | Sequence[str] | None = None,
    event_type: str | None = "event",
    raw: bool = False,
    **globals_: Any,
) -> EventStream:
    """Open, load and attach an object, and stream its ring-buffer events.

    Keyword arguments other than the named ones set global variables (``.rodata``
    knobs, ``.data``/``.bss`` initial values) before load.  The returned stream owns the
    object: it is closed when iteration ends, fails or is cancelled, or when the stream is
    left as an ``async with`` block.
    """
    obj = _open_object(src, btf=btf)
    try:
        for key, value in globals_.items():
            try:
                obj.set_global(key, value)
            except KeyError as e:
                raise TypeError(f"attach(): {e.args[0]}") from None
        obj.load()
        obj.attach()
        reader = obj.reader(map_name, event_type=event_type, raw=raw)
    except BaseException:
        obj.close()
        raise
    return EventStream(obj, reader)


__all__ = [
    "BTF",
    "AttachError",
    "BTFError",
    "CORERelocationError",
    "ClosedError",
    "ELFError",
    "EventStream",
    "LibraryView",
    "LoadError",
    "NotSupportedError",
    "Object",
    "ObjectMap",
    "ParseError",
    "PermissionDeniedError",
    "Probe",
    "Program",
    "RelocationError",
    "SectionError",
    "SyscallError",
    "TracekitError",
    "VerifierError",
    "attach",
    "errors",
    "features",
    "link",
    "open",
    "uapi",
]

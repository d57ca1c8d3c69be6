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

from tracekit import errors
from tracekit.errors import (
    AttachError,
    BTFError,
    ClosedError,
    CORERelocationError,
    ELFError,
    KnobError,
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

# typing.TYPE_CHECKING without importing typing (which imports re, and re enum: ~3 ms of a
# bare ``import tracekit``); type checkers treat this name as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from tracekit import uapi
    from tracekit.btf.reader import BTF
    from tracekit.kernel import features
    from tracekit.library import LibraryView
    from tracekit.obj.linker import link
    from tracekit.object import Object, ObjectMap, Program, register_section_handler, unregister_section_handler
    from tracekit.probe import EventStream, Probe

__version__ = "0.1.0"

# Imported on first use (issue 13): ``import tracekit`` -- and every ``import
# tracekit.<submodule>``, which runs this file first -- stays within ~2x of a bare
# interpreter; the object/probe layers (dataclasses, enums, regexes) load when a program
# first touches them.  errors stays eager: it is small and what ``except`` clauses name.
_LAZY = {
    "uapi": ("uapi", None),
    "BTF": ("btf.reader", "BTF"),
    "Object": ("object", "Object"),
    "ObjectMap": ("object", "ObjectMap"),
    "Program": ("object", "Program"),
    "register_section_handler": ("object", "register_section_handler"),
    "unregister_section_handler": ("object", "unregister_section_handler"),
    "EventStream": ("probe", "EventStream"),
    "Probe": ("probe", "Probe"),
    "link": ("obj.linker", "link"),
    "LibraryView": ("library", "LibraryView"),
    "features": ("kernel.features", None),
    # lost events, as tools report them ("Possibly lost N samples", at most once a second)
    "LostReporter": ("events.lost", "LostReporter"),
}


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


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    from tracekit.object import open_object

    return open_object(src, btf=btf, name=name, link=link, pin_root_path=pin_root_path)


def attach(
    src: str | os.PathLike[str] | bytes,
    *,
    btf: str | os.PathLike[str] | BTF | None = None,
    map_name: str | Sequence[str] | None = None,
    event_type: str | None = "event",
    raw: bool = False,
    batch_latency: float = 0.0,
    **knobs: Any,
) -> EventStream[Any]:
    """Open, load and attach an object, and stream its ring-buffer events.

    A bundled probe's name (``"execsnoop"``) goes through its declaration in
    :mod:`tracekit.probes`, so events are what the declaration makes of them (execsnoop's
    ``ev.args`` is the whole argv list) and keyword arguments are its knobs.  A path to a
    ``.bpf.o`` (or ELF bytes) is read with BTF decoding; keyword arguments then set its
    global variables (``.rodata`` knobs, ``.data``/``.bss`` initial values) before load.

    ``batch_latency`` (seconds) batches wake-ups while events come closer together than
    that: fewer wake-ups per event, each event delivered at most that late (see
    :attr:`tracekit.events.stream.RecordStream.batch_latency`; 0, the default, wakes for
    every event).

    The returned stream owns what it opened: it is closed when iteration ends, fails or is
    cancelled, or when the stream is left as an ``async with`` block.
    """
    from tracekit.object import open_object as _open_object
    from tracekit.probe import EventStream

    declared = _declaration(src)
    if declared is not None and map_name is None and event_type == "event":
        probe = declared(btf=btf, **knobs)
        probe.start()
        try:
            events = probe.events(raw=raw, batch_latency=batch_latency)
        except BaseException:
            probe.close()
            raise
        return EventStream(probe, events)
    obj = _open_object(src, btf=btf)
    try:
        for key, value in knobs.items():
            try:
                obj.set_global(key, value)
            except KeyError as e:
                raise errors.KnobError(f"attach(): {e.args[0]}") from None
            except (TypeError, ValueError, OverflowError) as e:
                raise errors.KnobError(f"attach(): global {key!r}: {e}") from None
        obj.load()
        obj.attach()
        stream = obj.events(map_name, event_type=event_type, raw=raw)
        stream.reader.batch_latency = batch_latency
    except BaseException:
        obj.close()
        raise
    return EventStream(obj, stream)


def _declaration(src: str | os.PathLike[str] | bytes) -> type[Probe[Any]] | None:
    """The bundled declaration ``src`` names, if it is a bundled name and not a file."""
    if not isinstance(src, str) or "/" in src or os.path.exists(src):
        return None
    from tracekit import probes

    return probes.declaration(src)


__all__ = [
    "BTF",
    "AttachError",
    "BTFError",
    "CORERelocationError",
    "ClosedError",
    "ELFError",
    "EventStream",
    "KnobError",
    "LibraryView",
    "LostReporter",
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
    "register_section_handler",
    "unregister_section_handler",
    "uapi",
]

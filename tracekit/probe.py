"""Probes declared in Python: a prebuilt object, its knobs and its events, as a class.

::

    class OpenSnoop(tracekit.Probe):
        object = "opensnoop"            # bundled name or path to a .bpf.o
        event = "event"                 # struct decoded from each ring-buffer record
        targ_pid: int = 0               # knobs: .rodata variables, set before load
        targ_failed: bool = False

        def render(self, ev) -> str:
            return f"{ev.pid} {ev.comm} {ev.fname}"

    async with OpenSnoop(targ_pid=1234) as probe:
        async for ev in probe:
            print(probe.render(ev))

Annotated class attributes are knobs: each must name a variable of the object's data
sections (``.rodata`` first, then ``.data``/``.bss``); their values are type-checked and
written before load.  Plain (unannotated) class attributes configure the probe.
"""

from __future__ import annotations

import typing
import weakref
from collections.abc import Iterable
from typing import Any, ClassVar

from tracekit.errors import ClosedError, TracekitError
from tracekit.object import Object, open_object

_CONFIG_NAMES = frozenset({"object", "event", "events_map", "programs", "optional_programs", "btf"})


class Probe:
    """Base class of declarative probes; subclass it and set ``object``."""

    #: bundled probe name or path of the .bpf.o
    object: ClassVar[str] = ""
    #: name of the BTF struct each ring-buffer record holds (None: raw bytes)
    event: ClassVar[str | None] = "event"
    #: ring-buffer map(s) to read (None: every ringbuf map of the object)
    events_map: ClassVar[str | list[str] | None] = None
    #: programs to load; None loads all of them
    programs: ClassVar[Iterable[str] | None] = None
    #: programs whose hook may be missing on some kernels: disabled there instead of failing
    optional_programs: ClassVar[Iterable[str]] = ()
    #: a target BTF to relocate against instead of the running kernel's
    btf: ClassVar[str | None] = None

    _knobs: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        knobs: dict[str, tuple[Any, Any]] = {}
        for klass in reversed(cls.__mro__):
            if klass is Probe or not issubclass(klass, Probe):
                continue
            hints = typing.get_type_hints(klass, include_extras=False)
            for name in klass.__dict__.get("__annotations__", {}):
                if name.startswith("_") or name in _CONFIG_NAMES:
                    continue
                hint = hints.get(name, Any)
                if typing.get_origin(hint) is ClassVar:
                    continue
                knobs[name] = (hint, klass.__dict__.get(name, None))
        cls._knobs = knobs

    def __init__(self, **knobs: Any) -> None:
        unknown = set(knobs) - set(self._knobs)
        if unknown:
            have = ", ".join(self._knobs) or "none"
            raise TypeError(f"{type(self).__name__}: unknown knob(s) {', '.join(sorted(unknown))} (knobs: {have})")
        self.values: dict[str, Any] = {}
        for name, (hint, default) in self._knobs.items():
            value = knobs.get(name, default)
            self.values[name] = _check(type(self).__name__, name, hint, value)
        self.obj: Object | None = None
        self._stream: Any = None

    # --- lifecycle -------------------------------------------------------------------------

    def open(self) -> Object:
        """Open the object and apply knobs and program selection (no kernel yet)."""
        if not self.object:
            raise TracekitError(f"{type(self).__name__}.object is not set: name a bundled probe or a .bpf.o path")
        obj = open_object(self.object, btf=self.btf)
        try:
            self._configure(obj)
        except BaseException:
            obj.close()
            raise
        self.obj = obj
        return obj

    def _configure(self, obj: Object) -> None:
        for name, value in self.values.items():
            if value is None:
                continue
            try:
                obj.set_global(name, value)
            except KeyError as e:
                raise TracekitError(f"{type(self).__name__}.{name}: {e.args[0]}") from None
        if self.programs is not None:
            wanted = set(self.programs)
            missing = wanted - set(obj.programs)
            if missing:
                raise TracekitError(
                    f"{type(self).__name__}.programs names {', '.join(sorted(missing))}, not in {obj.name!r} "
                    f"(programs: {', '.join(obj.programs)})"
                )
            for p in obj.programs.values():
                p.autoload = p.name in wanted
        optional = set(self.optional_programs)
        if optional:
            from tracekit.kernel.syscalls import fs

            for p in obj.programs.values():
                if p.name in optional and p.autoload and p.attach_kind == "tracepoint":
                    cat, _, tp = p.attach_target.partition("/")
                    if not fs.tracepoint_exists(cat, tp):
                        p.autoload = False
        self.configure(obj)

    def configure(self, obj: Object) -> None:
        """Hook: adjust the object before load (map sizes, programs). Default: nothing."""

    def start(self) -> Probe:
        """Open, load and attach; events can then be read."""
        obj = self.obj or self.open()
        try:
            obj.load()
            obj.attach()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.obj is not None:
            self.obj.close()

    async def __aenter__(self) -> Probe:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- events ----------------------------------------------------------------------------

    def reader(self, *, raw: bool = False) -> Any:
        if self.obj is None or not self.obj.loaded:
            raise ClosedError(f"{type(self).__name__} is not started: use 'async with' or start()")
        return self.obj.reader(self.events_map, event_type=self.event, raw=raw)

    def __aiter__(self) -> Any:
        """Events of the started probe, decoded and filtered (a fresh reader per loop)."""
        from tracekit.events.stream import EventIterator

        # A subclass that overrides decode() gets raw records; otherwise the reader decodes
        # with the BTF event type on its fast path.
        custom = type(self).decode is not Probe.decode
        filt = None if type(self).filter is Probe.filter else self.filter
        r = self.reader(raw=custom)
        return EventIterator(r, decode=self.decode if custom else None, keep=filt,
                             on_close=self.obj._forget_reader)  # type: ignore[union-attr]

    def decode(self, raw: bytes) -> Any:
        """Hook: turn one raw record into an event (None drops it). Default: BTF decoding."""
        assert self.obj is not None
        return self.obj.event_type(self.event or "event").decode(raw)

    def filter(self, ev: Any) -> bool:
        """Hook: user-space filtering of events. Default: keep all."""
        return True

    def render(self, ev: Any) -> str:
        """Hook: one line of output for an event. Default: its repr."""
        return repr(ev)


def _check(owner: str, name: str, hint: Any, value: Any) -> Any:
    if value is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    types: tuple[type, ...]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        types = tuple(a for a in typing.get_args(hint) if isinstance(a, type))
    elif isinstance(hint, type):
        types = (hint,)
    else:
        return value
    if bool in types and not isinstance(value, bool) and isinstance(value, int) and value in (0, 1):
        value = bool(value)
    if int in types and isinstance(value, bool) and bool not in types:
        value = int(value)
    if not isinstance(value, types):
        want = " | ".join(t.__name__ for t in types)
        raise TypeError(f"{owner}.{name} must be {want}, not {type(value).__name__} ({value!r})")
    return value


class EventStream:
    """What :func:`tracekit.attach` returns: an async iterator that owns its object.

    It also is an async context manager; leaving it — or the iteration ending, failing or
    being cancelled — detaches and closes everything.  A stream dropped without either is
    closed when it is garbage-collected.
    """

    def __init__(self, obj: Object, reader: Any) -> None:
        self.obj = obj
        self._reader = reader
        self._it = reader.__aiter__()
        self._finalizer = weakref.finalize(self, obj.close)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._it.__anext__()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._finalizer()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

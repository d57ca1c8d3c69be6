"""Probes declared in Python: a prebuilt object, its knobs and its events, as a class.

::

    class OpenSnoop(tracekit.Probe[Open]):
        object = "opensnoop"            # bundled name or path to a .bpf.o
        event = "event"                 # struct decoded from each ring-buffer record
        targ_pid: int = 0               # knobs: .rodata variables, set before load
        targ_failed: bool = False

        def filter(self, ev: Open) -> bool:       # optional: user-space filtering
            return ev.ret < 0

    async with OpenSnoop(targ_pid=1234) as probe:
        async for ev in probe:
            print(ev.pid, ev.comm, ev.fname)

Annotated class attributes are knobs: each must name a variable of the object's data
sections (``.rodata`` first, then ``.data``/``.bss``); their values are type-checked and
written before load.  Plain (unannotated) class attributes configure the probe; names that
start with ``_`` are the subclass's own state.

Hooks, all public and all optional: :meth:`configure` (adjust the object before load),
:meth:`decode` (raw record -> event, for what BTF alone cannot express), :meth:`filter`
and :meth:`render`.  The bundled probes (:mod:`tracekit.probes`) use nothing else, so a
user's probe is exactly as capable as theirs.  The type parameter (``Probe[Open]``) is
the event type iteration yields, for type checkers.
"""

from __future__ import annotations

import os
import sys
import typing
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from tracekit import _log
from tracekit.btf.reader import BTF
from tracekit.errors import ClosedError, KnobError, NotSupportedError, TracekitError
from tracekit.object import Object, open_object

_CONFIG_NAMES = frozenset({"object", "event", "events_map", "programs", "optional_programs", "fallbacks", "btf"})

#: one alternative of a fallback chain: a program name (its SEC() says the hook), or
#: (program name, attach target) for a function renamed across kernel versions
Alternative = str | tuple[str, str]

log = _log.getLogger(__name__)

E = TypeVar("E")


class Probe(Generic[E]):
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
    #: fallback chains: hook name -> alternatives in order of preference; the first the
    #: running kernel supports is loaded, the other programs of the chain are not.  E.g.
    #: ``{"start": ["fentry_start", "kprobe_start", ("kprobe_start", "__blk_account_io_start")]}``
    #: (fentry, else kprobe, else kprobe on the older name).  The choice: :attr:`chosen`.
    fallbacks: ClassVar[Mapping[str, Sequence[Alternative]]] = {}
    #: a target BTF to relocate against instead of the running kernel's
    btf: ClassVar[str | os.PathLike[str] | BTF | None] = None

    _knobs: ClassVar[dict[str, tuple[Any, Any]]] = {}
    _own_knobs: ClassVar[dict[str, tuple[Any, Any]]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        knobs: dict[str, tuple[Any, Any]] = {}
        for klass in reversed(cls.__mro__):
            if klass is Probe or not issubclass(klass, Probe):
                continue
            # each class's own knobs are worked out once, when it is created: a tool's
            # subclass that only overrides methods (no annotations) evaluates no hints
            own: dict[str, tuple[Any, Any]] | None = klass.__dict__.get("_own_knobs")
            if own is None:
                own = _own_knobs(klass)
                if klass is cls:
                    cls._own_knobs = own
            knobs.update(own)
        cls._knobs = knobs

    def __init__(self, *, btf: str | os.PathLike[str] | BTF | None = None,
                 map_entries: Mapping[str, int] | None = None,
                 cgroup: str | None = None, cgroupmap: str | None = None, mntnsmap: str | None = None,
                 **knobs: Any) -> None:
        """Knob values by name; ``btf`` overrides the class's target BTF and
        ``map_entries`` sets maps' ``max_entries`` before load (e.g. a ring buffer's size
        in bytes: ``map_entries={"events": 1 << 22}``).

        ``cgroup`` (a cgroup-v2 directory), ``cgroupmap`` and ``mntnsmap`` (BCC's pinned
        maps) switch on the container filters the probe declares with tracekit.h's
        ``TK_DECLARE_*_FILTER()`` (:mod:`tracekit.context.filters`)."""
        unknown = set(knobs) - set(self._knobs)
        if unknown:
            have = ", ".join(self._knobs) or "none"
            raise KnobError(f"{type(self).__name__}: unknown knob(s) {', '.join(sorted(unknown))} (knobs: {have})")
        self.values: dict[str, Any] = {}
        for name, (hint, default) in self._knobs.items():
            value = knobs.get(name, default)
            self.values[name] = _check(type(self).__name__, name, hint, value)
        self._btf = btf if btf is not None else type(self).btf
        self._map_entries = dict(map_entries or {})
        from tracekit.context.filters import ContainerFilters

        self._filters = ContainerFilters(cgroup=cgroup, cgroupmap=cgroupmap, mntnsmap=mntnsmap)
        self.obj: Object | None = None
        #: per fallback chain, the alternative that was loaded: hook -> (program, "kind/target")
        self.chosen: dict[str, tuple[str, str]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def open(self) -> Object:
        """Open the object and apply knobs and program selection (no kernel yet)."""
        if not self.object:
            raise TracekitError(f"{type(self).__name__}.object is not set: name a bundled probe or a .bpf.o path")
        obj = open_object(self.object, btf=self._btf)
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
                raise KnobError(f"{type(self).__name__}.{name}: {e.args[0]}") from None
        for name, entries in self._map_entries.items():
            if name not in obj.maps:
                raise TracekitError(f"{type(self).__name__}: map_entries names {name!r}, not a map of "
                                    f"{obj.name!r} (maps: {', '.join(obj.maps)})")
            obj.maps[name].max_entries = entries
        if self._filters.active():
            from tracekit.context import filters

            filters.configure(obj, self._filters, type(self).__name__)
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
        if optional or self.fallbacks:
            from tracekit.hooks.fallback import why_unsupported

            for p in obj.programs.values():
                if p.name in optional and p.autoload and p.attach_kind and p.attach_target:
                    why = why_unsupported(p.attach_kind, p.attach_target)
                    if why is not None:
                        log.debug("%s: optional program %s not loaded: %s", type(self).__name__, p.name, why)
                        p.autoload = False
            self._choose(obj, why_unsupported)
        self.configure(obj)

    def _choose(self, obj: Object, why_unsupported: Callable[[str, str], str | None]) -> None:
        """Resolve each fallback chain to the first alternative the kernel supports."""
        owner = type(self).__name__
        for hook, chain in self.fallbacks.items():
            alts = [(a, None) if isinstance(a, str) else (a[0], a[1]) for a in chain]
            for prog, _ in alts:
                if prog not in obj.programs:
                    raise TracekitError(f"{owner}.fallbacks[{hook!r}] names {prog!r}, not a program of "
                                        f"{obj.name!r} (programs: {', '.join(obj.programs)})")
                obj.programs[prog].autoload = False
            tried: list[str] = []
            for prog, target in alts:
                p = obj.programs[prog]
                tgt = target if target is not None else p.attach_target
                why = why_unsupported(p.attach_kind, tgt)
                if why is None:
                    if target is not None:
                        p.set_attach_target(target)
                    p.autoload = True
                    self.chosen[hook] = (prog, f"{p.attach_kind}/{tgt}")
                    log.info("%s: hook %r uses %s (%s/%s)%s", owner, hook, prog, p.attach_kind, tgt,
                             "".join(f"; skipped {t}" for t in tried))
                    break
                tried.append(f"{prog} ({p.attach_kind}/{tgt}): {why}")
            else:
                raise NotSupportedError(f"{owner}: no hook for {hook!r} works on this kernel; tried "
                                        + "; ".join(tried))

    def configure(self, obj: Object) -> None:
        """Hook: adjust the object before load (map sizes, programs). Default: nothing."""

    def start(self) -> Probe[E]:
        """Open, load and attach; events can then be read."""
        obj = self.obj or self.open()
        try:
            obj.load()
            if self._filters.cgroup:
                from tracekit.context import filters

                filters.after_load(obj, self._filters)
            obj.attach()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.obj is not None:
            self.obj.close()

    @property
    def lost(self) -> int:
        """Events lost since the probe started (:attr:`tracekit.object.Object.lost`: the
        probe's ring-buffer drop counters and its perf buffers' lost records); still
        readable after close."""
        return self.obj.lost if self.obj is not None else 0

    async def __aenter__(self) -> Probe[E]:
        return self.start()

    # (Any, not object: in this class `object` is the class attribute naming the .bpf.o)
    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __enter__(self) -> Probe[E]:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- events ----------------------------------------------------------------------------

    def reader(self, *, raw: bool = False) -> Any:
        """A new reader over the probe's ring buffer(s), records decoded from BTF (or raw)."""
        if self.obj is None or not self.obj.loaded:
            raise ClosedError(f"{type(self).__name__} is not started: use 'async with' or start()")
        return self.obj.reader(self.events_map, event_type=self.event, raw=raw)

    def events(self, *, raw: bool = False, batch_latency: float = 0.0) -> AsyncIterator[E]:
        """Events of the started probe, decoded and filtered, from a reader of their own
        that is released when the loop ends.  ``raw=True`` yields the records' bytes and
        skips :meth:`decode` and :meth:`filter`.  ``batch_latency`` (seconds) batches
        wake-ups in bursts: see :attr:`tracekit.events.stream.RecordStream.batch_latency`."""
        from tracekit.events.stream import EventIterator

        if raw:
            r = self.reader(raw=True)
            r.batch_latency = batch_latency
            return EventIterator(r, on_close=self.obj._forget_reader)  # type: ignore[union-attr]
        # A subclass that overrides decode() gets raw records; otherwise the reader decodes
        # with the BTF event type on its fast path.
        custom = type(self).decode is not Probe.decode
        filt: Callable[[Any], bool] | None = None if type(self).filter is Probe.filter else self.filter
        r = self.reader(raw=custom)
        r.batch_latency = batch_latency
        return EventIterator(r, decode=self.decode if custom else None, keep=filt,
                             on_close=self.obj._forget_reader)  # type: ignore[union-attr]

    def __aiter__(self) -> AsyncIterator[E]:
        return self.events()

    def decode(self, raw: bytes) -> E | None:
        """Hook: turn one raw record into an event (None drops it). Default: BTF decoding."""
        assert self.obj is not None
        decoded: E = self.obj.event_type(self.event or "event").decode(raw)
        return decoded

    def filter(self, ev: E) -> bool:
        """Hook: user-space filtering of events. Default: keep all."""
        return True

    def render(self, ev: E) -> str:
        """Hook: one line of output for an event. Default: its repr."""
        return repr(ev)


def _own_knobs(klass: type) -> dict[str, tuple[Any, Any]]:
    """The knobs ``klass`` itself declares: its annotated public attributes, with their hint
    and default."""
    # this class's own annotations (3.14 evaluates them lazily: no __dict__ entry).  Not
    # inspect.get_annotations: importing inspect costs ~3 ms of a tool's start-up (issue 13)
    if sys.version_info >= (3, 14):
        import annotationlib

        declared = annotationlib.get_annotations(klass)
    else:
        declared = klass.__dict__.get("__annotations__", {})  # noqa: RUF063 - see above
    names = [n for n in declared if not n.startswith("_") and n not in _CONFIG_NAMES]
    if not names:
        return {}
    hints = typing.get_type_hints(klass, include_extras=False)
    out: dict[str, tuple[Any, Any]] = {}
    for name in names:
        hint = hints.get(name, Any)
        if typing.get_origin(hint) is ClassVar:
            continue
        out[name] = (hint, klass.__dict__.get(name, None))
    return out


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
        raise KnobError(f"{owner}.{name} must be {want}, not {type(value).__name__} ({value!r})")
    return value


class EventStream(Generic[E]):
    """What :func:`tracekit.attach` returns: an async iterator that owns its probe (or object).

    It also is an async context manager; leaving it — or the iteration ending, failing or
    being cancelled — detaches and closes everything.  A stream dropped without either is
    closed when it is garbage-collected.
    """

    def __init__(self, owner: Probe[E] | Object, events: AsyncIterator[E]) -> None:
        self.probe: Probe[E] | None = owner if isinstance(owner, Probe) else None
        obj = owner.obj if isinstance(owner, Probe) else owner
        assert obj is not None
        self.obj: Object = obj
        self._it = events
        self._finalizer = weakref.finalize(self, owner.close)

    def __aiter__(self) -> EventStream[E]:
        return self

    async def __anext__(self) -> E:
        try:
            return await self._it.__anext__()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._finalizer()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream[E]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

"""The load pipeline: an :class:`ObjectSpec` becomes kernel objects (BTF, maps, programs, links).

Order, as libbpf does it: target BTF -> object BTF into the kernel -> maps (global data
written, ``.rodata``/``.kconfig`` frozen, ``.bss``/``.data`` mmapped) -> per program: the
pure load plan (:mod:`tracekit.obj.plan`: subprograms, CO-RE), fds dropped in, BPF_PROG_LOAD
with the verifier log turned into :class:`~tracekit.errors.VerifierError`.

Everything created is owned by the :class:`Object`; ``close()`` (or leaving the context
manager, or a cancelled task unwinding through it) releases links, programs, maps and BTF
in reverse order, and a failed ``load()`` releases what it had created before raising.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from tracekit import _log, uapi
from tracekit.btf.ext import (
    CORE_RELO_SIZE,
    FUNC_INFO_SIZE,
    LINE_INFO_SIZE,
    encode_func_info,
    encode_line_info,
)
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.data.globaldata import GlobalData
from tracekit.errors import (
    AttachError,
    BTFError,
    BTFLoadError,
    ClosedError,
    EventTypeError,
    LoadError,
    NotSupportedError,
    ObjectNotFoundError,
    PermissionDeniedError,
    ProbeNotFoundError,
    ReaderBusyError,
    ResourceLimitError,
    SyscallError,
    TracekitError,
    VerifierError,
)
from tracekit.kernel.fd import FD
from tracekit.kernel.kcore import encode as kcore_encode
from tracekit.obj.insn import POISON_CORE, encode
from tracekit.obj.plan import BTF_ATTACH_KINDS, ProgramPlan, link_program, plan_programs
from tracekit.obj.sections import CUSTOM_KIND
from tracekit.obj.spec import MapSpec, ObjectSpec, ProgramSpec

log = _log.getLogger("tracekit.object")

_NAME_OK = re.compile(r"[^A-Za-z0-9_.]")


def kernel_name(name: str) -> str:
    """A map/program name the kernel accepts: [A-Za-z0-9_.], at most 15 characters."""
    return _NAME_OK.sub("_", name)[: uapi.BPF_OBJ_NAME_LEN - 1]


_PROBE_KINDS = ("kprobe", "kretprobe", "ksyscall", "kretsyscall", "kprobe.multi", "kretprobe.multi",
                "uprobe", "uretprobe")


class Program:
    """One main program of an object: settable before load, attachable after."""

    def __init__(self, obj: Object, spec: ProgramSpec) -> None:
        self._obj = obj
        self.spec = spec
        self._fd: FD | None = None
        self.plan: ProgramPlan | None = None
        self.links: list[Any] = []

    # --- description ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def section(self) -> str:
        return self.spec.section

    @property
    def type(self) -> uapi.ProgType:
        return uapi.ProgType(self.spec.prog_type)

    @property
    def attach_kind(self) -> str:
        return self.spec.attach_kind

    @property
    def attach_target(self) -> str:
        return self.spec.attach_target

    @property
    def autoload(self) -> bool:
        return self.spec.autoload

    @autoload.setter
    def autoload(self, value: bool) -> None:
        if self._obj.loaded:
            raise TracekitError(f"program {self.name!r}: autoload must be set before load()")
        self.spec.autoload = bool(value)

    def set_attach_target(self, target: str, *, check: bool = True) -> None:
        """Change what the program attaches to (e.g. the function of an ``fentry``), before load.

        The target is checked at once against the running kernel (BTF for tp_btf, fentry,
        fexit, fmod_ret, lsm and iter; tracefs for tracepoints; /proc/kallsyms for kprobes)
        and a missing one is an :class:`AttachError` naming close matches.  ``check=False``
        skips that (e.g. a target that only exists once a module is loaded).
        """
        if self._obj.loaded:
            raise TracekitError(f"program {self.name!r}: the attach target must be set before load()")
        if check and target:
            from tracekit.hooks import targets

            missing = targets.missing_target(self.spec.attach_kind, target)
            if missing is not None:
                raise AttachError(f"program {self.name!r} ({self.spec.attach_kind}): {missing}")
        self.spec.attach_target = target

    @property
    def loaded(self) -> bool:
        return self._fd is not None and not self._fd.closed

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise TracekitError(f"program {self.name!r} is not loaded (autoload={self.autoload})")
        return self._fd.fd

    # --- attach ---------------------------------------------------------------------------

    def attach(self, target: str | None = None, *, cookie: int = 0, pid: int = -1) -> Any:
        """Attach to the hook named by the SEC name (or ``target``); returns the Link.

        ``target`` forms: ``category/name`` (tracepoint), ``func[+off]`` (kprobe),
        ``name`` (ksyscall), a glob (kprobe.multi), ``path:func[+off]`` (uprobe; ``pid``
        limits it to one process), ``path:provider:name`` (usdt), ``path:glob``
        (uprobe.multi).  The link is also owned by the object, so closing the
        object detaches it.
        """
        from tracekit.hooks import links

        kind = self.spec.attach_kind
        target = target if target is not None else self.spec.attach_target
        fd = self.fd
        if kind == "tracepoint":
            cat, sep, name = target.partition("/")
            if not sep or not name:
                raise AttachError(
                    f"program {self.name!r}: tracepoint target {target!r} must be 'category/name', "
                    "e.g. 'syscalls/sys_enter_openat'"
                )
            link = links.attach_tracepoint(fd, cat, name, cookie=cookie)
        elif kind == "raw_tp":
            if not target:
                raise AttachError(f"program {self.name!r}: raw tracepoint needs a name, e.g. 'sys_enter'")
            link = links.attach_raw_tracepoint(fd, target, cookie=cookie)
        elif kind in ("tp_btf", "fentry", "fexit", "fmod_ret", "lsm"):
            link = links.attach_tracing(fd, self.spec.expected_attach_type, cookie=cookie)
        elif kind in _PROBE_KINDS:
            link = self._attach_probe(kind, target, cookie, pid)
        elif kind == "perf_event":
            if not target:
                raise AttachError(f"program {self.name!r}: a perf_event program needs an event: call "
                                  "attach_perf_event(type=..., config=..., sample_freq=...) or name it in the "
                                  "section, e.g. SEC(\"perf_event/type=1,config=0,frequency=99\")")
            from tracekit.hooks import perf_event

            link = perf_event.attach_from_section(fd, target, pid=pid, cookie=cookie)  # type: ignore[assignment]
        elif kind == "usdt":
            from tracekit.hooks import usdt

            path, provider, name = usdt.parse_usdt_target(target)
            return self.attach_usdt(path, provider, name, pid=pid, cookie=cookie)
        elif kind in ("uprobe.multi", "uretprobe.multi"):
            path, sep, pattern = target.rpartition(":")
            if not sep or not path or not pattern:
                raise AttachError(f"program {self.name!r}: {kind} target {target!r} must be 'PATH:PATTERN', "
                                  "e.g. '/usr/lib/x86_64-linux-gnu/libc.so.6:malloc*'")
            return self.attach_uprobe_multi(path, pattern, pid=pid, cookie=cookie)
        elif kind.startswith(CUSTOM_KIND):
            handler = _SECTION_ATTACH.get(kind[len(CUSTOM_KIND):])
            if handler is None:
                raise AttachError(f"program {self.name!r} (SEC {self.section!r}) is in a section registered "
                                  "without an attach function: attach it by hand with its fd")
            link = handler(self, target)
        elif kind == "":
            raise AttachError(
                f"program {self.name!r} (SEC {self.section!r}) cannot be attached automatically; "
                "attach it by hand with its fd"
            )
        else:
            raise NotSupportedError(f"attaching {kind} programs", detail="not implemented by tracekit yet")
        self.links.append(link)
        self._obj._links.append(link)
        return link

    def attach_perf_event(self, *, type: int = 1, config: int = 0, sample_freq: int | None = None,
                          sample_period: int | None = None, cpus: Any = None, pid: int = -1,
                          cookie: int = 0) -> Any:
        """Attach this perf_event program to a sampling event on every online CPU (or ``cpus``).

        Defaults to the software cpu-clock (type 1, config 0); give ``sample_freq`` (Hz) or
        ``sample_period``.  Returns a :class:`tracekit.hooks.perf_event.PerfEventLink`
        (one link per CPU), also owned by the object.
        """
        from tracekit.hooks import perf_event

        link = perf_event.attach_perf_event(self.fd, type=type, config=config, sample_freq=sample_freq,
                                            sample_period=sample_period, cpus=cpus, pid=pid, cookie=cookie)
        self.links.append(link)
        self._obj._links.append(link)
        return link

    def attach_usdt(self, path: str, provider: str, name: str, *, pid: int = -1, cookie: int = 0) -> Any:
        """Attach to every site of USDT probe ``provider:name`` in ELF ``path`` (a program
        built with libbpf's ``<bpf/usdt.bpf.h>``); ``cookie`` is what ``bpf_usdt_cookie()``
        returns.  Returns a :class:`tracekit.hooks.usdt.USDTLink`, also owned by the object."""
        from tracekit.hooks import usdt

        if self.spec.attach_kind != "usdt":
            raise AttachError(f"program {self.name!r} (SEC {self.section!r}) is not a USDT program: "
                              "declare it SEC(\"usdt\") or SEC(\"usdt/PATH:PROVIDER:NAME\")")
        link = usdt.attach_usdt(self.fd, path, provider, name, pool=usdt.spec_ids_for(self._obj), pid=pid,
                                cookie=cookie,
                                multi=self.spec.expected_attach_type == uapi.AttachType.TRACE_UPROBE_MULTI)
        self.links.append(link)
        self._obj._links.append(link)
        return link

    def attach_uprobe_multi(self, path: str, pattern: str | None = None, *, symbols: Sequence[str] | None = None,
                            offsets: Sequence[int] | None = None, cookies: Sequence[int] | None = None,
                            pid: int = -1, cookie: int = 0) -> Any:
        """Attach this ``SEC("uprobe.multi")``/``SEC("uretprobe.multi")`` program to many
        functions of ``path`` with one link: a glob ``pattern`` over its symbols, exact
        ``symbols``, or file ``offsets`` (``cookies``: one per symbol/offset)."""
        from tracekit.hooks import uprobe

        kind = self.spec.attach_kind
        if kind not in ("uprobe.multi", "uretprobe.multi"):
            raise AttachError(f"program {self.name!r} (SEC {self.section!r}) was not loaded for uprobe.multi "
                              "links: declare it SEC(\"uprobe.multi\") or SEC(\"uretprobe.multi\")")
        link = uprobe.attach_uprobe_multi(self.fd, path, pattern, symbols=symbols, offsets=offsets,
                                          cookies=cookies, cookie=cookie, retprobe=kind == "uretprobe.multi",
                                          pid=pid)
        self.links.append(link)
        self._obj._links.append(link)
        return link

    def _attach_probe(self, kind: str, target: str, cookie: int, pid: int) -> Any:
        """kprobe/ksyscall/kprobe.multi (tracekit.hooks.kprobe) and uprobe (tracekit.hooks.uprobe) kinds."""
        if not target:
            example = {"uprobe": "/usr/bin/bash:readline", "ksyscall": "openat"}.get(
                kind.replace("ret", ""), "do_sys_openat2")
            raise AttachError(f"program {self.name!r} (SEC {self.section!r}) has no {kind} target: "
                              f"pass one, e.g. attach({example!r})")
        ret = kind.startswith(("kret", "uret"))
        if kind in ("uprobe", "uretprobe"):
            from tracekit.hooks import uprobe

            t = uprobe.parse_uprobe_target(target)
            return uprobe.attach_uprobe(self.fd, t.path, t.func, t.offset, retprobe=ret, pid=pid, cookie=cookie)
        from tracekit.hooks import kprobe

        if pid != -1:
            raise AttachError(f"program {self.name!r}: {kind} probes cannot be limited to a pid")
        if kind in ("ksyscall", "kretsyscall"):
            return kprobe.attach_ksyscall(self.fd, target, retprobe=ret, cookie=cookie)
        if kind in ("kprobe.multi", "kretprobe.multi"):
            return kprobe.attach_kprobe_multi(self.fd, target, retprobe=ret, cookie=cookie)
        func, off = kprobe.parse_kprobe_target(target)
        return kprobe.attach_kprobe(self.fd, func, off, retprobe=ret, cookie=cookie)

    def test_run(self, ctx: bytes = b"", data: bytes = b"", *, repeat: int = 0) -> int:
        """Run the program through BPF_PROG_TEST_RUN (syscall, raw_tp, ... programs); its r0.

        Empty buffers are passed as NULL and ``repeat`` defaults to 0: SEC("syscall")
        programs refuse any data buffer and a repeat count.
        """
        from tracekit.kernel.syscalls import bpf

        return bpf.prog_test_run(self.fd, ctx_in=ctx or None, data_in=data or None, repeat=repeat).retval

    def _close(self) -> None:
        if self._fd is not None:
            self._fd.close()

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else ("autoload" if self.autoload else "disabled")
        return f"<Program {self.name} SEC({self.section!r}) {state}>"


#: attach functions of registered sections (register_section_handler): pattern -> fn
_SECTION_ATTACH: dict[str, Callable[[Program, str], Any]] = {}


def register_section_handler(pattern: str, prog_type: int | str, expected_attach_type: int | str = 0, *,
                             attach: Callable[[Program, str], Any] | None = None,
                             sleepable: bool = False) -> None:
    """Open objects whose programs use a section name only their application knows.

    Like libbpf's ``libbpf_register_prog_handler``: programs in sections matching
    ``pattern`` (``"myloader+"``, ``"myloader/"`` or an exact name) load with
    ``prog_type``/``expected_attach_type`` (numbers or names: ``"kprobe"``,
    ``ProgType.KPROBE``).  ``attach(program, target)`` -- called by ``prog.attach()`` and
    ``obj.attach()`` -- returns a Link (e.g. from ``tracekit.hooks.links``); without it the
    programs are loaded but attached by hand.  Register before :func:`tracekit.open`.
    """
    from tracekit.obj import sections

    pt = uapi.ProgType[prog_type.upper()] if isinstance(prog_type, str) else prog_type
    at = uapi.AttachType[expected_attach_type.upper()] if isinstance(expected_attach_type, str) \
        else expected_attach_type
    sections.register_section(pattern, int(pt), int(at), sleepable=sleepable)
    if attach is not None:
        _SECTION_ATTACH[pattern] = attach
    else:
        _SECTION_ATTACH.pop(pattern, None)


def unregister_section_handler(pattern: str) -> None:
    from tracekit.obj import sections

    sections.unregister_section(pattern)
    _SECTION_ATTACH.pop(pattern, None)


def _positive(what: str, value: int, name: str) -> int:
    v = int(value)
    if v <= 0 or v > 0xFFFFFFFF:
        raise TracekitError(f"map {name!r}: {what} must be between 1 and 2**32-1, not {value!r}")
    return v


class ObjectMap:
    """A map of an object: its spec before load (sizes settable), the kernel map after."""

    def __init__(self, obj: Object, spec: MapSpec) -> None:
        self._obj = obj
        self.spec = spec
        self.map: Any = None  # tracekit.kernel.maps.Map once loaded
        #: the map was pinned (LIBBPF_PIN_BY_NAME) by an earlier load and is shared, not created
        self.reused = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def max_entries(self) -> int:
        """Declared size before load; the size the kernel map really has after (a perf
        event array declared with 0 entries gets one per CPU)."""
        if self.map is not None:
            return self.map.max_entries
        return self.spec.max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        if self._obj.loaded:
            raise TracekitError(f"map {self.name!r}: max_entries must be set before load()")
        if self.spec.is_internal:
            raise TracekitError(f"map {self.name!r} holds global data; its size is fixed")
        self.spec.max_entries = int(value)

    # --- what libbpf's bpf_map__set_*() change before load ----------------------------------

    def _settable(self, what: str) -> None:
        if self._obj.loaded:
            raise TracekitError(f"map {self.name!r}: {what} must be set before load()")
        if self.spec.is_internal:
            raise TracekitError(f"map {self.name!r} holds global data ({self.spec.section}); its {what} is fixed")

    @property
    def key_size(self) -> int:
        return self.map.key_size if self.map is not None else self.spec.key_size

    @key_size.setter
    def key_size(self, value: int) -> None:
        self._settable("key_size")
        self.spec.key_size = _positive("key_size", value, self.name)
        # A BTF type that no longer fits would make the kernel refuse the map: libbpf drops it too.
        if self.spec.key_type_id and self._btf_size(self.spec.key_type_id) != self.spec.key_size:
            self.spec.key_type_id = 0

    @property
    def value_size(self) -> int:
        return self.map.value_size if self.map is not None else self.spec.value_size

    @value_size.setter
    def value_size(self, value: int) -> None:
        """E.g. a stack-trace map sized by the front end: ``max_depth * 8`` bytes."""
        self._settable("value_size")
        self.spec.value_size = _positive("value_size", value, self.name)
        if self.spec.value_type_id and self._btf_size(self.spec.value_type_id) != self.spec.value_size:
            self.spec.value_type_id = 0

    # (the getter sits next to its setter: mypy wants them together)
    @property
    def type(self) -> uapi.MapType:
        return uapi.MapType(self.spec.type)

    @type.setter
    def type(self, value: int | str) -> None:
        self._settable("type")
        try:
            self.spec.type = int(uapi.MapType[value.upper()] if isinstance(value, str) else uapi.MapType(value))
        except (KeyError, ValueError):
            raise TracekitError(f"map {self.name!r}: unknown map type {value!r} "
                                "(a tracekit.uapi.MapType, e.g. MapType.LRU_HASH or 'lru_hash')") from None

    @property
    def map_flags(self) -> int:
        return self.spec.flags

    @map_flags.setter
    def map_flags(self, value: int) -> None:
        self._settable("map_flags")
        self.spec.flags = int(value)

    @property
    def numa_node(self) -> int:
        return self.spec.numa_node

    @numa_node.setter
    def numa_node(self, value: int) -> None:
        self._settable("numa_node")
        self.spec.numa_node = int(value)
        if value:
            self.spec.flags |= uapi.BPF_F_NUMA_NODE

    @property
    def map_extra(self) -> int:
        return self.spec.map_extra

    @map_extra.setter
    def map_extra(self, value: int) -> None:
        self._settable("map_extra")
        self.spec.map_extra = int(value)

    @property
    def inner_map(self) -> MapSpec | None:
        """The template of a map-in-map's inner maps (a MapSpec; editable before load)."""
        return self.spec.inner

    @inner_map.setter
    def inner_map(self, value: ObjectMap | MapSpec) -> None:
        """Set the inner map template from another map of this (or any) object, or a spec."""
        self._settable("inner_map")
        if self.spec.type not in (uapi.MapType.ARRAY_OF_MAPS, uapi.MapType.HASH_OF_MAPS):
            raise TracekitError(f"map {self.name!r} is {self.type.name}, not a map-in-map: it has no inner map")
        spec = value.spec if isinstance(value, ObjectMap) else value
        self.spec.inner = spec.copy()

    def reuse(self, m: Any) -> None:
        """Use the existing kernel map ``m`` (a :class:`tracekit.kernel.maps.Map`, e.g.
        ``Map.from_pin(path)``) instead of creating one at load (libbpf's
        ``bpf_map__reuse_fd``).  Its type, key and value sizes must match the declaration;
        its size wins.  The object owns ``m`` from now on and closes it."""
        if self._obj.loaded:
            raise TracekitError(f"map {self.name!r}: reuse() must be called before load()")
        s = self.spec
        want = {"type": s.type, "key_size": s.key_size, "value_size": s.value_size}
        have = {k: getattr(m, k) for k in want}
        if have != want:
            diff = ", ".join(f"{k} {have[k]} (the object declares {want[k]})" for k in want if have[k] != want[k])
            raise TracekitError(f"map {self.name!r}: cannot reuse map {getattr(m, 'name', '') or m.fd}: {diff}")
        old = self.__dict__.pop("_reused", None)
        if old is not None and old is not m:
            old.close()
        self.__dict__["_reused"] = m

    def _btf_size(self, tid: int) -> int | None:
        btf = self._obj.spec.btf
        try:
            return btf.size_of(tid) if btf is not None else None
        except TracekitError:
            return None

    @property
    def fd(self) -> int:
        return self._loaded().fd

    def _loaded(self) -> Any:
        if self.map is None:
            raise TracekitError(f"map {self.name!r} is not created yet: call load() first")
        return self.map

    # --- typed access (tracekit.data.typed): the forwarded Map methods stay bytes-based ---

    @property
    def raw(self) -> Any:
        """The kernel :class:`tracekit.kernel.maps.Map` (bytes keys and values)."""
        return self._loaded()

    @property
    def typed(self) -> Any:
        """A :class:`tracekit.data.typed.TypedMap`: keys and values decoded from the map's BTF types."""
        from tracekit.data.typed import TypedMap

        m = self._loaded()
        tm = self.__dict__.get("_typed")
        if tm is None or tm.raw is not m:
            tm = TypedMap(m, self._obj.spec.btf, self.spec.key_type_id, self.spec.value_type_id)
            self.__dict__["_typed"] = tm
        return tm

    def histogram(self, kind: str = "log2", **options: Any) -> Any:
        """The histograms this map holds (:func:`tracekit.data.histogram.from_map`)."""
        from tracekit.data.histogram import from_map

        return from_map(self.typed, kind, **options)

    def __getattr__(self, attr: str) -> Any:
        # lookup/update/delete/keys/items/batch ops/pin... come from tracekit.kernel.maps.Map
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self._loaded(), attr)

    def __repr__(self) -> str:
        return f"<ObjectMap {self.name} {self.type.name} max_entries={self.max_entries}{' loaded' if self.map else ''}>"


def _global_attr(section: str):
    def get(self: Object) -> GlobalData:
        try:
            return self._globals[section]
        except KeyError:
            have = ", ".join(self._globals) or "none"
            raise AttributeError(f"object {self.name!r} has no {section} section (data sections: {have})") from None

    return property(get, doc=f"Variables of the object's ``{section}`` section.")


class Object:
    """A BPF object: open (pure), then ``load()``, ``attach()``, ``events()``, ``close()``."""

    def __init__(self, spec: ObjectSpec, *, btf: str | os.PathLike[str] | BTF | None = None,
                 pin_root_path: str | os.PathLike[str] | None = None) -> None:
        self.spec = spec
        self._btf_target = btf
        #: where maps declared with ``__uint(pinning, LIBBPF_PIN_BY_NAME)`` are pinned and
        #: reused (default: the bpffs mount, /sys/fs/bpf, mounted if needed)
        self.pin_root_path: str | None = os.fspath(pin_root_path) if pin_root_path is not None else None
        self._new_pins: list[str] = []
        self.programs: dict[str, Program] = {n: Program(self, p) for n, p in spec.programs.items()}
        self.maps: dict[str, ObjectMap] = {n: ObjectMap(self, m) for n, m in spec.maps.items()}
        self._globals: dict[str, GlobalData] = {}
        for m in spec.maps.values():
            if m.is_internal and m.section != ".kconfig":
                self._globals[m.section] = GlobalData(m.section, spec.btf, m.datasec_type_id, m.data or bytes(m.value_size))
        self._btf_fd: FD | None = None
        # kernel externs (tracekit.obj.externs) and BTF preparation state of the current load
        self._user_kconfig: dict[str, Any] = {}
        self._extern_res: Any = None
        self._prog_externs: dict[str, Any] = {}
        self._func_info_ok = True
        self._btf_rewritten = False
        self._kcore_progs: set[str] = set()
        #: why this object's last load relocated in user space (None: the kernel did CO-RE)
        self.core_path_reason: str | None = None
        self._links: list[Any] = []
        self._mmaps: list[Any] = []
        self._readers: list[Any] = []
        # decoders compiled from this object's BTF: they live and die with the object
        self._event_types: dict[str, Any] = {}
        self._perf_lost = 0  # lost records of perf buffer readers already closed
        self._final_lost = 0  # Object.lost once closed
        self.loaded = False
        self.closed = False

    # --- description ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    rodata = _global_attr(".rodata")
    data = _global_attr(".data")
    bss = _global_attr(".bss")

    def section(self, name: str) -> GlobalData:
        """Variables of any data section, e.g. ``obj.section(".data.counters")``."""
        return _global_attr(name).fget(self)

    @property
    def btf(self) -> BTF | None:
        return self.spec.btf

    def set_global(self, name: str, value: Any) -> str:
        """Set global variable ``name`` in whichever data section holds it; returns the section.

        ``.rodata`` is searched first (the usual home of knobs), then ``.data`` and ``.bss``
        and any other data section.  Raises KeyError when no section has the variable.
        """
        order = [".rodata", ".data", ".bss", *sorted(set(self._globals) - {".rodata", ".data", ".bss"})]
        for sec in order:
            gd = self._globals.get(sec)
            if gd is not None and name in gd:
                gd[name] = value
                return sec
        raise KeyError(f"object {self.name!r} has no global variable {name!r}")

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("loaded" if self.loaded else "opened")
        return f"<Object {self.name} {state}: {len(self.programs)} programs, {len(self.maps)} maps>"

    # --- load ---------------------------------------------------------------------------------

    @staticmethod
    def _kernel_targets() -> list[BTF]:
        from tracekit.kernel import btf as kernel

        return [kernel.vmlinux(), *kernel.modules().values()]

    def _targets(self) -> list[BTF]:
        from tracekit.kernel import btf as kernel

        t = self._btf_target
        if t is None:
            return [kernel.vmlinux(), *kernel.modules().values()]
        if isinstance(t, BTF):
            return [t]
        return [kernel.load_target(os.fspath(t))]

    def load(self, *, kconfig: dict[str, Any] | None = None) -> Object:
        """Create maps and load every autoload program; on error nothing is left behind.

        ``kconfig`` gives ``__kconfig`` extern values (``{"CONFIG_HZ": 250, "CONFIG_X": "y"}``)
        that win over the kernel's config file (needed where the kernel has none).
        """
        self._check_open()
        self._user_kconfig = dict(kconfig or {})
        if self.loaded:
            raise TracekitError(f"object {self.name!r} is already loaded")
        try:
            self._load()
        except BaseException:
            self._release()
            raise
        self.loaded = True
        return self

    def _load(self) -> None:
        from tracekit.kernel import kcore
        from tracekit.kernel.syscalls import bpf

        enabled = [p.spec for p in self.programs.values() if p.autoload]
        by_btf_id = any(p.attach_kind in BTF_ATTACH_KINDS and p.attach_target for p in enabled)
        kernel_externs = any(e.kind in ("kfunc", "ksym") for e in self.spec.externs.values())
        # Kernel-side CO-RE (tracekit.kernel.kcore) where the kernel can: no vmlinux BTF is
        # read in this process unless something below really needs it (LazyTargets).  The
        # BTF ids of attach targets and kfunc/ksym externs are then looked up by the kernel
        # (tracekit.kernel.btf_lookup) where it can.
        self.core_path_reason = kcore.why_not(
            custom_btf=self._btf_target is not None, attach_by_btf_id=by_btf_id,
            kernel_externs=kernel_externs, has_btf=self.spec.btf is not None,
            lookup=lambda: self._kernel_lookup_blocker(enabled))
        self._kcore_progs = set()
        self._lookup_progs: set[str] = set()
        self._kernel_extern_ids: dict[str, tuple[int, int] | None] | None = None
        self._lookup_fds: dict[int, FD] = {}
        self._replanned: dict[str, ProgramPlan] = {}  # plans redone in user space after a refusal
        self._user_relocator: Any = None
        self._user_externs: Any = None
        targets: Sequence[BTF]
        kernel_targets: Sequence[BTF]
        try:
            if self.core_path_reason is None:
                # Link only (pure); the verifier applies the CO-RE records of each program.
                plans = {p.name: link_program(self.spec, p) for p in enabled}
                self._kcore_progs = {n for n, pl in plans.items() if pl.core_relos}
                targets = kernel_targets = kcore.LazyTargets()
                if by_btf_id or kernel_externs:
                    self._kernel_lookup(plans)
            else:
                targets = self._targets()
                # A user-given BTF (btf=) only steers CO-RE, as libbpf's btf_custom_path: the ids the
                # kernel checks (attach targets, kfuncs, ksyms) must come from the running kernel.
                kernel_targets = targets
                if self._btf_target is not None and (by_btf_id or kernel_externs):
                    kernel_targets = self._kernel_targets()
                # Plans first: they are pure, so relocation errors surface before any kernel object exists.
                # One CO-RE relocator shared by the programs of this load and dropped with it.
                plans = plan_programs(self.spec, enabled, targets, attach_targets=kernel_targets)
            if not plans:
                raise LoadError(f"object {self.name!r}: no program is enabled (all have autoload=False)")
            self._resolve_externs(plans, kernel_targets)
            self._load_btf(plans)
            if self._kcore_progs:
                self._check_kernel_core(plans)
            map_fds = self._create_maps()
            self._init_slots(map_fds, uapi.MapType.PROG_ARRAY, exclude=True)
            for name, plan in plans.items():
                prog = self.programs[name]
                prog._fd = self._load_program(bpf, plan, map_fds, kernel_targets)
                prog.plan = self._replanned.pop(name, plan)
            self._init_slots({n: p.fd for n, p in self.programs.items() if p.loaded}, uapi.MapType.PROG_ARRAY)
            self._new_pins.clear()  # loaded: pins now belong to the system, as with libbpf
        finally:
            # module BTF fds the kernel's look-ups installed: the loads are done with them
            for f in self._lookup_fds.values():
                f.close()
            self._lookup_fds = {}
            self._user_relocator = None
            self._user_externs = None

    # --- in-kernel BTF id look-ups (tracekit.kernel.btf_lookup) -------------------------------

    def _kernel_lookup_blocker(self, enabled: Sequence[ProgramSpec]) -> str | None:
        """Why the kernel cannot look up this object's attach / extern ids (None: it can)."""
        from tracekit.kernel import btf_lookup
        from tracekit.obj.plan import attach_btf_name

        names = [a[0] for a in (attach_btf_name(p) for p in enabled) if a is not None]
        for e in self.spec.externs.values():
            if e.kind not in ("kfunc", "ksym"):
                continue
            if e.name != e.essential_name:
                # flavors exist to be chosen by prototype, which needs the kernel's BTF here
                return f"extern {e.name!r} has a ___flavor suffix (chosen by prototype in user space)"
            names.append(e.essential_name)
        long = [n for n in names if len(n.encode()) >= btf_lookup.NAME_MAX]
        if long:
            return f"BTF name {long[0]!r} is too long for the in-kernel look-up"
        return btf_lookup.why_not()

    def _kernel_lookup(self, plans: dict[str, ProgramPlan]) -> None:
        """Attach ids (into the plans) and kfunc / typed ksym ids (for _resolve_externs),
        looked up by the kernel.  Module hits: one fd per module BTF object, target
        indices 1.. in order of first hit (the user path numbers its module targets
        differently, but only their order reaches the instructions: fd_array slots)."""
        from tracekit.btf.types import Kind
        from tracekit.kernel import btf_lookup, kconfig
        from tracekit.kernel.syscalls import bpf
        from tracekit.obj.plan import attach_btf_name, attach_not_found

        attach = {n: a for n, pl in plans.items() if (a := attach_btf_name(pl.spec)) is not None}
        ext_keys = {e.name: (e.essential_name, Kind.FUNC if e.kind == "kfunc" else Kind.VAR)
                    for e in self.spec.externs.values()
                    if e.kind == "kfunc" or (e.kind == "ksym" and kconfig._typed(self.spec, e))}
        found = btf_lookup.find([*attach.values(), *ext_keys.values()])
        index: dict[tuple[str, int], tuple[int, int]] = {}
        by_object: dict[int, int] = {}
        try:
            for key, f in found.items():
                if f is None:
                    continue
                if f.module_fd is None:
                    index[key] = (f.btf_id, 0)
                    continue
                oid = bpf.btf_info(f.module_fd.fd).id
                t = by_object.get(oid)
                if t is None:
                    t = by_object[oid] = len(by_object) + 1
                    self._lookup_fds[t] = f.module_fd
                else:
                    f.module_fd.close()  # the same module as an earlier hit: one fd is enough
                index[key] = (f.btf_id, t)
        except BaseException:
            btf_lookup.close_all(found.values())  # idempotent: _load closes _lookup_fds again
            raise
        for name, a in attach.items():
            got = index.get(a)
            if got is None:
                raise attach_not_found(plans[name].spec)
            plans[name].attach_btf_id, plans[name].attach_btf_target = got
            self._lookup_progs.add(name)
        self._kernel_extern_ids = {n: index.get(k) for n, k in ext_keys.items()}
        if self._kernel_extern_ids:
            self._lookup_progs.update(n for n, pl in plans.items() if pl.extern_refs)

    def _user_replan(self, plan: ProgramPlan) -> ProgramPlan:
        """The plan of a program whose kernel-path load failed, made again entirely in user
        space (CO-RE, attach id, extern ids with their prototype checks), so the retry
        fails -- or works -- exactly as a TRACEKIT_CORE=user load would."""
        from tracekit.kernel import kconfig
        from tracekit.obj import externs
        from tracekit.obj.plan import apply_core, find_attach_btf_id, new_relocator

        new = link_program(self.spec, plan.spec)
        new.func_info = plan.func_info  # as _load_btf prepared them (same layout)
        targets = self._kernel_targets()
        if new.core_relos and self.spec.btf is not None:
            if self._user_relocator is None:
                self._user_relocator = new_relocator(self.spec.btf, self._targets())
            apply_core(new, self.spec.btf, self._user_relocator.targets, relocator=self._user_relocator)
        find_attach_btf_id(new, targets)
        if new.extern_refs:
            if self._user_externs is None:
                facts = kconfig.gather_facts(self.spec, targets, self._user_kconfig)
                self._user_externs = externs.resolve_externs(self.spec, facts)
            self._prog_externs[new.name] = externs.patch_program(new, self._user_externs)
        self._kcore_progs.discard(new.name)
        self._lookup_progs.discard(new.name)
        return new

    # --- kernel-side CO-RE (tracekit.kernel.kcore) ------------------------------------------

    def _check_kernel_core(self, plans: dict[str, ProgramPlan]) -> None:
        """After the BTF is loaded: programs whose CO-RE records the kernel cannot take as
        they are go through the user-space engine (before any map exists)."""
        from tracekit.kernel import kcore

        reason = None
        if self._btf_fd is None:
            reason = "the kernel refused the object's BTF"
        elif self._btf_rewritten or not self._func_info_ok:
            reason = "the BTF was rewritten for this kernel (record offsets would not match)"
        for name in sorted(self._kcore_progs):
            plan = plans[name]
            # the verifier applies core_relos only along with func_info (check_btf_info)
            why = reason or (None if plan.func_info else "no func_info")
            if why is None and not kcore.records_match(self.spec.btf, plan.core_relos):
                why = "CO-RE records do not name the BTF's access strings"
            if why is not None:
                log.debug("program %s: user-space CO-RE (%s)", name, why)
                self._user_core(plan)
        if reason is not None:
            self.core_path_reason = reason

    def _user_core(self, plan: ProgramPlan) -> None:
        """CO-RE-relocate a linked-only plan in user space (its instructions are still the
        object's: nothing was applied to them)."""
        from tracekit.obj.plan import apply_core

        self._kcore_progs.discard(plan.name)
        assert self.spec.btf is not None
        if self._user_relocator is None:
            from tracekit.obj.plan import new_relocator

            self._user_relocator = new_relocator(self.spec.btf, self._targets())
        apply_core(plan, self.spec.btf, self._user_relocator.targets, relocator=self._user_relocator)

    def _init_slots(self, fds: dict[str, int], map_type: int, *, exclude: bool = False) -> None:
        """Fill ``values`` slots declared in the object: inner maps of map-in-maps (after the
        maps exist) and programs of prog arrays (after the programs are loaded)."""
        for om in self.maps.values():
            s = om.spec
            if not s.init_slots or (s.type == map_type) == exclude or om.reused:
                continue
            what = "program" if s.type == uapi.MapType.PROG_ARRAY else "map"
            for slot, target in sorted(s.init_slots.items()):
                if target not in fds:
                    raise LoadError(f"object {self.name!r}: map {s.name!r} slot {slot} names {what} "
                                    f"{target!r}, which is not {'loaded' if what == 'program' else 'created'}")
                om.map.update(slot, fds[target].to_bytes(4, "little"))

    def _resolve_externs(self, plans: dict[str, ProgramPlan], targets: Sequence[BTF]) -> None:
        """kfunc/ksym/kconfig externs: resolve (pure, tracekit.obj.externs) and patch each plan."""
        self._extern_res, self._prog_externs = None, {}
        if not self.spec.externs:
            return
        from tracekit.kernel import kconfig
        from tracekit.obj import externs

        facts = kconfig.gather_facts(self.spec, targets, self._user_kconfig)
        self._extern_res = externs.resolve_externs(self.spec, facts, kernel_ids=self._kernel_extern_ids)
        self._prog_externs = {n: externs.patch_program(p, self._extern_res) for n, p in plans.items() if p.extern_refs}

    def _load_btf(self, plans: dict[str, ProgramPlan] | None = None) -> None:
        from tracekit.btf.sanitize import prepare
        from tracekit.kernel import features
        from tracekit.kernel.syscalls import bpf

        if self.spec.btf is None:
            return
        # Old kernels: rewrite BTF kinds they lack, and retype __arg_ctx arguments (libbpf's order).
        progs = [(n, p.spec.prog_type, p.func_info) for n, p in (plans or {}).items()]
        prep = prepare(self.spec.btf, features.btf_features(), progs, arg_ctx_native=features.arg_ctx_tag)
        for n, fi in prep.func_info.items():
            plans[n].func_info = fi  # type: ignore[index]
        self._func_info_ok = prep.func_info_ok
        self._btf_rewritten = prep.data is not self.spec.btf.data or bool(prep.func_info)
        try:
            self._btf_fd = bpf.load_btf(prep.data)
        except BTFLoadError as e:
            # Programs load without BTF too (no func/line info); libbpf continues likewise.
            log.warning("object %s: kernel rejected its BTF, loading without it: %s", self.name, e)
            self._btf_fd = None

    def _create_maps(self) -> dict[str, int]:
        from tracekit.kernel.maps import Map

        fds: dict[str, int] = {}
        btf_fd = self._btf_fd.fd if self._btf_fd is not None else 0
        for om in self.maps.values():
            s = om.spec
            max_entries = s.max_entries
            if s.type == uapi.MapType.PERF_EVENT_ARRAY and max_entries == 0:
                from tracekit.kernel.maps import num_possible_cpus

                max_entries = num_possible_cpus()
            reused = om.__dict__.pop("_reused", None)
            if reused is not None:  # ObjectMap.reuse(): the user's map stands in for ours
                om.map = reused
                om.reused = True
                fds[om.name] = reused.fd
                continue
            if s.pinning and self._reuse_pinned(om, max_entries):
                fds[om.name] = om.map.fd
                continue
            kwargs: dict[str, Any] = dict(
                name=kernel_name(s.name), flags=s.flags, map_extra=s.map_extra, numa_node=s.numa_node
            )
            if s.inner is not None:
                inner = Map.create(s.inner.type, s.inner.key_size, s.inner.value_size, s.inner.max_entries,
                                   name=kernel_name(s.inner.name), flags=s.inner.flags)
                kwargs["inner_map_fd"] = inner.fd
            else:
                inner = None
            with_btf: dict[str, Any] = dict(btf_fd=btf_fd, btf_key_type_id=s.key_type_id, btf_value_type_id=s.value_type_id)
            if s.is_internal:
                with_btf = dict(btf_fd=btf_fd, btf_key_type_id=0, btf_value_type_id=s.datasec_type_id)
            try:
                try:
                    if btf_fd and (with_btf["btf_value_type_id"] or with_btf["btf_key_type_id"]):
                        m = Map.create(s.type, s.key_size, s.value_size, max_entries, **kwargs, **with_btf)
                    else:
                        m = Map.create(s.type, s.key_size, s.value_size, max_entries, **kwargs)
                except SyscallError as e:
                    if not btf_fd or e.errno not in (22, 524):  # EINVAL, ENOTSUPP: retry without BTF
                        raise
                    log.debug("map %s: kernel refused its BTF types (%s); creating without", s.name, e)
                    m = Map.create(s.type, s.key_size, s.value_size, max_entries, **kwargs)
            except (ResourceLimitError, PermissionDeniedError):
                raise  # a limit or a privilege, not this map's definition: keep the class (issue 10)
            except SyscallError as e:
                raise LoadError(f"object {self.name!r}: creating map {s.name!r} ({uapi.MapType(s.type).name}, "
                                f"max_entries={max_entries}) failed: {e}") from e
            finally:
                if inner is not None:
                    inner.close()
            om.map = m
            fds[om.name] = m.fd
            if s.is_internal:
                self._init_global_data(om, m)
            if s.pinning:
                path = self._pin_path(s.name)
                m.pin(path)
                self._new_pins.append(path)
        return fds

    def _pin_path(self, name: str) -> str:
        if self.pin_root_path is None:
            from tracekit.kernel.syscalls import fs

            self.pin_root_path = fs.bpffs_path()
        return os.path.join(self.pin_root_path, name)

    def _reuse_pinned(self, om: ObjectMap, max_entries: int) -> bool:
        """LIBBPF_PIN_BY_NAME: reuse the map pinned under the name if it is compatible."""
        from tracekit.kernel.maps import Map

        path = self._pin_path(om.spec.name)
        if not os.path.exists(path):
            return False
        m = Map.from_pin(path)
        s = om.spec
        want = {"type": s.type, "key_size": s.key_size, "value_size": s.value_size,
                "max_entries": max_entries, "flags": s.flags}
        have = {k: getattr(m, k) for k in want}
        if have != want:
            m.close()
            diff = ", ".join(f"{k} {have[k]} (object wants {want[k]})" for k in want if have[k] != want[k])
            raise LoadError(f"object {self.name!r}: map {s.name!r} is pinned at {path} with a different "
                            f"definition: {diff}; remove the pin (rm {path}) or change the object")
        om.map = m
        om.reused = True
        log.debug("map %s: reusing the map pinned at %s", s.name, path)
        return True

    def _init_global_data(self, om: ObjectMap, m: Any) -> None:
        s = om.spec
        gd = self._globals.get(s.section)
        contents = gd._bytes() if gd is not None else (s.data or bytes(s.value_size))
        if s.section == ".kconfig" and self._extern_res is not None:
            contents = self._extern_res.kconfig_data
        if not s.value_size:
            return
        # Initial contents go in with one update (a writable mmap of a BPF_F_RDONLY_PROG map
        # is refused), then read-only sections are frozen before any program can see them.
        m.update(0, bytes(contents).ljust(s.value_size, b"\0"))
        if s.readonly:
            m.freeze()
        if not m.flags & uapi.BPF_F_MMAPABLE:
            # no non-static variable: nothing for user space to reach
            if gd is not None:
                gd._rebind(bytearray(contents), writable=False)
            return
        mm = m.mmap_value(writable=not s.readonly)
        self._mmaps.append(mm)
        if gd is not None:
            gd._rebind(mm, writable=not s.readonly)

    def _load_program(self, bpf: Any, plan: ProgramPlan, map_fds: dict[str, int], targets: Sequence[BTF]) -> FD:
        kernel_core = plan.name in self._kcore_progs
        if not kernel_core and plan.name not in self._lookup_progs:
            return self._load_program_once(bpf, plan, map_fds, targets)
        from tracekit.kernel import kcore

        try:
            return self._load_program_once(bpf, plan, map_fds, targets, kernel_core=kernel_core,
                                           lookup_fds=self._lookup_fds)
        except (ResourceLimitError, PermissionDeniedError):
            raise  # the same limit or privilege would refuse the user-space retry
        except (VerifierError, SyscallError) as e:
            # Refused with the kernel's CO-RE or ids the kernel looked up: load it again
            # planned in user space, whose report explains poisoned relocations and
            # mismatched kfunc prototypes (or which works on a kernel that does not take
            # the records after all).
            log.debug("program %s: kernel-side load failed (%s); retrying in user space", plan.name, e)
            if plan.name in self._lookup_progs:
                plan = self._replanned[plan.name] = self._user_replan(plan)
                targets = self._kernel_targets()
            else:
                self._user_core(plan)
            fd = self._load_program_once(bpf, plan, map_fds, targets)
            if kernel_core and kcore.is_unsupported_error(e.errno):
                kcore.mark_unsupported()
            return fd

    def _load_program_once(self, bpf: Any, plan: ProgramPlan, map_fds: dict[str, int], targets: Sequence[BTF],
                           *, kernel_core: bool = False, lookup_fds: dict[int, FD] | None = None) -> FD:
        """``lookup_fds``: module BTF fds by target index when the plan's ids come from the
        kernel's look-up (tracekit.kernel.btf_lookup; owned by _load), else None: the
        indices are into ``targets``."""
        lookup_fds = lookup_fds or {}
        spec = plan.spec
        raw_insns = plan.fill_fds(map_fds)
        # module BTF fds for kfuncs (fd_array) and typed ksyms of modules (ldimm64)
        pe = self._prog_externs.get(spec.name)
        ext_fds: dict[int, FD] = {}
        fd_array = None
        if pe is not None:
            from tracekit.kernel import btf as kernel

            raw: dict[int, int] = {}
            try:
                for t in sorted(pe.targets):
                    looked_up = lookup_fds.get(t)
                    if looked_up is not None:
                        raw[t] = looked_up.fd  # owned by _load (the kernel's look-up gave it)
                    else:
                        ext_fds[t] = kernel.module_btf_fd(targets[t])
                        raw[t] = ext_fds[t].fd
            except BaseException:
                for f in ext_fds.values():
                    f.close()
                raise
            pe.fill_btf_fds(raw_insns, raw)
            fd_array = pe.fd_array(raw)
        insns = encode(raw_insns)
        btf_fd = self._btf_fd.fd if self._btf_fd is not None else 0
        with_info = bool(btf_fd) and self._func_info_ok
        attach_btf_obj_fd = 0
        module_fd = None
        if plan.attach_btf_target > 0:
            looked = lookup_fds.get(plan.attach_btf_target)
            if looked is not None:
                attach_btf_obj_fd = looked.fd  # owned by _load
            else:
                from tracekit.kernel import btf as kernel

                module_fd = kernel.module_btf_fd(targets[plan.attach_btf_target])
                attach_btf_obj_fd = module_fd.fd
        try:
            return bpf.load_program(
                prog_type=spec.prog_type,
                insns=insns,
                license=spec.license or self.spec.license or "GPL",
                name=spec.name,
                kernel_name=kernel_name(spec.name),
                expected_attach_type=_usdt_attach_type(spec),
                attach_btf_id=plan.attach_btf_id,
                attach_btf_obj_fd=attach_btf_obj_fd,
                prog_btf_fd=btf_fd,
                func_info=encode_func_info(plan.func_info) if with_info else b"",
                func_info_rec_size=FUNC_INFO_SIZE,
                line_info=encode_line_info(plan.line_info) if with_info else b"",
                line_info_rec_size=LINE_INFO_SIZE,
                kern_version=spec.kern_version or _kernel_version_code(),
                prog_flags=uapi.BPF_F_SLEEPABLE if spec.sleepable else 0,
                fd_array=fd_array,
                **(dict(core_relos=kcore_encode(plan.core_relos), core_relo_rec_size=CORE_RELO_SIZE)
                   if kernel_core else {}),
            )
        except VerifierError as e:
            ext_hint = pe.explain_poison(e.log) if pe is not None else None
            if ext_hint:
                raise VerifierError(spec.name, e.errno, e.log, hint=ext_hint) from None
            if str(POISON_CORE) in e.log:
                from tracekit.obj import core

                hint = core.explain_poison(self.spec, plan, e.log)
                if hint:
                    raise VerifierError(spec.name, e.errno, e.log, hint=hint) from None
            raise
        finally:
            if module_fd is not None:
                module_fd.close()
            for f in ext_fds.values():
                f.close()

    # --- attach and events ----------------------------------------------------------------------

    def attach(self) -> list[Any]:
        """Attach every loaded program whose SEC name says where; returns the links."""
        self._check_open()
        if not self.loaded:
            self.load()
        from tracekit.kernel.syscalls import fs

        todo = [p for p in self.programs.values() if p.loaded and p.attach_kind and p.attach_target]
        # Every tracefs read happens before the first program is live (see tracepoint_id_memo).
        tracepoints = [tuple(p.attach_target.split("/", 1)) for p in todo
                       if p.attach_kind == "tracepoint" and p.attach_target.count("/") == 1]
        made = []
        try:
            with fs.tracepoint_id_memo(tracepoints):  # type: ignore[arg-type]
                for p in todo:
                    made.append(p.attach())
        except BaseException:
            for link in made:
                link.close()
                self._links.remove(link)
            raise
        return made

    def ringbuf_maps(self) -> list[ObjectMap]:
        return [m for m in self.maps.values() if m.spec.type == uapi.MapType.RINGBUF]

    def event_type(self, name: str = "event") -> Any:
        """The decoder for struct ``name`` of the object's BTF (tracekit.events.records.EventType)."""
        from tracekit.events.records import EventType

        if self.spec.btf is None:
            raise TracekitError(f"object {self.name!r} has no BTF: cannot decode events by type")
        et = self._event_types.get(name)
        if et is None:
            et = self._event_types[name] = EventType.from_btf(self.spec.btf, name)
        return et

    def reader(self, map_name: str | Sequence[str] | None = None, *, event_type: str | Any | None = "event",
               raw: bool = False, page_count: int = 8) -> Any:
        """A reader over one, several or (default) all ringbuf maps, or over one perf event
        array (:class:`tracekit.events.perfbuf.PerfBuffer`, ``page_count`` pages per CPU) when it
        is named or the object has no ring buffer."""
        from tracekit.events import ringbuf

        self._check_open()
        if not self.loaded:
            raise TracekitError(f"object {self.name!r}: load() (or attach()) before reading events")
        perf = uapi.MapType.PERF_EVENT_ARRAY
        if map_name is None:
            maps = self.ringbuf_maps()
            if not maps:
                maps = [m for m in self.maps.values() if m.spec.type == perf][:2]
                if len(maps) != 1:
                    raise TracekitError(f"object {self.name!r} has no BPF_MAP_TYPE_RINGBUF map"
                                        + (" and several perf event arrays: name one" if maps else
                                           " nor BPF_MAP_TYPE_PERF_EVENT_ARRAY map"))
        else:
            names = [map_name] if isinstance(map_name, str) else list(map_name)
            maps = []
            for n in names:
                if n not in self.maps:
                    raise TracekitError(f"object {self.name!r} has no map {n!r} (maps: {', '.join(self.maps)})")
                if self.maps[n].spec.type not in (uapi.MapType.RINGBUF, perf) or (
                        self.maps[n].spec.type == perf and len(names) > 1):
                    raise TracekitError(f"map {n!r} is {self.maps[n].type.name}: read one ring buffer map, "
                                        "several ring buffer maps, or one perf event array")
                maps.append(self.maps[n])
        decoder = None
        if not raw and event_type is not None:
            if isinstance(event_type, str):
                decoder = self._event_type_for(event_type, maps[0].name)
            else:
                decoder = event_type
        if maps[0].spec.type == perf:
            from tracekit.events.perfbuf import PerfBuffer

            m = maps[0]
            for other in self._readers:
                if isinstance(other, PerfBuffer) and other.name == m.name and not other.closed:
                    raise ReaderBusyError(
                        f"object {self.name!r}: perf event array {m.name!r} already has a reader (each CPU "
                        "slot holds one perf event): close it (leave its loop) first, or share its records "
                        "between tasks yourself; ring buffer maps allow several readers")
            r: Any = PerfBuffer(m.map.fd, m.map.max_entries, name=m.name, decoder=decoder, page_count=page_count)
            self._readers.append(r)
            return r
        r = ringbuf.open_readers([(m.map.fd, m.spec.max_entries, m.name) for m in maps], decoder=decoder,
                                 drop_counters=self._drop_counters([m.name for m in maps]))
        self._readers.append(r)
        return r

    def _drop_counters(self, map_names: Sequence[str]) -> dict[str, Any]:
        """Readers of the drop counters the object declares for ring buffers
        (``TK_DROP_COUNTER(map)`` in tracekit.h: a global ``__u64 tk_dropped_<map>``)."""
        out: dict[str, Any] = {}
        for name in map_names:
            var = DROP_COUNTER_PREFIX + name
            for gd in self._globals.values():
                if var in gd:
                    out[name] = lambda gd=gd, var=var: int(gd[var])
                    break
        return out

    @property
    def lost(self) -> int:
        """Events lost since load: the ring-buffer drop counters the probe declares
        (``tk_dropped_<map>`` globals) plus the records perf buffer readers of this object
        saw the kernel drop (PERF_RECORD_LOST)."""
        if self.closed:
            return self._final_lost
        n = self._perf_lost + sum(int(getattr(r, "lost", 0)) for r in self._readers if _is_perf(r))
        if self.loaded:
            for gd in self._globals.values():
                for var in gd:
                    if var.startswith(DROP_COUNTER_PREFIX):
                        try:
                            n += int(gd[var])
                        except (ClosedError, TypeError, ValueError):
                            pass
        return n

    def _event_type_for(self, name: str, map_name: str) -> Any:
        """The decoder of ring buffer ``map_name``'s records: struct ``name`` when the BTF
        has it; for the default name ("event"), the type the object marks for the map
        (``TK_EVENT_TYPE(map, type)``, :func:`tracekit.events.records.find_event_type`).
        Never silently raw: a type that cannot be found is an error saying how to fix it."""
        from tracekit.events.records import EventType, find_event_type

        btf = self.spec.btf
        if btf is not None:
            if name == "event":
                try:
                    return EventType.from_btf(btf, find_event_type(btf, map_name))
                except BTFError:
                    pass
            elif any(btf.type(i).is_composite or btf.kind_of(i) == Kind.TYPEDEF for i in btf.find(name)):
                return self.event_type(name)
        where = "has no BTF" if btf is None else f"has no struct {name!r} in its BTF"
        raise EventTypeError(
            f"object {self.name!r} {where}, so the records of ring buffer {map_name!r} cannot be decoded. "
            f"Fix the probe: mark the record type with TK_EVENT_TYPE({map_name}, struct {name}); "
            "(tracekit.h) or use the struct in a global or a function signature so that clang keeps it in "
            "BTF, and build with -g; or name another type (event_type=...), or read bytes (raw=True)"
        )

    def events(self, map_name: str | Sequence[str] | None = None, *, event_type: str | Any | None = "event",
               raw: bool = False) -> Any:
        """Async iterator over ring-buffer (or perf buffer) records, decoded from BTF
        (``struct event`` by default).  Its reader closes when iteration ends, when the
        iterator is closed, or with the object."""
        from tracekit.events.stream import EventIterator

        r = self.reader(map_name, event_type=event_type, raw=raw)
        return EventIterator(r, on_close=self._forget_reader)

    def _forget_reader(self, r: Any) -> None:
        if r in self._readers:
            self._readers.remove(r)
            if _is_perf(r):
                self._perf_lost += int(r.lost)  # Object.lost keeps counting them

    # --- lifetime -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"object {self.name!r} is closed")

    def _release(self) -> None:
        """Release kernel objects in reverse order of creation; never raises (a Ctrl-C
        while the links close is raised once everything is released)."""
        for r in reversed(self._readers):
            _quietly(r.close)
        self._readers.clear()
        links, self._links = list(reversed(self._links)), []
        interrupted = _close_links(links)
        for p in self.programs.values():
            p.links.clear()
            _quietly(p._close)
            p._fd = None
        for gd in self._globals.values():
            gd._detach()
        for mm in self._mmaps:
            _quietly(mm.close)
        self._mmaps.clear()
        for path in self._new_pins:  # a load that failed leaves no pin behind
            _quietly(lambda p=path: os.unlink(p))
        self._new_pins.clear()
        for om in self.maps.values():
            if om.map is not None:
                _quietly(om.map.close)
                om.map = None
            om.reused = False
        if self._btf_fd is not None:
            _quietly(self._btf_fd.close)
            self._btf_fd = None
        if interrupted:
            raise KeyboardInterrupt

    def close(self) -> None:
        """Detach and release everything; idempotent."""
        if self.closed:
            return
        try:
            self._final_lost = self.lost  # Object.lost stays readable after close (tools' totals)
        except Exception as e:  # noqa: BLE001 - counting must never stop the release
            log.debug("lost-event count at close failed: %s", e)
        self._release()
        self.closed = True
        self.loaded = False

    def __enter__(self) -> Object:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Object:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


#: a global ``__u64 tk_dropped_<map>`` counts records the probe could not put in ring
#: buffer ``<map>`` (tracekit.h's TK_DROP_COUNTER): readers report it as ``lost``
DROP_COUNTER_PREFIX = "tk_dropped_"


def _is_perf(r: Any) -> bool:
    from tracekit.events.perfbuf import PerfBuffer

    return isinstance(r, PerfBuffer)


def _close_links(links: list[Any]) -> bool:
    """Close ``links`` concurrently; True if Ctrl-C came meanwhile (it waits until they are
    all closed, then the caller raises it).

    Detaching a tracepoint waits for RCU grace periods in the kernel (~70-90 ms a link on
    6.18: opensnoop's 6 take 555 ms one after the other); from threads those waits overlap
    (261 ms), which is most of a tool's exit after Ctrl-C.  A thread that cannot start (a
    process at its limits) closes its link inline instead."""
    if len(links) < 2:
        for link in links:
            _quietly(link.close)
        return False
    import threading

    threads = []
    for link in links:
        t = threading.Thread(target=_quietly, args=(link.close,), name="tracekit-detach", daemon=True)
        try:
            t.start()
        except RuntimeError:
            _quietly(link.close)
            continue
        threads.append(t)
    interrupted = False
    for t in threads:
        while t.is_alive():
            try:
                t.join()
            except KeyboardInterrupt:
                interrupted = True  # the links must be gone before the program fds close
    return interrupted


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception as e:  # cleanup must go on; report instead of masking the first error
        log.debug("cleanup step failed: %s", e)


_KVER: int | None = None


def _usdt_attach_type(spec: ProgramSpec) -> int:
    """The expected attach type a program is loaded with: a ``SEC("usdt")`` program becomes a
    uprobe.multi program where the kernel has those links (libbpf does the same), so that
    all sites of a probe share one link, detached in one RCU grace period instead of one
    per site.  Recorded in the spec: its attach path follows (tracekit.hooks.usdt)."""
    if spec.attach_kind == "usdt" and not spec.expected_attach_type:
        from tracekit.hooks import usdt

        if usdt.uprobe_multi_for_usdt():
            spec.expected_attach_type = int(uapi.AttachType.TRACE_UPROBE_MULTI)
    return spec.expected_attach_type


def _kernel_version_code() -> int:
    """LINUX_VERSION_CODE of the running kernel (needed by kprobe programs on old kernels)."""
    global _KVER
    if _KVER is None:
        rel = os.uname().release
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", rel)
        if m:
            a, b, c = (int(x or 0) for x in m.groups())
            _KVER = (a << 16) + (b << 8) + min(c, 255)
        else:
            _KVER = 0
    return _KVER


def open_object(src: str | os.PathLike[str] | bytes, *, btf: str | os.PathLike[str] | BTF | None = None,
                name: str | None = None,
                link: Sequence[str | os.PathLike[str] | bytes] | None = None,
                pin_root_path: str | os.PathLike[str] | None = None) -> Object:
    """Parse a BPF object (path, bundled probe name, or ELF bytes) — no kernel involved yet.

    ``link`` lists more objects (libraries) to statically link with ``src`` first
    (:func:`tracekit.obj.linker.link`), so its extern functions and variables resolve to them.
    """
    from tracekit.obj import elf

    if isinstance(src, (bytes, bytearray, memoryview)):
        data: bytes | str = bytes(src)
    else:
        data = os.fspath(src)
        if not os.path.exists(data):
            data = _resolve_missing(data)
    if link:
        from tracekit.obj.linker import link as _link

        if isinstance(data, str):
            name = name or elf.object_name(data)
        data = _link([data, *link])
    spec = elf.load_spec(data, name=name)
    return Object(spec, btf=btf, pin_root_path=pin_root_path)


def _resolve_missing(text: str) -> str:
    """``src`` is not an existing file: a bundled probe name, or a path that is missing.

    A bare name ("execsnoop", "execsnoop.bpf.o") is looked up among the bundled probes;
    anything with a directory part, or a ``.o`` name that is not bundled, is a file the
    user expected to exist, and is reported as such rather than as an unknown probe.
    """
    from tracekit import bundled

    if "/" not in text:
        try:
            return bundled.object_path(text)
        except ProbeNotFoundError:
            if not text.endswith(".o"):
                raise
    raise ObjectNotFoundError(
        f"no such file: {text!r} (a path to a .bpf.o, or a bundled probe name: {', '.join(bundled.names())})"
    )

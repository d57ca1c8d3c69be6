"""What the running kernel supports, found by small, memoized probes.

Each probe asks the kernel directly (load a tiny BTF blob or program, create a tiny map)
instead of guessing from the version number, which backports make meaningless — the way
libbpf's ``features.c`` / ``libbpf_probes.c`` and cilium/ebpf's ``features`` package work.
Results are cached per process; :func:`reset` forgets them.

The loader uses them to sanitize object BTF (:mod:`tracekit.btf.sanitize`), to decide on
the ``__arg_ctx`` fallback and to fill ``LINUX_HAS_*`` kconfig externs.  ``tracekit
features`` prints :func:`probe_all`.

:func:`override` pretends a feature is present or missing (tests of the old-kernel code
paths on a new kernel; a workaround if a probe misjudges a kernel).
"""

from __future__ import annotations

import _thread
import contextlib
import errno as _errno
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

from tracekit import _log, uapi
from tracekit.btf.sanitize import BTFFeatures
from tracekit.btf.types import (
    INT_SIGNED,
    LINKAGE_GLOBAL,
    LINKAGE_STATIC,
    EnumValue,
    Kind,
    Param,
    Type,
    VarSecinfo,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.obj.insn import BPF_PSEUDO_CALL, Insn, encode, exit_insn, mov64_imm

log = _log.getLogger("tracekit.kernel.features")
# _thread's lock is threading.Lock itself, without importing threading (~0.5 ms of start-up)
_lock = _thread.allocate_lock()
_overrides: dict[str, bool] = {}
_probes: list[Callable[..., Any]] = []


def _memo(fn: Callable[[], bool]) -> Callable[[], bool]:
    """Memoize a no-argument probe; :func:`override` wins over the cached result."""
    cached = functools.cache(fn)
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper() -> bool:
        if name in _overrides:
            return _overrides[name]
        return cached()

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    _probes.append(wrapper)
    return wrapper


# --- helpers -------------------------------------------------------------------------------


def _unknowable(err: int, op: str, kind: str, need: tuple[str, ...]) -> None:
    """Raise when ``err`` says nothing about the feature: a limit ran out (EMFILE, ENOMEM,
    ...) or we lack the privilege to ask.  Answering "no" then would be a lie that is
    also cached; the exception is not cached, so the next call asks again."""
    from tracekit.errors import RESOURCE_ERRNOS
    from tracekit.kernel.syscalls import diagnose

    if err in RESOURCE_ERRNOS - {_errno.E2BIG}:
        raise diagnose.resource_error(f"{op} (kernel feature probe)", err, kind=kind)
    if err in (_errno.EPERM, _errno.EACCES) and diagnose.missing_caps(need):
        raise diagnose.permission_error(f"{op} (kernel feature probe)", err, need)


def _load_btf(b: BTFBuilder) -> int:
    """Load a BTF blob; returns an fd (caller closes) or -errno."""
    from tracekit.kernel.syscalls import bpf, diagnose

    fd, err, _ = bpf.btf_load(b.encode())
    if err:
        _unknowable(err, "load BTF", "btf", diagnose.NEEDS_BPF)
    return fd if not err else -err


def _btf_ok(build: Callable[[BTFBuilder], object]) -> bool:
    b = BTFBuilder()
    build(b)
    fd = _load_btf(b)
    if fd >= 0:
        os.close(fd)
        return True
    return False


def _int(b: BTFBuilder, name: str = "int") -> int:
    return b.add_type(Type(Kind.INT, name, size=4, encoding=INT_SIGNED, bits=32))


def _prog_load(prog_type: int, insns: list[Insn], **kw: Any) -> tuple[int, str]:
    """Load a program; returns (0 or -errno, verifier log if asked for)."""
    import ctypes

    from tracekit.kernel.syscalls import bpf, diagnose

    want_log = kw.pop("want_log", False)
    buf = ctypes.create_string_buffer(16384) if want_log else None
    fd, err, _ = bpf.prog_load(prog_type, encode(insns), license="GPL", log_level=1 if want_log else 0,
                               log_buf=buf, **kw)
    if fd >= 0 and not err:
        os.close(fd)
        return 0, ""
    need = diagnose.NEEDS_TRACING if prog_type in bpf._PERFMON_PROG_TYPES else diagnose.NEEDS_BPF
    _unknowable(err, f"load a {uapi.ProgType(prog_type).name.lower()} program", "prog", need)
    return -err, (buf.value.decode("utf-8", "replace") if buf is not None else "")


_RET0 = [mov64_imm(0, 0), exit_insn()]


# --- BTF kinds -----------------------------------------------------------------------------


@_memo
def btf() -> bool:
    """BPF_BTF_LOAD works at all (4.18)."""
    return _btf_ok(lambda b: _int(b))


def _func_btf(b: BTFBuilder, linkage: int) -> None:
    i = _int(b)
    proto = b.add_type(Type(Kind.FUNC_PROTO, type=i, params=[Param("a", i)]))
    b.add_type(Type(Kind.FUNC, "a", type=proto, linkage=linkage))


@_memo
def btf_func() -> bool:
    """BTF_KIND_FUNC / FUNC_PROTO (5.0)."""
    return _btf_ok(lambda b: _func_btf(b, LINKAGE_STATIC))


@_memo
def btf_func_global() -> bool:
    """Global FUNC linkage: global subprograms verified on their own (5.6)."""
    return _btf_ok(lambda b: _func_btf(b, LINKAGE_GLOBAL))


def _datasec_btf(name: str) -> Callable[[BTFBuilder], None]:
    def build(b: BTFBuilder) -> None:
        i = _int(b)
        v = b.add_type(Type(Kind.VAR, "a", type=i, linkage=LINKAGE_STATIC))
        b.add_type(Type(Kind.DATASEC, name, size=4, secinfos=[VarSecinfo(v, 0, 4)]))

    return build


@_memo
def btf_datasec() -> bool:
    """BTF_KIND_VAR / DATASEC (5.2)."""
    return _btf_ok(_datasec_btf(".data"))


@_memo
def btf_qmark_datasec() -> bool:
    """DATASEC names starting with '?' (libbpf's optional-section convention; 5.19)."""
    return _btf_ok(_datasec_btf("?.data"))


@_memo
def btf_float() -> bool:
    """BTF_KIND_FLOAT (5.13)."""
    return _btf_ok(lambda b: b.add_type(Type(Kind.FLOAT, "float", size=4)) and None)


@_memo
def btf_decl_tag() -> bool:
    """BTF_KIND_DECL_TAG (5.16)."""

    def build(b: BTFBuilder) -> None:
        i = _int(b)
        v = b.add_type(Type(Kind.VAR, "a", type=i, linkage=LINKAGE_STATIC))
        b.add_type(Type(Kind.DECL_TAG, "tag", type=v, component_idx=-1))

    return _btf_ok(build)


@_memo
def btf_type_tag() -> bool:
    """BTF_KIND_TYPE_TAG (5.17)."""

    def build(b: BTFBuilder) -> None:
        i = _int(b)
        t = b.add_type(Type(Kind.TYPE_TAG, "tag", type=i))
        b.add_type(Type(Kind.PTR, type=t))

    return _btf_ok(build)


@_memo
def btf_enum64() -> bool:
    """BTF_KIND_ENUM64 (6.0)."""
    return _btf_ok(lambda b: b.add_type(Type(Kind.ENUM64, "enum64", size=8, values=[EnumValue("a", 1 << 40)])) and None)


def btf_features() -> BTFFeatures:
    """The BTF kinds the kernel accepts, as :func:`tracekit.btf.sanitize.sanitize` wants them."""
    return BTFFeatures(
        func=btf_func(),
        func_global=btf_func_global(),
        datasec=btf_datasec(),
        qmark_datasec=btf_qmark_datasec(),
        float=btf_float(),
        decl_tag=btf_decl_tag(),
        type_tag=btf_type_tag(),
        enum64=btf_enum64(),
    )


# --- verifier features -------------------------------------------------------------------


@_memo
def arg_ctx_tag() -> bool:
    """Native ``__arg_ctx`` (btf_decl_tag("arg:ctx") on a global subprogram argument; 6.8).

    A kprobe program calls a global subprogram whose ``void *`` argument is tagged
    arg:ctx and passes it to bpf_get_func_ip(), which wants the context: only a verifier
    that honours the tag accepts it (libbpf's probe, same shape).
    """
    from tracekit.btf.ext import FUNC_INFO_SIZE, FuncInfo, encode_func_info

    if not btf_decl_tag():
        return False
    b = BTFBuilder()
    i = _int(b, "a")
    ptr = b.add_type(Type(Kind.PTR, type=0))
    p_main = b.add_type(Type(Kind.FUNC_PROTO, type=i, params=[Param("a", ptr)]))
    f_main = b.add_type(Type(Kind.FUNC, "a", type=p_main, linkage=LINKAGE_GLOBAL))
    p_sub = b.add_type(Type(Kind.FUNC_PROTO, type=i, params=[Param("b", ptr)]))
    f_sub = b.add_type(Type(Kind.FUNC, "b", type=p_sub, linkage=LINKAGE_GLOBAL))
    b.add_type(Type(Kind.DECL_TAG, "arg:ctx", type=f_sub, component_idx=0))
    btf_fd = _load_btf(b)
    if btf_fd < 0:
        return False
    try:
        insns = [
            Insn(0x85, 0, BPF_PSEUDO_CALL, 0, 1),  # call the subprogram right after exit
            exit_insn(),
            Insn(0x85, 0, 0, 0, int(uapi.Helper.get_func_ip)),  # needs PTR_TO_CTX in r1
            exit_insn(),
        ]
        err, _ = _prog_load(
            uapi.ProgType.KPROBE, insns, name="tk_arg_ctx", prog_btf_fd=btf_fd,
            func_info=encode_func_info([FuncInfo(0, f_main), FuncInfo(2, f_sub)]),
            func_info_rec_size=FUNC_INFO_SIZE, kern_version=_kver(),
        )
        return err == 0
    finally:
        os.close(btf_fd)


def _kver() -> int:
    from tracekit.kernel.kconfig import kernel_version

    return kernel_version()


@_memo
def bpf_cookie() -> bool:
    """bpf_get_attach_cookie() in tracing programs (5.15): LINUX_HAS_BPF_COOKIE."""
    insns = [Insn(0x85, 0, 0, 0, int(uapi.Helper.get_attach_cookie)), exit_insn()]
    return _prog_load(uapi.ProgType.TRACEPOINT, insns, name="tk_cookie")[0] == 0


@_memo
def syscall_wrapper() -> bool:
    """Syscalls entered through ``__<arch>_sys_*`` wrappers taking pt_regs (4.17 on x86):
    LINUX_HAS_SYSCALL_WRAPPER.

    libbpf creates a kprobe on ``__x64_sys_bpf``; that needs kprobe support, which some
    kernels (this project's dev VM) lack, so the symbol is looked up in vmlinux BTF
    instead, then in kallsyms.
    """
    prefix = {"x86_64": "x64", "aarch64": "arm64", "s390x": "s390x", "riscv64": "riscv",
              "i686": "ia32", "ppc64le": "powerpc", "ppc64": "powerpc", "loongarch64": "loongarch"}
    pfx = prefix.get(os.uname().machine)
    if pfx is None:
        return False
    name = f"__{pfx}_sys_bpf"
    try:
        from tracekit.kernel import btf as kernel

        if kernel.vmlinux().find(name, Kind.FUNC):
            return True
    except Exception as e:  # no kernel BTF: ask kallsyms
        log.debug("syscall_wrapper: no vmlinux BTF (%s), reading kallsyms", e)
    from tracekit.kernel.kconfig import read_kallsyms

    return bool(read_kallsyms([name], addresses=False))


# --- program, map and attach types -------------------------------------------------------


@functools.cache
def _prog_type(t: int) -> bool:
    P = uapi.ProgType
    A = uapi.AttachType
    kw: dict[str, Any] = {"name": "tk_probe"}
    exp_err, exp_msg = 0, ""
    if t == P.CGROUP_SOCK_ADDR:
        kw["expected_attach_type"] = A.CGROUP_INET4_CONNECT
    elif t == P.CGROUP_SOCKOPT:
        kw["expected_attach_type"] = A.CGROUP_GETSOCKOPT
    elif t == P.SK_LOOKUP:
        kw["expected_attach_type"] = A.SK_LOOKUP
    elif t == P.LIRC_MODE2:
        kw["expected_attach_type"] = A.LIRC_MODE2
    elif t == P.KPROBE:
        kw["kern_version"] = _kver()
    elif t in (P.TRACING, P.LSM):
        kw.update(expected_attach_type=A.TRACE_FENTRY if t == P.TRACING else A.MODIFY_RETURN,
                  attach_btf_id=1, want_log=True)
        exp_err, exp_msg = _errno.EINVAL, "attach_btf_id 1 is not a function"
    elif t == P.EXT:
        kw.update(attach_btf_id=1, want_log=True)
        exp_err, exp_msg = _errno.EINVAL, "Cannot replace kernel functions"
    elif t == P.SYSCALL:
        kw["prog_flags"] = uapi.BPF_F_SLEEPABLE
    elif t == P.STRUCT_OPS:
        exp_err = 524  # ENOTSUPP: the type exists, but needs a struct_ops map
    elif t == P.NETFILTER:
        kw["expected_attach_type"] = A.NETFILTER
    err, logtext = _prog_load(t, _RET0, **kw)
    if exp_err:
        return err == -exp_err and (not exp_msg or exp_msg in logtext)
    return err == 0


def prog_type(t: int | str) -> bool:
    """Can programs of type ``t`` (a ProgType or its name, e.g. ``"kprobe"``) be loaded?"""
    pt = uapi.ProgType[t.upper()] if isinstance(t, str) else uapi.ProgType(t)
    key = f"prog_type_{pt.name.lower()}"
    if key in _overrides:
        return _overrides[key]
    return _prog_type(int(pt))


@functools.cache
def _map_type(t: int) -> bool:
    from tracekit.kernel.syscalls import bpf

    M = uapi.MapType
    key, value, entries, flags, extra = 4, 4, 1, 0, 0
    inner = None
    btf_fd = -1
    kw: dict[str, Any] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    name = M(t).name
    if name in ("RINGBUF", "USER_RINGBUF"):
        key, value, entries = 0, 0, page
    elif name in ("STACK", "QUEUE", "BLOOM_FILTER"):
        key = 0
    elif name == "LPM_TRIE":
        key, flags = 8, uapi.BPF_F_NO_PREALLOC
    elif name == "STACK_TRACE":
        value = 8  # an array of u64 instruction pointers
    elif name.startswith(("CGROUP_STORAGE", "PERCPU_CGROUP_STORAGE")):
        key, entries = 16, 0  # struct bpf_cgroup_storage_key, padded
    elif name in ("SK_STORAGE", "INODE_STORAGE", "TASK_STORAGE", "CGRP_STORAGE"):
        entries, flags = 0, uapi.BPF_F_NO_PREALLOC
        b = BTFBuilder()
        i = _int(b)
        btf_fd = _load_btf(b)
        if btf_fd < 0:
            return False
        kw.update(btf_fd=btf_fd, btf_key_type_id=i, btf_value_type_id=i)
    elif name == "ARENA":
        key, value, flags = 0, 0, uapi.BPF_F_MMAPABLE
    elif name in ("ARRAY_OF_MAPS", "HASH_OF_MAPS"):
        try:
            inner = bpf.map_create(M.ARRAY, 4, 4, 1)
        except OSError as e:
            _unknowable(e.errno or 0, "create an array map", "map", ("CAP_BPF",))
            return False
        kw["inner_map_fd"] = inner.fd
    elif name == "STRUCT_OPS":
        return False  # needs a kernel struct_ops type to instantiate; see prog_type("struct_ops")
    try:
        fd = bpf.map_create(t, key, value, entries, flags=flags, map_extra=extra, name="tk_probe", **kw)
    except OSError as e:
        if inner is not None:
            inner.close()
            inner = None
        if btf_fd >= 0:
            os.close(btf_fd)
            btf_fd = -1
        _unknowable(e.errno or 0, f"create a {name.lower()} map", "map", ("CAP_BPF",))
        return False
    finally:
        if inner is not None:
            inner.close()
        if btf_fd >= 0:
            os.close(btf_fd)
    fd.close()
    return True


def map_type(t: int | str) -> bool:
    """Can maps of type ``t`` (a MapType or its name, e.g. ``"ringbuf"``) be created?"""
    mt = uapi.MapType[t.upper()] if isinstance(t, str) else uapi.MapType(t)
    key = f"map_type_{mt.name.lower()}"
    if key in _overrides:
        return _overrides[key]
    return _map_type(int(mt))


#: attach types worth probing: (attach type, program type) — the program load with that
#: expected_attach_type fails with EINVAL on kernels that do not know the attach type.
_ATTACH_PROBES = {
    "trace_kprobe_multi": ("TRACE_KPROBE_MULTI", "KPROBE"),
    "trace_kprobe_session": ("TRACE_KPROBE_SESSION", "KPROBE"),
    "trace_uprobe_multi": ("TRACE_UPROBE_MULTI", "KPROBE"),
    "trace_uprobe_session": ("TRACE_UPROBE_SESSION", "KPROBE"),
    "cgroup_unix_connect": ("CGROUP_UNIX_CONNECT", "CGROUP_SOCK_ADDR"),
    "netfilter": ("NETFILTER", "NETFILTER"),
    "tcx_ingress": ("TCX_INGRESS", "SCHED_CLS"),
    "netkit_primary": ("NETKIT_PRIMARY", "SCHED_CLS"),
    "sk_reuseport_select": ("SK_REUSEPORT_SELECT", "SK_REUSEPORT"),
}


@functools.cache
def _attach_type(name: str) -> bool:
    at, pt = _ATTACH_PROBES[name]
    if at not in uapi.AttachType.__members__:
        return False
    kw = {"expected_attach_type": int(uapi.AttachType[at]), "name": "tk_probe"}
    if pt == "KPROBE":
        kw["kern_version"] = _kver()
    return _prog_load(int(uapi.ProgType[pt]), _RET0, **kw)[0] == 0


def attach_type(name: str) -> bool:
    """Does the kernel accept programs for attach type ``name`` (e.g. ``"trace_kprobe_multi"``)?"""
    name = name.lower()
    if name not in _ATTACH_PROBES:
        raise ValueError(f"no probe for attach type {name!r}; known: {', '.join(_ATTACH_PROBES)}")
    key = f"attach_type_{name}"
    if key in _overrides:
        return _overrides[key]
    return _attach_type(name)


# --- everything --------------------------------------------------------------------------

_FLAGS = (btf, btf_func, btf_func_global, btf_datasec, btf_qmark_datasec, btf_float, btf_decl_tag,
          btf_type_tag, btf_enum64, arg_ctx_tag, bpf_cookie, syscall_wrapper)


def probe_names() -> list[str]:
    """Names of the yes/no probes (keys of :func:`probe_all` besides the type tables)."""
    return [fn.__name__ for fn in _FLAGS]


def probe_all() -> dict[str, Any]:
    """Every probe result: ``{"btf_func": True, ..., "prog_type": {"kprobe": True, ...},
    "map_type": {...}, "attach_type": {...}}`` plus the kernel release."""
    out: dict[str, Any] = {"kernel_release": os.uname().release}
    for fn in _FLAGS:
        out[fn.__name__] = fn()
    out["prog_type"] = {pt.name.lower(): prog_type(pt) for pt in uapi.ProgType if pt != uapi.ProgType.UNSPEC}
    out["map_type"] = {mt.name.lower(): map_type(mt) for mt in uapi.MapType if mt != uapi.MapType.UNSPEC}
    out["attach_type"] = {n: attach_type(n) for n in _ATTACH_PROBES}
    return out


def _clear_type_caches() -> None:
    _prog_type.cache_clear()
    _map_type.cache_clear()
    _attach_type.cache_clear()


def reset() -> None:
    """Forget every cached probe result (after a kernel change; tests)."""
    for p in _probes:
        p.cache_clear()  # type: ignore[attr-defined]
    _clear_type_caches()


# override() accepts prog_type_*/map_type_*/attach_type_* names too
def _known_names() -> set[str]:
    names = {p.__name__ for p in _probes}
    names |= {f"prog_type_{pt.name.lower()}" for pt in uapi.ProgType}
    names |= {f"map_type_{mt.name.lower()}" for mt in uapi.MapType}
    names |= {f"attach_type_{n}" for n in _ATTACH_PROBES}
    return names


@contextlib.contextmanager
def override(**values: bool) -> Iterator[None]:
    """Pretend features are (un)supported inside the block: ``override(btf_float=False)``.

    Names are those of :func:`probe_all` (``btf_float``, ``arg_ctx_tag``, ...) and
    ``prog_type_<name>`` / ``map_type_<name>`` / ``attach_type_<name>``.  Process-wide:
    meant for tests of old-kernel paths and as a workaround for a misjudging probe.
    """
    bad = sorted(set(values) - _known_names())
    if bad:
        raise ValueError(f"unknown feature(s): {', '.join(bad)}")
    with _lock:
        saved = dict(_overrides)
        _overrides.update({k: bool(v) for k, v in values.items()})
    try:
        yield
    finally:
        with _lock:
            _overrides.clear()
            _overrides.update(saved)


__all__ = [
    "arg_ctx_tag", "attach_type", "bpf_cookie", "btf", "btf_datasec", "btf_decl_tag", "btf_enum64",
    "btf_features", "btf_float", "btf_func", "btf_func_global", "btf_qmark_datasec", "btf_type_tag",
    "map_type", "override", "probe_all", "probe_names", "prog_type", "reset", "syscall_wrapper",
]

"""Make an object's BTF acceptable to an older kernel, and the ``__arg_ctx`` fallback.

Pure: the kernel's abilities come in as a :class:`BTFFeatures` (from
:func:`tracekit.kernel.features.btf_features`, or built by hand).

**Sanitization** (libbpf's ``bpf_object__sanitize_btf``): a new clang emits BTF kinds an old
kernel refuses wholesale, so each unsupported kind is rewritten into an older one of the
same size that keeps type ids (and so map and func_info references) valid:

====================  ==================================================
missing               rewrite
====================  ==================================================
VAR / DATASEC         VAR -> INT (1 byte); DATASEC -> STRUCT ('.'/'?' -> '_')
DECL_TAG              INT (1 byte)
FUNC / FUNC_PROTO     FUNC -> TYPEDEF; FUNC_PROTO -> ENUM (params become values)
global FUNC linkage   static
FLOAT                 anonymous empty STRUCT of the same size
TYPE_TAG              anonymous CONST
ENUM64                UNION of 1-byte "enum64_placeholder" members; ENUM kflag cleared
'?' DATASEC names     first '?' -> '_'
====================  ==================================================

The loader must then also omit func_info/line_info when FUNC is missing.

**``__arg_ctx`` fallback** (libbpf's ``bpf_program_fixup_func_info``): kernels before 6.8
ignore ``btf_decl_tag("arg:ctx")`` and verify a global subprogram's ``void *ctx`` argument
as plain memory, so the program fails.  For each main program, every global subprogram it
contains whose argument carries the tag gets a clone of its FUNC/FUNC_PROTO in which that
argument points to an (empty) STRUCT named like the context type the verifier expects for
the program type; the program's func_info record is repointed to the clone.  The clones
are appended, so one BTF serves every program of the object.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tracekit import _log
from tracekit._record import FrozenRecord, Record
from tracekit.btf.ext import FuncInfo
from tracekit.btf.reader import BTF
from tracekit.btf.types import (
    LINKAGE_GLOBAL,
    LINKAGE_STATIC,
    EnumValue,
    Kind,
    Member,
    Type,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError

log = _log.getLogger("tracekit.btf.sanitize")


class BTFFeatures(FrozenRecord):
    """Which BTF kinds the target kernel accepts (all True: a current kernel).  Immutable;
    a plain class rather than a dataclass: see tracekit._record (start-up cost, issue 13)."""

    __slots__ = ("func", "func_global", "datasec", "qmark_datasec", "float", "decl_tag", "type_tag", "enum64")
    _fields = __slots__
    func: bool
    func_global: bool
    datasec: bool
    qmark_datasec: bool
    float: bool
    decl_tag: bool
    type_tag: bool
    enum64: bool

    def __init__(self, func: bool = True, func_global: bool = True, datasec: bool = True,
                 qmark_datasec: bool = True, float: bool = True, decl_tag: bool = True,
                 type_tag: bool = True, enum64: bool = True) -> None:
        s = object.__setattr__
        s(self, "func", func)
        s(self, "func_global", func_global)
        s(self, "datasec", datasec)
        s(self, "qmark_datasec", qmark_datasec)
        s(self, "float", float)
        s(self, "decl_tag", decl_tag)
        s(self, "type_tag", type_tag)
        s(self, "enum64", enum64)

    def missing(self) -> list[str]:
        return [n for n in self._fields if not getattr(self, n)]


def _kinds_present(btf: BTF) -> set[Kind]:
    return {btf.kind_of(tid) for tid in range(btf.start_id, len(btf))}


def needs_sanitization(btf: BTF, feats: BTFFeatures) -> bool:
    """Does ``btf`` use anything ``feats`` says the kernel lacks?"""
    if not feats.missing():
        return False
    kinds = _kinds_present(btf)
    if not feats.datasec and kinds & {Kind.VAR, Kind.DATASEC}:
        return True
    if not feats.decl_tag and Kind.DECL_TAG in kinds:
        return True
    if not feats.func and kinds & {Kind.FUNC, Kind.FUNC_PROTO}:
        return True
    if not feats.float and Kind.FLOAT in kinds:
        return True
    if not feats.type_tag and Kind.TYPE_TAG in kinds:
        return True
    if not feats.enum64 and kinds & {Kind.ENUM64, Kind.ENUM}:
        return True
    if not feats.func_global and Kind.FUNC in kinds:
        return any(btf.type(t).linkage == LINKAGE_GLOBAL for t in range(btf.start_id, len(btf))
                   if btf.kind_of(t) == Kind.FUNC)
    if not feats.qmark_datasec and Kind.DATASEC in kinds:
        return any(btf.name_of(t).startswith("?") for t in range(btf.start_id, len(btf))
                   if btf.kind_of(t) == Kind.DATASEC)
    return False


def sanitize_builder(b: BTFBuilder, feats: BTFFeatures) -> None:
    """Rewrite, in place, every type of ``b`` the kernel described by ``feats`` lacks."""
    if not feats.missing():
        return
    placeholder = 0
    n = len(b.types)
    first = 1 if b.base is None else 0
    for idx in range(first, n):
        t = b.types[idx]
        k = t.kind
        if (k == Kind.VAR and not feats.datasec) or (k == Kind.DECL_TAG and not feats.decl_tag):
            # 1 byte: a larger INT could overflow the STRUCT that replaces its DATASEC
            b.types[idx] = Type(Kind.INT, t.name, size=1, encoding=0, bits=8)
        elif k == Kind.DATASEC and not feats.datasec:
            members = []
            for vs in t.secinfos:
                var = b.type(vs.type)
                members.append(Member(var.name, vs.type, vs.offset * 8))
            name = t.name.replace(".", "_").replace("?", "_")
            b.types[idx] = Type(Kind.STRUCT, name, size=t.size, members=members)
        elif k == Kind.DATASEC and not feats.qmark_datasec and t.name.startswith("?"):
            t.name = "_" + t.name[1:]
        elif k == Kind.FUNC_PROTO and not feats.func:
            # Enum values need names on current kernels; unnamed params get one.
            vals = [EnumValue(p.name or f"_arg{i}", p.type) for i, p in enumerate(t.params)]
            b.types[idx] = Type(Kind.ENUM, "", size=4, values=vals)
        elif k == Kind.FUNC and not feats.func:
            b.types[idx] = Type(Kind.TYPEDEF, t.name, type=t.type)
        elif k == Kind.FUNC and not feats.func_global:
            t.linkage = LINKAGE_STATIC
        elif k == Kind.FLOAT and not feats.float:
            # C has no struct named "float": anonymous
            b.types[idx] = Type(Kind.STRUCT, "", size=t.size)
        elif k == Kind.TYPE_TAG and not feats.type_tag:
            b.types[idx] = Type(Kind.CONST, "", type=t.type)
        elif k == Kind.ENUM and not feats.enum64:
            t.kflag = False  # the signedness flag came with ENUM64
        elif k == Kind.ENUM64 and not feats.enum64:
            if not placeholder:
                placeholder = b.add_type(Type(Kind.INT, "enum64_placeholder", size=1, encoding=0, bits=8))
            b.types[idx] = Type(Kind.UNION, t.name, size=t.size,
                                members=[Member(v.name, placeholder, 0) for v in t.values])


def sanitize(btf: BTF, feats: BTFFeatures) -> bytes:
    """The BTF bytes to load into a kernel described by ``feats`` (``btf.data`` if fine)."""
    if not needs_sanitization(btf, feats):
        return btf.data
    b = BTFBuilder.from_btf(btf)
    sanitize_builder(b, feats)
    return b.encode()


# --- __arg_ctx fallback -----------------------------------------------------------------

ARG_CTX_TAG = "arg:ctx"

#: context struct the verifier expects, by program type (``enum bpf_prog_type`` values);
#: program types without a named context struct (tracepoint, tracing, ...) get no fallback
CTX_TYPE_BY_PROG_TYPE: dict[int, str] = {
    1: "__sk_buff",  # socket_filter
    2: "bpf_user_pt_regs_t",  # kprobe
    3: "__sk_buff",  # sched_cls
    4: "__sk_buff",  # sched_act
    6: "xdp_md",  # xdp
    7: "bpf_perf_event_data",  # perf_event
    8: "__sk_buff",  # cgroup_skb
    9: "bpf_sock",  # cgroup_sock
    10: "__sk_buff",  # lwt_in
    11: "__sk_buff",  # lwt_out
    12: "__sk_buff",  # lwt_xmit
    13: "bpf_sock_ops",  # sock_ops
    14: "__sk_buff",  # sk_skb
    15: "bpf_cgroup_dev_ctx",  # cgroup_device
    16: "sk_msg_md",  # sk_msg
    17: "bpf_raw_tracepoint_args",  # raw_tracepoint
    18: "bpf_sock_addr",  # cgroup_sock_addr
    19: "__sk_buff",  # lwt_seg6local
    21: "sk_reuseport_md",  # sk_reuseport
    22: "__sk_buff",  # flow_dissector
    23: "bpf_sysctl",  # cgroup_sysctl
    24: "bpf_raw_tracepoint_args",  # raw_tracepoint_writable
    25: "bpf_sockopt",  # cgroup_sockopt
    30: "bpf_sk_lookup",  # sk_lookup
    32: "bpf_nf_ctx",  # netfilter
}

_KPROBE, _PERF_EVENT, _RAW_TP, _RAW_TP_W = 2, 7, 17, 24


def arg_ctx_tags(btf: BTF | BTFBuilder) -> dict[int, list[int]]:
    """Global FUNC id -> indices of its arguments tagged ``arg:ctx``."""
    out: dict[int, list[int]] = {}
    src = btf
    if isinstance(btf, BTF):
        ids = btf.find(ARG_CTX_TAG, Kind.DECL_TAG)
    else:
        ids = [i for i in range(1, len(btf)) if btf.type(i).kind == Kind.DECL_TAG and btf.type(i).name == ARG_CTX_TAG]
    for tid in ids:
        tag = src.type(tid)
        fn = src.type(tag.type)
        if fn.kind != Kind.FUNC or fn.linkage != LINKAGE_GLOBAL:
            continue
        proto = src.type(fn.type)
        if proto.kind != Kind.FUNC_PROTO or not (0 <= tag.component_idx < len(proto.params)):
            continue
        out.setdefault(tag.type, []).append(tag.component_idx)
    return out


def _skip_mods(b: BTFBuilder, tid: int, *, keep_typedef: bool = False) -> int:
    for _ in range(64):
        t = b.type(tid)
        if t.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG) or (
            t.kind == Kind.TYPEDEF and not keep_typedef
        ):
            tid = t.type
            continue
        return tid
    raise BTFError(f"modifier chain too long at type {tid}")


def _needs_fixup(b: BTFBuilder, prog_type: int, arg_type: int, ctx_name: str) -> bool | str:
    """True to retype the argument; False if it already fits; a str: why it cannot be."""
    t = b.type(_skip_mods(b, arg_type))
    if t.kind != Kind.PTR:
        return f"is {t.kind.name.lower()}, not a pointer"
    pointee = _skip_mods(b, t.type, keep_typedef=True)
    pt = b.type(pointee)
    if pt.kind == Kind.TYPEDEF and prog_type in (_KPROBE, _PERF_EVENT) and pt.name == "bpf_user_pt_regs_t":
        return False  # the canonical kprobe/perf_event context
    pt = b.type(_skip_mods(b, pointee))
    if pt.kind == Kind.UNKN:
        return True  # void *: the common case
    if pt.kind == Kind.STRUCT and pt.name == ctx_name:
        return False
    if prog_type == _KPROBE and pt.kind == Kind.STRUCT and pt.name == "pt_regs":
        return True
    if prog_type == _PERF_EVENT and pt.kind == Kind.STRUCT and pt.name == "pt_regs":
        return True  # x86: bpf_user_pt_regs_t is struct pt_regs
    if prog_type in (_RAW_TP, _RAW_TP_W) and pt.kind == Kind.INT and pt.size == 8:
        return True  # u64 *ctx
    return f"should be `struct {ctx_name} *`"


def fixup_arg_ctx(
    b: BTFBuilder,
    prog_type: int,
    func_info: Sequence[FuncInfo],
    *,
    prog_name: str = "",
    tags: dict[int, list[int]] | None = None,
) -> list[FuncInfo]:
    """Clone tagged global subprogram FUNCs for one program; returns its new func_info.

    ``b`` gets the clones (and one ``struct <ctx> *`` chain) appended; records of
    functions without tagged arguments are returned unchanged.  ``tags`` is
    :func:`arg_ctx_tags` of the original BTF (computed if not given).
    """
    ctx_name = CTX_TYPE_BY_PROG_TYPE.get(prog_type)
    if ctx_name is None:
        return list(func_info)
    if tags is None:
        tags = arg_ctx_tags(b)
    if not tags:
        return list(func_info)
    out: list[FuncInfo] = []
    ptr = 0
    for rec in func_info:
        args = tags.get(rec.type_id)
        if not args:
            out.append(rec)
            continue
        fn = b.type(rec.type_id)
        proto = b.type(fn.type)
        new_params = [type(p)(p.name, p.type) for p in proto.params]
        changed = False
        for idx in args:
            verdict = _needs_fixup(b, prog_type, proto.params[idx].type, ctx_name)
            if isinstance(verdict, str):
                log.warning("program %s: subprogram %s argument #%d tagged arg:ctx %s", prog_name, fn.name, idx, verdict)
                continue
            if not verdict:
                continue
            if not ptr:
                struct = b.add_type(Type(Kind.STRUCT, ctx_name, size=0))
                ptr = b.add_type(Type(Kind.PTR, type=struct))
            new_params[idx].type = ptr
            changed = True
        if not changed:
            out.append(rec)
            continue
        new_proto = b.add_type(Type(Kind.FUNC_PROTO, type=proto.type, params=new_params))
        clone = b.add_type(Type(Kind.FUNC, fn.name, type=new_proto, linkage=fn.linkage))
        out.append(FuncInfo(rec.insn, clone))
    return out


class PreparedBTF(Record):
    """The object BTF as the kernel should get it, and per-program func_info overrides."""

    _fields = ("data", "func_info", "func_info_ok")

    def __init__(self, data: bytes, func_info: dict[str, list[FuncInfo]], func_info_ok: bool) -> None:
        self.data = data
        self.func_info = func_info  # program name -> func_info (only changed ones)
        self.func_info_ok = func_info_ok  # False: the kernel lacks FUNC, so load programs without func/line info


def prepare(
    btf: BTF,
    feats: BTFFeatures,
    programs: Sequence[tuple[str, int, Sequence[FuncInfo]]],
    *,
    arg_ctx_native: bool | Callable[[], bool],
) -> PreparedBTF:
    """``__arg_ctx`` fallback (unless ``arg_ctx_native``) then sanitization, in libbpf's order.

    ``programs`` lists ``(name, prog_type, func_info)`` of every program to be loaded.
    ``arg_ctx_native`` may be a callable (a feature probe), asked only when some
    subprogram argument is tagged.  Untouched BTF is returned as is (no re-encoding).
    """
    overrides: dict[str, list[FuncInfo]] = {}
    b: BTFBuilder | None = None
    if feats.decl_tag and feats.func:
        tags = arg_ctx_tags(btf)
        if tags and not (arg_ctx_native() if callable(arg_ctx_native) else arg_ctx_native):
            b = BTFBuilder.from_btf(btf)
            for name, prog_type, func_info in programs:
                new = fixup_arg_ctx(b, prog_type, func_info, prog_name=name, tags=tags)
                if new != list(func_info):
                    overrides[name] = new
            if not overrides:
                b = None
    if b is None:
        if not needs_sanitization(btf, feats):
            return PreparedBTF(btf.data, overrides, True)
        b = BTFBuilder.from_btf(btf)
    sanitize_builder(b, feats)
    return PreparedBTF(b.encode(), overrides, feats.func)

"""BTF sanitization for old kernels and the __arg_ctx fallback: exact rewritten types."""

from __future__ import annotations

import pytest

from tests.support import build_bpf_object
from tracekit.btf.ext import FuncInfo
from tracekit.btf.reader import BTF
from tracekit.btf.sanitize import (
    BTFFeatures,
    arg_ctx_tags,
    fixup_arg_ctx,
    needs_sanitization,
    prepare,
    sanitize,
)
from tracekit.btf.types import (
    INT_SIGNED,
    LINKAGE_GLOBAL,
    EnumValue,
    Kind,
    Member,
    Param,
    Type,
    VarSecinfo,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.obj import elf

NONE = BTFFeatures(*([False] * 8))


def _all_kinds() -> tuple[BTF, dict[str, int]]:
    b = BTFBuilder()
    ids: dict[str, int] = {}
    ids["int"] = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    ids["var"] = b.add_type(Type(Kind.VAR, "counter", type=ids["int"], linkage=1))
    ids["var2"] = b.add_type(Type(Kind.VAR, "flag", type=ids["int"], linkage=1))
    ids["datasec"] = b.add_type(Type(Kind.DATASEC, ".data.x", size=8,
                                     secinfos=[VarSecinfo(ids["var"], 0, 4), VarSecinfo(ids["var2"], 4, 4)]))
    ids["qsec"] = b.add_type(Type(Kind.DATASEC, "?.maps", size=0))
    ids["proto"] = b.add_type(Type(Kind.FUNC_PROTO, type=ids["int"], params=[Param("a", ids["int"]), Param("", ids["int"])]))
    ids["func"] = b.add_type(Type(Kind.FUNC, "f", type=ids["proto"], linkage=LINKAGE_GLOBAL))
    ids["tag"] = b.add_type(Type(Kind.DECL_TAG, "arg:ctx", type=ids["func"], component_idx=0))
    ids["float"] = b.add_type(Type(Kind.FLOAT, "double", size=8))
    ids["ttag"] = b.add_type(Type(Kind.TYPE_TAG, "user", type=ids["int"]))
    ids["enum"] = b.add_type(Type(Kind.ENUM, "e", size=4, kflag=True, values=[EnumValue("A", -1)]))
    ids["enum64"] = b.add_type(Type(Kind.ENUM64, "e64", size=8, values=[EnumValue("B", 1 << 40), EnumValue("C", 2)]))
    return b.to_btf(name="all"), ids


def test_nothing_missing_is_identity() -> None:
    btf, _ = _all_kinds()
    assert not needs_sanitization(btf, BTFFeatures())
    assert sanitize(btf, BTFFeatures()) is btf.data


def test_every_kind_rewritten() -> None:
    btf, ids = _all_kinds()
    assert needs_sanitization(btf, NONE)
    out = BTF(sanitize(btf, NONE))
    assert len(out) == len(btf) + 1  # + the enum64 placeholder; ids unchanged
    t = out.type
    for v in ("var", "var2", "tag"):
        assert (t(ids[v]).kind, t(ids[v]).size, t(ids[v]).bits, t(ids[v]).encoding) == (Kind.INT, 1, 8, 0)
    assert t(ids["var"]).name == "counter" and t(ids["tag"]).name == "arg:ctx"
    ds = t(ids["datasec"])
    assert (ds.kind, ds.name, ds.size) == (Kind.STRUCT, "_data_x", 8)
    assert ds.members == [Member("counter", ids["var"], 0), Member("flag", ids["var2"], 32)]
    assert (t(ids["qsec"]).kind, t(ids["qsec"]).name) == (Kind.STRUCT, "__maps")
    pr = t(ids["proto"])
    assert (pr.kind, pr.size, pr.name) == (Kind.ENUM, 4, "")
    assert pr.values == [EnumValue("a", ids["int"]), EnumValue("_arg1", ids["int"])]
    fn = t(ids["func"])
    assert (fn.kind, fn.name, fn.type) == (Kind.TYPEDEF, "f", ids["proto"])
    fl = t(ids["float"])
    assert (fl.kind, fl.name, fl.size, fl.members) == (Kind.STRUCT, "", 8, [])
    tt = t(ids["ttag"])
    assert (tt.kind, tt.name, tt.type) == (Kind.CONST, "", ids["int"])
    assert t(ids["enum"]).kind == Kind.ENUM and not t(ids["enum"]).kflag
    e64 = t(ids["enum64"])
    ph = len(btf)
    assert (t(ph).kind, t(ph).name, t(ph).size) == (Kind.INT, "enum64_placeholder", 1)
    assert (e64.kind, e64.name, e64.size) == (Kind.UNION, "e64", 8)
    assert e64.members == [Member("B", ph, 0), Member("C", ph, 0)]


def test_partial_features() -> None:
    btf, ids = _all_kinds()
    only_global = BTFFeatures(func_global=False)
    out = BTF(sanitize(btf, only_global))
    assert out.type(ids["func"]).kind == Kind.FUNC and out.type(ids["func"]).linkage == 0
    assert out.type(ids["datasec"]).kind == Kind.DATASEC  # untouched
    out = BTF(sanitize(btf, BTFFeatures(qmark_datasec=False)))
    assert (out.type(ids["qsec"]).kind, out.type(ids["qsec"]).name) == (Kind.DATASEC, "_.maps")
    assert out.type(ids["datasec"]).name == ".data.x"
    # strings of the original table are kept as a prefix (BTF.ext offsets stay valid)
    assert out.strings.startswith(btf.strings)


# --- __arg_ctx ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def argctx():
    return elf.load_spec(build_bpf_object("argctx_fallback.bpf.c"))


def _sub_func_info(spec, prog: str) -> list[FuncInfo]:
    from tracekit.obj.plan import link_program

    return link_program(spec, spec.programs[prog]).func_info


@pytest.mark.parametrize(("prog", "prog_type", "ctx"), [
    ("argctx_raw_tp", 17, "bpf_raw_tracepoint_args"),
    ("argctx_kprobe", 2, "bpf_user_pt_regs_t"),
])
def test_arg_ctx_clone(argctx, prog, prog_type, ctx) -> None:
    btf = argctx.btf
    tags = arg_ctx_tags(btf)
    sub = "raw_sub" if prog_type == 17 else "kprobe_sub"
    sub_id = btf.find_one(sub, Kind.FUNC)
    assert tags == {btf.find_one("raw_sub", Kind.FUNC): [0], btf.find_one("kprobe_sub", Kind.FUNC): [0]}
    fi = _sub_func_info(argctx, prog)
    b = BTFBuilder.from_btf(btf)
    new = fixup_arg_ctx(b, prog_type, fi, prog_name=prog, tags=tags)
    out = b.to_btf()
    assert [r.insn for r in new] == [r.insn for r in fi]
    changed = [(o, n) for o, n in zip(fi, new) if o.type_id != n.type_id]
    assert [o.type_id for o, _ in changed] == [sub_id]  # only the tagged subprogram
    clone = out.type(changed[0][1].type_id)
    assert (clone.kind, clone.name, clone.linkage) == (Kind.FUNC, sub, LINKAGE_GLOBAL)
    proto = out.type(clone.type)
    assert proto.type == btf.type(btf.type(sub_id).type).type  # same return type
    arg = out.type(proto.params[0].type)
    assert arg.kind == Kind.PTR and proto.params[0].name == "ctx"
    st = out.type(arg.type)
    assert (st.kind, st.name, st.size, st.members) == (Kind.STRUCT, ctx, 0, [])
    # the original FUNC is untouched (other programs keep using it)
    assert out.type(btf.type(sub_id).type).params[0].type == btf.type(btf.type(sub_id).type).params[0].type


def test_arg_ctx_not_for_types_without_named_ctx(argctx) -> None:
    fi = _sub_func_info(argctx, "argctx_raw_tp")
    b = BTFBuilder.from_btf(argctx.btf)
    assert fixup_arg_ctx(b, 5, fi) == fi  # tracepoint: no named context struct
    assert len(b) == len(argctx.btf)


def test_prepare_native_vs_fallback(argctx) -> None:
    progs = [(n, p.prog_type, _sub_func_info(argctx, n)) for n, p in argctx.programs.items()]
    asked = []
    native = prepare(argctx.btf, BTFFeatures(), progs, arg_ctx_native=lambda: asked.append(1) or True)
    assert native.data is argctx.btf.data and native.func_info == {} and native.func_info_ok and asked == [1]
    fb = prepare(argctx.btf, BTFFeatures(), progs, arg_ctx_native=False)
    assert set(fb.func_info) == {"argctx_raw_tp", "argctx_kprobe"}
    out = BTF(fb.data)
    assert len(out) == len(argctx.btf) + 2 * 2 + 2 * 2  # per program: FUNC_PROTO+FUNC clone, STRUCT+PTR
    # sanitization runs after the fallback, on the clones too
    nofunc = prepare(argctx.btf, BTFFeatures(func=False), progs, arg_ctx_native=False)
    assert not nofunc.func_info_ok and nofunc.func_info == {}

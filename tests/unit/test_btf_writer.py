"""tracekit.btf.writer: BTFBuilder encodes every kind; round trips are byte-identical."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.support import build_bpf_object
from tracekit.btf.reader import BTF
from tracekit.btf.types import (
    INT_SIGNED,
    EnumValue,
    Kind,
    Member,
    Param,
    Type,
    VarSecinfo,
)
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError

VMLINUX = Path("/sys/kernel/btf/vmlinux")


def test_empty_builder():
    data = BTFBuilder().encode()
    assert data == struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"\0"
    assert len(BTF(data)) == 1


@pytest.mark.parametrize("defines", [[], ["LEGACY_MAPS"]])
def test_clang_object_round_trip(defines):
    src = "elf_full.bpf.c" if not defines else "elf_bad.bpf.c"
    btf = BTF.from_file(str(build_bpf_object(src, defines=defines)))
    b = BTFBuilder.from_btf(btf)
    assert b.encode() == btf.data  # untouched types copied raw
    for tid in range(len(b.types)):  # force a decode of every type, then encode each
        b.types[tid]
    assert b.encode() == btf.data


def test_vmlinux_round_trip():
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    data = VMLINUX.read_bytes()
    b = BTFBuilder.from_btf(BTF(data))
    for tid in range(len(b.types)):
        b.types[tid]
    assert b.encode() == data


def _every_kind() -> BTFBuilder:
    b = BTFBuilder()
    i32 = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))  # 1
    u8 = b.add_type(Type(Kind.INT, "u8", size=1, bits=8))  # 2
    ptr = b.add_type(Type(Kind.PTR, type=i32))  # 3
    arr = b.add_type(Type(Kind.ARRAY, type=u8, index_type=i32, nelems=16))  # 4
    st = b.add_type(Type(Kind.STRUCT, "bits", size=8, kflag=True, members=[
        Member("a", i32, 0, 3), Member("b", i32, 3, 29), Member("c", u8, 32, 0)]))  # 5
    un = b.add_type(Type(Kind.UNION, "u", size=8, members=[Member("x", i32, 0), Member("p", ptr, 0)]))  # 6
    en = b.add_type(Type(Kind.ENUM, "e", size=4, kflag=True, values=[EnumValue("NEG", -1), EnumValue("ONE", 1)]))  # 7
    e64 = b.add_type(Type(Kind.ENUM64, "e64", size=8, values=[EnumValue("BIG", 1 << 40 | 5), EnumValue("MAX", (1 << 64) - 1)]))  # 8
    fwd = b.add_type(Type(Kind.FWD, "fu", kflag=True))  # 9
    td = b.add_type(Type(Kind.TYPEDEF, "myint", type=i32))  # 10
    vol = b.add_type(Type(Kind.VOLATILE, type=td))  # 11
    cst = b.add_type(Type(Kind.CONST, type=vol))  # 12
    rst = b.add_type(Type(Kind.RESTRICT, type=ptr))  # 13
    proto = b.add_type(Type(Kind.FUNC_PROTO, type=i32, params=[Param("x", i32), Param("", 0)]))  # 14
    fn = b.add_type(Type(Kind.FUNC, "f", type=proto, linkage=1))  # 15
    var = b.add_type(Type(Kind.VAR, "v", type=cst, linkage=2))  # 16
    ds = b.add_type(Type(Kind.DATASEC, ".data", size=4, secinfos=[VarSecinfo(var, 0, 4)]))  # 17
    fl = b.add_type(Type(Kind.FLOAT, "double", size=8))  # 18
    tag = b.add_type(Type(Kind.DECL_TAG, "arg:ctx", type=fn, component_idx=0))  # 19
    tag2 = b.add_type(Type(Kind.DECL_TAG, "whole", type=st, component_idx=-1))  # 20
    tt = b.add_type(Type(Kind.TYPE_TAG, "user", type=i32, kflag=True))  # 21
    assert (i32, tt) == (1, 21) and fl == 18 and tag2 == 20 and arr == 4 and un == 6 and en == 7
    assert e64 == 8 and fwd == 9 and rst == 13 and ds == 17 and tag == 19
    return b


def test_every_kind_round_trips():
    b = _every_kind()
    data = b.encode()
    btf = BTF(data)
    assert len(btf) == 22
    for tid in range(1, 22):
        ours, back = b.types[tid], btf.type(tid)
        for f in Type.__slots__:
            assert getattr(ours, f) == getattr(back, f), (tid, f)
    # re-encoding what we read gives the same bytes
    assert BTFBuilder.from_btf(btf).encode() == data


def test_exact_words():
    b = _every_kind()
    data = b.encode()
    words = struct.unpack_from("<" + "I" * ((len(data) - 24) // 4), data, 24)
    strs = b.strings
    off = {s: strs.index(s.encode() + b"\0") for s in ("int", "bits", "a", "b", "e64", "BIG", "f", "v")}
    # INT int: name, info, size, encoding word
    assert words[0:4] == (off["int"], 1 << 24, 4, (INT_SIGNED << 24) | 32)
    # struct bits (after INT, INT, PTR, ARRAY = 4+4+3+6 words): kflag, vlen 3, bitfield offsets
    s = 4 + 4 + 3 + 6
    assert words[s:s + 3] == (off["bits"], (1 << 31) | (4 << 24) | 3, 8)
    assert words[s + 3:s + 6] == (off["a"], 1, (3 << 24) | 0)
    assert words[s + 6:s + 9] == (off["b"], 1, (29 << 24) | 3)
    # ARRAY: size/type word is 0
    assert words[11:17] == (0, 3 << 24, 0, 2, 1, 16)


def test_func_var_linkage_and_enum64_on_the_wire():
    b = _every_kind()
    btf = BTF(b.encode())
    assert btf.type(15).linkage == 1 and btf.type(16).linkage == 2
    assert [(v.name, v.value) for v in btf.type(8).values] == [("BIG", (1 << 40) | 5), ("MAX", (1 << 64) - 1)]
    assert [(v.name, v.value) for v in btf.type(7).values] == [("NEG", -1), ("ONE", 1)]
    assert btf.type(19).component_idx == 0 and btf.type(20).component_idx == -1


def test_from_btf_keeps_string_prefix_and_appends_dedup():
    btf = BTF.from_file(str(build_bpf_object("elf_full.bpf.c")))
    b = BTFBuilder.from_btf(btf)
    n = len(btf.strings)
    assert b.add_string("task_struct") == btf.strings.index(b"\0task_struct\0") + 1
    off = b.add_string("brand_new_name")
    assert off == n and b.add_string("brand_new_name") == n
    assert b.strings[:n] == btf.strings
    tid = b.add_type(Type(Kind.TYPEDEF, "brand_new_name", type=1))
    out = BTF(b.encode())
    assert tid == len(btf) and out.name_of(tid) == "brand_new_name"
    assert out.strings[:n] == btf.strings


def test_mutation_is_encoded_and_reader_cache_untouched():
    btf = BTF.from_file(str(build_bpf_object("elf_full.bpf.c")))
    sid = btf.find_one(".rodata", Kind.DATASEC)
    b = BTFBuilder.from_btf(btf)
    b.types[sid].size = 16
    assert btf.type(sid).size == 0  # the reader's object is not shared
    assert BTF(b.encode()).type(sid).size == 16


def test_split_btf_builder():
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    base = BTF(VMLINUX.read_bytes())
    b = BTFBuilder(base=base)
    int_id = base.find_one("int", Kind.INT)
    ts = base.find_one("task_struct", Kind.STRUCT)
    p = b.add_type(Type(Kind.PTR, type=ts))
    s = b.add_type(Type(Kind.STRUCT, "my_mod_struct", size=16, members=[Member("task", p, 0), Member("pid", int_id, 64)]))
    assert (p, s) == (len(base), len(base) + 1)
    data = b.encode()
    split = BTF(data, base=base)
    assert split.find("my_mod_struct") == [s]
    assert split.describe(split.type(s).members[0].type) == "struct task_struct *"
    # "int" and "pid" exist in the base: reused from the base's table, not stored again
    assert b.strings == b"\0my_mod_struct\0"
    assert b"int\0" not in b.strings


def test_errors():
    b = BTFBuilder()
    with pytest.raises(BTFError):
        b.add_type(Type(Kind.UNKN))
    with pytest.raises(BTFError):
        b.add_string("a\0b")
    b.add_type(Type(Kind.STRUCT, "big", members=[Member(f"m{i}", 0, 0) for i in range(70000)]))
    with pytest.raises(BTFError, match="65535"):
        b.encode()

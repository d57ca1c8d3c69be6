"""BTF with layout information (Linux 7.1+, pahole 1.31+), from tracekit's own BTF writer.

The header grows by ``layout_off``/``layout_len`` and a layout section (one
``{u8 info_sz; u8 elem_sz; u16 flags}`` per kind) sits between types and strings; with
it a parser can step over kinds it does not know.  Same types with and without the
section must read identically; a kind that does not exist yet is stepped over (and kept
opaque, re-encoded unchanged); without a layout it is still an error.
"""

from __future__ import annotations

import struct

import pytest

from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_SIGNED, Kind, Member, Type
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError

def _f(t: Type) -> dict:
    # Type compares by identity: compare its fields, with members/params/... as dicts too
    def plain(v: object) -> object:
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v._asdict() if hasattr(v, "_asdict") else v

    return {n: plain(getattr(t, n)) for n in t._fields}


NEW_KIND = 42  # a kind no kernel has yet: 8 fixed bytes + 4 per vlen entry


def _types(with_new_kind: bool) -> BTFBuilder:
    b = BTFBuilder()
    i = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    if with_new_kind:
        b.add_type(Type(Kind.UNKN, "future_thing", size=7, raw_kind=NEW_KIND, raw_vlen=3,
                        raw_words=(0xAAAA, 0xBBBB, 1, 2, 3)))
    b.add_type(Type(Kind.STRUCT, "task", size=8, members=[Member("pid", i, 0), Member("tgid", i, 32)]))
    b.add_type(Type(Kind.PTR, "", type=i))
    return b


def test_layout_section_header_and_placement() -> None:
    data = _types(False).encode(layout=True)
    magic, ver, flags, hdr_len, type_off, type_len, str_off, str_len, lay_off, lay_len = struct.unpack_from(
        "<HBBIIIIIII", data)
    assert (magic, ver, hdr_len) == (0xEB9F, 1, 32)
    assert lay_off == type_off + type_len and str_off == lay_off + lay_len and lay_len == 4 * 20
    # the table: STRUCT has 0 fixed bytes + 12 per member, INT 4 fixed bytes
    lay = [struct.unpack_from("<BBH", data, 32 + lay_off + 4 * k) for k in range(20)]
    assert lay[Kind.STRUCT] == (0, 12, 0) and lay[Kind.INT] == (4, 0, 0) and lay[Kind.ENUM64] == (0, 12, 0)
    btf = BTF(data)
    assert btf.hdr_len == 32 and btf.layout == lay


def test_same_types_read_the_same_with_and_without_layout() -> None:
    plain, laid = BTF(_types(False).encode()), BTF(_types(False).encode(layout=True))
    assert len(plain) == len(laid) == 4
    for tid in range(1, 4):
        assert _f(plain.type(tid)) == _f(laid.type(tid))
    assert laid.find("task", Kind.STRUCT) == plain.find("task", Kind.STRUCT) == [2]


def test_an_unknown_kind_is_stepped_over_by_its_layout() -> None:
    data = _types(True).encode(layout={NEW_KIND: (8, 4)})
    btf = BTF(data)
    assert len(btf) == 5
    assert btf.kind_of(2) == Kind.UNKN  # opaque: matches nothing
    t = btf.type(2)
    assert (t.raw_kind, t.raw_vlen, t.raw_words, t.name) == (NEW_KIND, 3, (0xAAAA, 0xBBBB, 1, 2, 3), "future_thing")
    # the types after it are where they should be
    task = btf.type(btf.find("task", Kind.STRUCT)[0])
    assert [m.name for m in task.members] == ["pid", "tgid"]
    assert btf.kind_of(4) == Kind.PTR and btf.type(4).type == 1
    # re-encoding keeps the unknown type byte for byte
    again = BTFBuilder.from_btf(btf)
    assert _f(BTF(again.encode(layout={NEW_KIND: (8, 4)})).type(2)) == _f(t)


def test_an_unknown_kind_without_layout_is_an_error() -> None:
    data = _types(True).encode()  # no layout section: nobody can step over kind 42
    with pytest.raises(BTFError, match="truncated or has an unknown kind"):
        BTF(data)
    bad = _types(True).encode(layout={NEW_KIND: (6, 4)})  # not a multiple of 4: refused (libbpf too)
    with pytest.raises(BTFError):
        BTF(bad)


def test_split_btf_uses_its_bases_layout() -> None:
    base = BTF(_types(False).encode(layout={NEW_KIND: (8, 4)}))
    split = BTFBuilder(base)
    split.add_type(Type(Kind.UNKN, "mod_future", size=1, raw_kind=NEW_KIND, raw_vlen=1, raw_words=(5, 6, 7)))
    split.add_type(Type(Kind.TYPEDEF, "mod_int", type=1))
    mod = BTF(split.encode(), base)  # the module blob itself has no layout section
    assert mod.kind_of(len(base)) == Kind.UNKN and mod.type(len(base) + 1).name == "mod_int"


@pytest.mark.parametrize("field,value,msg", [
    (24, 2, "misplaced"),            # layout_off not 4-byte aligned
    (28, -2, "multiple of 4"),       # layout_len not a multiple of 4
])
def test_malformed_layout_headers_are_refused(field: int, value: int, msg: str) -> None:
    data = bytearray(_types(False).encode(layout=True))
    struct.pack_into("<I", data, field, struct.unpack_from("<I", data, field)[0] + value)
    with pytest.raises(BTFError, match=msg):
        BTF(bytes(data))


def test_a_header_longer_than_ours_with_nonzero_tail_is_refused() -> None:
    data = bytearray(_types(False).encode(layout=True))
    hdr = 36
    data[4:8] = struct.pack("<I", hdr)
    data[32:32] = b"\x01\x00\x00\x00"
    with pytest.raises(BTFError, match="unknown non-zero fields"):
        BTF(bytes(data))
    data[32:36] = b"\x00\x00\x00\x00"
    assert len(BTF(bytes(data))) == 4


def test_vlen_and_kind_use_the_widened_info_bits() -> None:
    # vlen is bits 0-23 now: a struct with 70000 members reads whole
    b = BTFBuilder()
    i = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    b.add_type(Type(Kind.UNKN, "wide", size=0, raw_kind=Kind.STRUCT, raw_vlen=70000,
                    raw_words=tuple(x for m in range(70000) for x in (0, i, 32 * m))))
    btf = BTF(b.encode())
    assert len(btf.type(2).members) == 70000


def test_core_against_a_kernel_btf_with_layout_and_a_newer_kind() -> None:
    """The bundled probes relocate against vmlinux re-encoded as a 7.1+ kernel would ship it
    (layout section, plus a type of a kind tracekit does not know) exactly as against the
    original."""
    import os

    from tracekit import bundled
    from tracekit.obj.elf import load_spec
    from tracekit.obj.plan import plan_programs

    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("no kernel BTF on this machine")
    orig = BTF.from_file("/sys/kernel/btf/vmlinux")
    b = BTFBuilder.from_btf(orig)
    b.add_type(Type(Kind.UNKN, "tk_future", size=0, raw_kind=NEW_KIND, raw_vlen=2, raw_words=(1, 2, 3, 4)))
    newer = BTF(b.encode(layout={NEW_KIND: (8, 4)}))
    assert newer.hdr_len == 32 and len(newer) == len(orig) + 1
    for name in ("opensnoop", "execsnoop"):
        spec = load_spec(bundled.path(name))
        progs = list(spec.programs.values())
        a = plan_programs(spec, progs, [orig])
        spec2 = load_spec(bundled.path(name))
        c = plan_programs(spec2, list(spec2.programs.values()), [newer])
        for p in a:
            assert [i.copy() for i in a[p].insns] == [i.copy() for i in c[p].insns], (name, p)

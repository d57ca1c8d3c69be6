"""CO-RE conformance: objects compiled against "local" types are relocated against the
BTF of the same source compiled with -DTARGET (other layouts, names, sizes), and every
relocated value is checked exactly, both in the fixups and in the patched instructions."""

from __future__ import annotations

import logging

import pytest

from tests.tools.core_objects import CorePair, build_pair
from tracekit.btf.types import Kind
from tracekit.errors import AmbiguousRelocationError, CORERelocationError
from tracekit.obj.core import (
    CoreFixup,
    CoreKind,
    explain_poison,
    poisoned_insns_in_log,
    relocate,
)
from tracekit.obj.insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_DW,
    BPF_LD,
    BPF_W,
    CALL,
    POISON_CORE,
    Insn,
    ldimm64_value,
)

POISON = "poison"
K = CoreKind
U64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def conf() -> CorePair:
    return build_pair("core_conformance.bpf.c")


@pytest.fixture(scope="module")
def neg() -> CorePair:
    return build_pair("core_negative.bpf.c")


def insn_value(insns: list[Insn], fx: CoreFixup) -> int | str:
    """The value the patched instruction now carries."""
    ins = insns[fx.insn]
    if ins.code == CALL and ins.imm == POISON_CORE:
        return POISON
    if ins.cls == BPF_LD:
        return ldimm64_value(insns, fx.insn)
    if ins.cls in (BPF_ALU, BPF_ALU64):
        return ins.imm & U64
    return ins.off


def results(pair: CorePair, prog: str) -> tuple[list[Insn], list[CoreFixup], set[tuple[CoreKind, str, int | str]]]:
    insns, fxs = pair.relocate(prog)
    got = set()
    for fx in fxs:
        value: int | str = POISON if fx.poisoned else fx.new
        # the instruction carries exactly the computed value (ALU immediates are 32-bit)
        iv = insn_value(insns, fx)
        if value == POISON:
            assert iv == POISON, fx
        elif insns[fx.insn].cls in (BPF_ALU, BPF_ALU64):
            assert iv & 0xFFFFFFFF == value & 0xFFFFFFFF, fx
        else:
            assert iv == value, fx
        got.add((fx.kind, fx.spec, value))
    return insns, fxs, got


def test_moved_fields_type_size_pointer_as_array(conf: CorePair) -> None:
    _, _, got = results(conf, "moved")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_moved.a", 24),
        (K.FIELD_BYTE_OFFSET, "struct cs_moved.b", 16),
        (K.FIELD_BYTE_OFFSET, "struct cs_moved.c", 8),
        (K.FIELD_BYTE_SIZE, "struct cs_moved.c", 8),
        (K.TYPE_SIZE, "struct cs_moved", 32),
        (K.FIELD_BYTE_OFFSET, "struct cs_moved[2].b", 2 * 32 + 16),  # p[2].b: pointer as array
        (K.TYPE_EXISTS, "struct cs_moved", 1),
    }


def test_renamed_field_is_absent_and_its_read_poisoned(conf: CorePair) -> None:
    insns, fxs, got = results(conf, "renamed")
    assert got == {
        (K.FIELD_EXISTS, "struct cs_renamed.old_name", 0),
        (K.FIELD_BYTE_OFFSET, "struct cs_renamed.old_name", POISON),
        (K.FIELD_BYTE_OFFSET, "struct cs_renamed.keep", 8),
    }
    (bad,) = [f for f in fxs if f.poisoned]
    assert insns[bad.insn] == Insn(CALL, 0, 0, 0, POISON_CORE)
    assert "old_name" in bad.reason


def test_resized_fields_change_access_size_only_when_safe(conf: CorePair) -> None:
    insns, fxs, got = results(conf, "resized")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_resized.u", 0),
        (K.FIELD_BYTE_OFFSET, "struct cs_resized.s", POISON),  # signed int -> long: unsafe
        (K.FIELD_BYTE_OFFSET, "struct cs_resized.p", 16),
        (K.FIELD_BYTE_OFFSET, "struct cs_resized.w", 24),
        (K.FIELD_BYTE_SIZE, "struct cs_resized.u", 8),
        (K.FIELD_SIGNED, "struct cs_resized.s", 1),
        (K.FIELD_SIGNED, "struct cs_resized.u", 0),
    }
    by = {f.spec: f for f in fxs if f.kind == K.FIELD_BYTE_OFFSET}
    u, w = by["struct cs_resized.u"], by["struct cs_resized.w"]
    assert (u.mem_size, insns[u.insn].code & 0x18) == ((4, 8), BPF_DW)
    assert (w.mem_size, insns[w.insn].code & 0x18) == ((2, 4), BPF_W)
    assert "8 bytes in the target but 4 locally" in by["struct cs_resized.s"].reason


def test_array_fields_of_another_length_resize_by_their_element(conf: CorePair) -> None:
    """libbpf's 2025 fix: a load through an array field touches one element, so the element
    size -- not the array's -- decides whether the access may change size."""
    insns, fxs, got = results(conf, "array_fields")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_arrays.a", 8),     # int[5] -> int[7]: no resize
        (K.FIELD_BYTE_OFFSET, "struct cs_arrays.e", 36),    # struct pair[2] -> [4]: no resize
        (K.FIELD_BYTE_OFFSET, "struct cs_arrays.s", POISON),  # int[3] -> long[3]: signed grows
        (K.FIELD_BYTE_OFFSET, "struct cs_arrays.u", 96),    # u32[2] -> u64[2]: unsigned may grow
    }
    by = {f.spec: f for f in fxs}
    assert by["struct cs_arrays.a"].mem_size is None and insns[by["struct cs_arrays.a"].insn].code & 0x18 == BPF_W
    assert by["struct cs_arrays.e"].mem_size is None
    u = by["struct cs_arrays.u"]
    assert (u.mem_size, insns[u.insn].code & 0x18) == ((4, 8), BPF_DW)
    assert "8 bytes in the target but 4 locally" in by["struct cs_arrays.s"].reason


def test_bitfields_including_straddling_ones(conf: CorePair) -> None:
    _, _, got = results(conf, "bits")
    exp = set()
    # target (packed): a bits 29..34 (straddles u32 -> 8-byte load), b 35..39 (signed),
    # c 40..63 (u64), d 64..67
    for name, off, size, lshift, rshift, signed in [
        ("a", 0, 8, 64 - 35, 64 - 6, 0),
        ("b", 4, 4, 64 - (40 - 32), 64 - 5, 1),
        ("c", 0, 8, 0, 64 - 24, 0),
        ("d", 8, 4, 64 - 4, 64 - 4, 0),
    ]:
        spec = f"struct cs_bits.{name}"
        exp |= {
            (K.FIELD_BYTE_OFFSET, spec, off), (K.FIELD_BYTE_SIZE, spec, size),
            (K.FIELD_LSHIFT_U64, spec, lshift), (K.FIELD_RSHIFT_U64, spec, rshift),
            (K.FIELD_SIGNED, spec, signed),
        }
    assert got == exp


def test_flavors(conf: CorePair) -> None:
    _, fxs, got = results(conf, "flavors")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_flavor___v1.x", 4),
        (K.FIELD_BYTE_OFFSET, "struct cs_flavor___v1.y", 0),
        (K.FIELD_EXISTS, "struct cs_flavor___v2.z", 0),
        (K.TYPE_EXISTS, "struct cs_flavor___v2", 1),
    }
    assert {f.target.btf.name_of(f.target.type_id) for f in fxs if f.target} == {"cs_flavor"}


def test_nested_anonymous_members(conf: CorePair) -> None:
    _, _, got = results(conf, "anon")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_anon.a", 16),
        (K.FIELD_BYTE_OFFSET, "struct cs_anon.b", 24),
        (K.FIELD_BYTE_OFFSET, "struct cs_anon.c", 12),
        (K.FIELD_BYTE_OFFSET, "struct cs_anon.d", 8),
    }


def test_arrays_bounds_and_flexible_arrays(conf: CorePair) -> None:
    _, _, got = results(conf, "arrays")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_arr.arr[2]", 16 + 2 * 4),
        (K.FIELD_BYTE_OFFSET, "struct cs_arr.elems[1].y", 56 + 16 + 8),
        (K.FIELD_BYTE_OFFSET, "struct cs_arr.flex[5]", 104 + 5),  # flexible: no bound
        (K.FIELD_BYTE_SIZE, "struct cs_arr.arr[1]", 4),
        (K.FIELD_BYTE_SIZE, "struct cs_arr.arr", 32),
        (K.FIELD_BYTE_SIZE, "struct cs_arr.elems[0]", 16),
        (K.FIELD_BYTE_OFFSET, "struct cs_arr_shrink.v[1]", 4),
        (K.FIELD_EXISTS, "struct cs_arr_shrink.v[3]", 0),  # int v[2] in the target
        (K.FIELD_BYTE_OFFSET, "struct cs_arr_shrink.v[3]", POISON),
    }


def test_modifiers_and_typedefs(conf: CorePair) -> None:
    _, _, got = results(conf, "mods")
    assert got == {
        (K.FIELD_BYTE_OFFSET, "struct cs_mods.a", 4),
        (K.FIELD_BYTE_OFFSET, "struct cs_mods.b", 0),
        (K.FIELD_BYTE_OFFSET, "struct cs_mods.e.x", 8 + 12),
        (K.TYPE_EXISTS, "cs_u32_t", 1),
        (K.TYPE_SIZE, "cs_u32_t", 4),
    }


def test_enums_and_enum64(conf: CorePair) -> None:
    _, _, got = results(conf, "enums")
    assert got == {
        (K.ENUMVAL_EXISTS, "enum cs_enum::CS_B", 0),
        (K.ENUMVAL_VALUE, "enum cs_enum::CS_A", 10),
        (K.ENUMVAL_EXISTS, "enum cs_enum::CS_C", 1),
        (K.ENUMVAL_VALUE, "enum cs_enum::CS_B", POISON),
        (K.ENUMVAL_VALUE, "enum cs_enum64::CS64_BIG", 0x1234567890),
        (K.ENUMVAL_VALUE, "enum cs_enum64::CS64_SMALL", 2),
        (K.ENUMVAL_VALUE, "enum cs_grow::CG_V", 0x500000000),  # enum -> enum64
        (K.ENUMVAL_VALUE, "enum cs_flv___old::CSF_X___old", 70),  # flavored type and value
        (K.ENUMVAL_VALUE, "enum cs_neg::CN_M", -5 & U64),
    }


def test_missing_type(conf: CorePair) -> None:
    _, fxs, got = results(conf, "missing")
    assert got == {
        (K.TYPE_EXISTS, "struct cs_missing", 0),
        (K.TYPE_SIZE, "struct cs_missing", 0),
        (K.TYPE_ID_TARGET, "struct cs_missing", 0),
        (K.FIELD_EXISTS, "struct cs_missing.a", 0),
        (K.TYPE_MATCHES, "struct cs_missing", 0),
        (K.FIELD_BYTE_OFFSET, "struct cs_missing.a", POISON),
    }
    (bad,) = [f for f in fxs if f.poisoned]
    assert bad.reason == "no type named 'cs_missing' of a compatible kind in the target BTF"


def test_type_ids_matches_and_sizes(conf: CorePair) -> None:
    _, _, got = results(conf, "types")
    assert conf.spec.btf is not None
    local_id = conf.spec.btf.find("cs_moved", Kind.STRUCT)[0]
    target_id = conf.target.find("cs_moved", Kind.STRUCT)[0]
    assert got == {
        (K.TYPE_ID_LOCAL, "struct cs_moved", local_id),
        (K.TYPE_ID_TARGET, "struct cs_moved", target_id),
        (K.TYPE_MATCHES, "struct cs_match", 1),
        (K.TYPE_MATCHES, "struct cs_nomatch", 0),  # int vs unsigned int
        (K.TYPE_EXISTS, "struct cs_nomatch", 1),
        (K.TYPE_SIZE, "struct cs_match", 16),
    }


def test_agreeing_candidates_then_narrowing(conf: CorePair) -> None:
    r = conf.relocator()
    _, fxs = conf.relocate("multi", r)
    assert [(f.kind, f.spec, f.new) for f in fxs] == [
        (K.FIELD_BYTE_OFFSET, "struct cs_multi.x", 0),  # cs_multi and cs_multi___v2 agree
        (K.FIELD_BYTE_OFFSET, "struct cs_multi.y", 4),  # only cs_multi has y ...
        (K.TYPE_SIZE, "struct cs_multi", 12),  # ... so cs_multi___v2 (size 4) is dropped, as libbpf does
    ]
    assert conf.spec.btf is not None
    (cands,) = [c for tid, c in r._cands.items() if conf.spec.btf.name_of(tid) == "cs_multi"]
    assert [c.btf.name_of(c.type_id) for c in cands] == ["cs_multi"]


def test_candidates_are_cached_per_local_type(conf: CorePair) -> None:
    r = conf.relocator()
    conf.relocate("moved", r)
    assert conf.spec.btf is not None
    tid = conf.spec.btf.find("cs_moved", Kind.STRUCT)[0]
    first = r.candidates(tid)
    conf.relocate("types", r)
    assert r.candidates(tid) is first


def test_every_program_relocates(conf: CorePair) -> None:
    r = conf.relocator()
    total = 0
    for name in conf.spec.programs:
        _, fxs = conf.relocate(name, r)
        total += len(fxs)
    assert total == sum(len(p.core_relos) for p in conf.spec.programs.values()) > 60


# --- negative cases ---------------------------------------------------------------------


def test_ambiguous_candidates_name_both(neg: CorePair) -> None:
    with pytest.raises(AmbiguousRelocationError) as ei:
        neg.relocate("ambiguous")
    msg = str(ei.value)
    assert "program 'ambiguous'" in msg and "struct cn_amb.x" in msg
    assert "struct cn_amb___two" in msg and "struct cn_amb " in msg
    assert "bit 64" in msg and "bit 0" in msg


def test_incompatible_field_type_poisons_and_explains(neg: CorePair) -> None:
    r = neg.relocator()
    insns, (fx,) = neg.relocate("incompatible", r)
    assert fx.poisoned and insns[fx.insn] == Insn(CALL, 0, 0, 0, POISON_CORE)
    assert "struct cn_incompat.x is struct cn_inner, incompatible with the local int" in fx.reason
    text = r.explain_poison("incompatible", fx.insn)
    assert text is not None
    assert "program 'incompatible'" in text and f"insn #{fx.insn}" in text
    assert "struct cn_incompat.x" in text and "'0:1'" in text
    assert r.explain_poison("incompatible", fx.insn + 1) is None


def test_explain_poison_from_a_verifier_log(neg: CorePair) -> None:
    """The loader's entry point: object spec + plan-like object + the verifier's log."""
    _, (fx,) = neg.relocate("incompatible")
    log = f"0: R1=ctx() R10=fp0\n{fx.insn}: (85) call unknown#{POISON_CORE}\ninvalid func unknown#{POISON_CORE}\n"
    assert poisoned_insns_in_log(log) == [fx.insn]

    class Plan:
        name = "incompatible"
        core_relos = neg.spec.programs["incompatible"].core_relos

    text = explain_poison(neg.spec, Plan(), log)
    assert text is not None
    assert "program 'incompatible'" in text and f"insn #{fx.insn}" in text
    assert "FIELD_BYTE_OFFSET of struct cn_incompat.x" in text and "incompatible with the local int" in text
    assert explain_poison(neg.spec, Plan(), "0: (b7) r0 = 0\n") is None


def test_bitfield_wider_than_a_64bit_load(neg: CorePair) -> None:
    with pytest.raises(CORERelocationError, match=r"bitfield 'x' of struct cn_bits cannot be read with one 64-bit load"):
        neg.relocate("bitfield_too_wide")


def test_local_index_out_of_bounds(neg: CorePair) -> None:
    with pytest.raises(CORERelocationError, match=r"access '0:0:5'.*index 5 out of bounds for int\[4\]"):
        neg.relocate("index_out_of_bounds")


def test_instruction_disagreeing_with_local_btf(conf: CorePair) -> None:
    p = conf.spec.programs["moved"]
    insns = [i.copy() for i in p.insns]
    relo = next(r for r in p.core_relos if r.kind == K.FIELD_BYTE_OFFSET and r.access == "0:1")
    insns[relo.insn].off += 1  # the compiler said 4; pretend it said 5
    assert conf.spec.btf is not None
    with pytest.raises(CORERelocationError, match=r"program 'moved'.*has offset 5, but the object's BTF says 4"):
        relocate(insns, [relo], conf.spec.btf, [conf.target], prog_name="moved")


def test_no_target_btf_is_an_error(conf: CorePair) -> None:
    p = conf.spec.programs["moved"]
    assert conf.spec.btf is not None
    with pytest.raises(CORERelocationError, match="no target BTF"):
        relocate([i.copy() for i in p.insns], p.core_relos, conf.spec.btf, [], prog_name="moved")


def test_debug_log_explains_decisions(conf: CorePair, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tracekit.obj.core"):
        conf.relocate("renamed")
    text = caplog.text
    assert "candidates for" in text and "struct cs_renamed" in text
    assert "does not match" in text and "poisoned" in text


def test_access_size_codes_are_preserved_otherwise(conf: CorePair) -> None:
    """Loads whose field keeps its size keep their opcode (only the offset moves)."""
    p = conf.spec.programs["moved"]
    insns, fxs = conf.relocate("moved")
    for fx in fxs:
        if fx.kind == K.FIELD_BYTE_OFFSET and insns[fx.insn].cls not in (BPF_ALU, BPF_ALU64):
            assert insns[fx.insn].code == p.insns[fx.insn].code
            assert fx.mem_size is None

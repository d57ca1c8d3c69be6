"""Hand-made hostile inputs, one per signature the fuzzing found (issue 10, item 4).

Each must end in a specific TracekitError (or a correct result) within a second, without
a RecursionError, an IndexError, a KeyError, a hang or a huge allocation -- whether it
comes in through the BTF reader, ``tracekit.open(bytes)``, the load plan (CO-RE),
``obj.event_type()`` or a target ``btf=``.
"""

from __future__ import annotations

import contextlib
import signal
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracekit
from tests.fuzz.harness import _sections
from tracekit.btf.reader import BTF, MAX_CHAIN
from tracekit.btf.types import INT_SIGNED, Kind, Member, Type, VarSecinfo
from tracekit.btf.writer import BTFBuilder
from tracekit.data.globaldata import GlobalData
from tracekit.errors import BTFError, ELFError, TracekitError
from tracekit.events.records import DecodeError, EventType
from tracekit.obj import elf
from tracekit.obj.plan import plan_program

OPENSNOOP = Path(tracekit.__file__).parent / "probes" / "opensnoop.bpf.o"


@contextlib.contextmanager
def within(seconds: float = 1.0) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block takes more than ``seconds`` of
    CPU time (CPU, not wall time: the machine running the suite may be loaded)."""

    def alarm(_s: int, _f: Any) -> None:
        raise AssertionError(f"no result within {seconds} s (a hang on hostile input)")

    old = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def _btf(*types: Type) -> BTF:
    """Types get ids 1, 2, ... in order; references may point anywhere (even forward)."""
    b = BTFBuilder()
    for t in types:
        b.add_type(t)
    return BTF(b.encode(), name="hostile")


INT = Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32)


# --- the BTF reader ------------------------------------------------------------------


def test_typedef_cycle_is_an_error_not_a_hang() -> None:
    btf = _btf(Type(Kind.TYPEDEF, "a", type=2), Type(Kind.TYPEDEF, "b", type=1))
    with within():
        for fn in (btf.skip_mods, btf.resolve, btf.size_of, btf.alignment_of):
            with pytest.raises(BTFError, match=r"chain|cycle"):
                fn(1)
        assert btf.describe(1) == "a"


def test_pointer_and_const_cycle_is_spelled_finitely() -> None:
    btf = _btf(Type(Kind.PTR, type=2), Type(Kind.CONST, type=1))
    with within():
        text = btf.describe(1)
        assert text.endswith("*") and "..." in text and len(text) < 20 * MAX_CHAIN
        assert btf.size_of(1) == 8
        assert btf.skip_mods(2) == 1  # const -> ptr stops at the pointer
    # a const that qualifies itself does loop
    btf2 = _btf(Type(Kind.CONST, type=1))
    with within(), pytest.raises(BTFError, match="cycle"):
        btf2.resolve(1)


def test_type_id_out_of_range_is_a_btf_error() -> None:
    btf = _btf(INT, Type(Kind.PTR, type=99), Type(Kind.TYPEDEF, "t", type=99))
    for fn in (btf.kind_of, btf.name_of, btf.type, btf.describe):
        with pytest.raises(BTFError, match="out of range"):
            fn(99)
    with pytest.raises(BTFError, match="out of range"):
        btf.resolve(3)
    assert btf.describe(2) == "<bad type id 99> *"


def test_arrays_nested_deeply_or_in_a_cycle_or_too_big() -> None:
    chain = [INT] + [Type(Kind.ARRAY, type=i, index_type=1, nelems=1) for i in range(1, 200)]
    deep = _btf(*chain)
    selfish = _btf(INT, Type(Kind.ARRAY, type=2, index_type=1, nelems=2))
    huge = _btf(INT, Type(Kind.ARRAY, type=1, index_type=1, nelems=0xFFFFFFFF),
                Type(Kind.ARRAY, type=2, index_type=1, nelems=0xFFFFFFFF))
    with within():
        with pytest.raises(BTFError, match="cycle"):
            deep.size_of(len(chain))
        with pytest.raises(BTFError, match="cycle"):
            deep.alignment_of(len(chain))
        with pytest.raises(BTFError, match=r"cycle|more than"):
            selfish.size_of(2)
        with pytest.raises(BTFError, match="more than"):
            huge.size_of(3)
        assert deep.size_of(MAX_CHAIN - 2) == 4


def test_an_encoded_void_kind_is_refused() -> None:
    raw = bytearray(_btf(INT).data)
    struct.pack_into("<I", raw, 24 + 4, 0)  # info word of type 1: kind 0 (UNKN)
    with pytest.raises(BTFError, match="unknown kind"):
        BTF(bytes(raw))


def test_elf_section_table_past_the_end_is_a_btf_error() -> None:
    data = bytearray(OPENSNOOP.read_bytes())
    struct.pack_into("<H", data, 0x3C, 0xFFF0)  # e_shnum
    with within(), pytest.raises(BTFError, match="malformed ELF"):
        BTF.from_bytes_or_elf(bytes(data))
    assert BTF.from_bytes_or_elf(OPENSNOOP.read_bytes()).find("event")


# --- event types and global data -----------------------------------------------------


def test_struct_that_contains_itself_is_a_decode_error() -> None:
    btf = _btf(INT, Type(Kind.STRUCT, "event", size=8, members=[Member("a", 1, 0), Member("me", 2, 32)]))
    anon = _btf(INT, Type(Kind.STRUCT, "event", size=8, members=[Member("a", 1, 0), Member("", 2, 32)]))
    with within():
        with pytest.raises(DecodeError, match="nested deeper"):
            EventType.from_btf(btf, "event")
        with pytest.raises(DecodeError, match="nested deeper"):
            EventType.from_btf(anon, "event")


def _datasec(var_type: Type, size: int, *extra: Type, name: str = "x", offset: int = 0) -> BTF:
    # ids: 1 = the variable's type, 2.. = extra, then VAR, DATASEC
    var_id = 2 + len(extra)
    return _btf(var_type, *extra, Type(Kind.VAR, name, type=1, linkage=1),
                Type(Kind.DATASEC, ".bss", size=size, secinfos=[VarSecinfo(var_id, offset, size)]))


def test_a_global_of_size_3_reads_and_writes() -> None:
    btf = _datasec(Type(Kind.INT, "_BitInt(24)", size=3, encoding=INT_SIGNED, bits=24), 3)
    gd = GlobalData(".bss", btf, 3, b"\xff\xff\xff")
    assert gd.x == -1
    gd.x = 0x123456
    assert gd.x == 0x123456 and gd._bytes() == b"\x56\x34\x12"


def test_dunder_globals_are_listed() -> None:
    """opensnoop's ``__event_events`` marker made as_dict() (and repr) raise."""
    obj = tracekit.open(OPENSNOOP)
    d = obj.bss.as_dict()
    assert d["__event_events"] == 0 and "__event_events" in repr(obj.bss)


def test_a_variable_outside_its_section_is_refused_at_open() -> None:
    btf = _datasec(INT, 4, offset=2)
    with pytest.raises(BTFError, match="lies outside the 4-byte section"):
        GlobalData(".bss", btf, 3, bytes(4))


def test_a_zero_sized_element_array_of_billions_is_empty() -> None:
    empty = Type(Kind.STRUCT, "empty", size=0)
    btf = _datasec(Type(Kind.ARRAY, type=2, index_type=2, nelems=0xFFFFFFFF), 0, empty)
    with within():
        assert GlobalData(".bss", btf, 4, b"").x == []


# --- through tracekit.open / the plan / event_type / btf= ---------------------------


def _btf_words(data: bytes) -> tuple[BTF, int]:
    """The object's .BTF and the file offset of its type section."""
    sec = next(s for s in _sections(data) if s[0] == ".BTF")
    raw = data[sec[2] : sec[2] + sec[3]]
    hdr_len, type_off = struct.unpack_from("<II", raw, 4)
    return BTF(raw), sec[2] + hdr_len + type_off


def _patch_word(data: bytearray, tstart: int, word: int, value: int) -> None:
    struct.pack_into("<I", data, tstart + 4 * word, value)


def test_open_bytes_with_a_global_of_cyclic_type() -> None:
    """Object.__init__ builds the global-data views: their errors are TracekitErrors too."""
    data = bytearray(OPENSNOOP.read_bytes())
    btf, tstart = _btf_words(bytes(data))
    var = btf.find("events_emitted", Kind.VAR)[0]
    u64 = btf.type(var).type  # typedef __u64 -> make it name itself
    _patch_word(data, tstart, btf.offsets[u64 - 1] + 2, u64)
    with within(), pytest.raises(BTFError, match="cycle"):
        tracekit.open(bytes(data))


def test_event_type_of_a_struct_that_contains_itself() -> None:
    data = bytearray(OPENSNOOP.read_bytes())
    btf, tstart = _btf_words(bytes(data))
    ev = btf.find("event", Kind.STRUCT)[0]
    # member 7 (comm): its type becomes struct event itself
    _patch_word(data, tstart, btf.offsets[ev - 1] + 3 + 3 * 7 + 1, ev)
    obj = tracekit.open(bytes(data))
    with within(), pytest.raises(TracekitError, match=r"nested deeper|overlapping|past the size"):
        obj.event_type("event")


def test_a_hostile_target_btf_fails_the_plan_with_a_tracekit_error() -> None:
    """CO-RE against a target whose task_struct members loop through typedefs."""
    spec = elf.load_spec(OPENSNOOP)
    assert spec.btf is not None
    b = BTFBuilder.from_btf(spec.btf)
    loop = len(b)
    b.add_type(Type(Kind.TYPEDEF, "loop_a", type=loop + 1))
    b.add_type(Type(Kind.TYPEDEF, "loop_b", type=loop))
    for t in list(b.types)[1:]:
        if t.kind in (Kind.STRUCT, Kind.UNION):
            t.members = [Member(m.name, loop, m.bit_offset, m.bitfield_size) for m in t.members]
    target = BTF(b.encode(), name="hostile-target")
    with within(2.0):
        for p in spec.programs.values():
            with contextlib.suppress(TracekitError):
                plan_program(spec, p, [target])


def test_load_with_a_garbage_target_btf_path(tmp_path: Path) -> None:
    bad_elf = tmp_path / "target.o"
    data = bytearray(OPENSNOOP.read_bytes())
    struct.pack_into("<Q", data, 0x28, len(data) + 64)  # e_shoff past the end
    bad_elf.write_bytes(bytes(data))
    for path in (bad_elf,):
        obj = tracekit.open(OPENSNOOP, btf=path)
        with within(), pytest.raises(BTFError, match="malformed ELF"):
            obj.load()
        obj.close()


# --- allocations bounded by the input ------------------------------------------------


def _set_section_size(data: bytes, name: str, size: int) -> bytes:
    buf = bytearray(data)
    hdr = next(s for s in _sections(data) if s[0] == name)[1]
    struct.pack_into("<Q", buf, hdr + 0x20, size)
    return bytes(buf)


def test_a_huge_nobits_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = OPENSNOOP.read_bytes()
    tracemalloc.start()
    try:
        with within(), pytest.raises(ELFError, match="MAX_NOBITS_SIZE"):
            tracekit.open(_set_section_size(data, ".bss", 1 << 40))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"refusing a 1 TiB .bss took {peak} bytes"
    # the documented knob: a larger limit lets a large .bss through
    big = elf.MAX_NOBITS_SIZE + 4096
    with pytest.raises(ELFError, match="MAX_NOBITS_SIZE"):
        tracekit.open(_set_section_size(data, ".bss", big))
    monkeypatch.setattr(elf, "MAX_NOBITS_SIZE", big)
    obj = tracekit.open(_set_section_size(data, ".bss", big))
    bss = next(m for m in obj.maps.values() if m.spec.section == ".bss")
    assert bss.value_size == big and len(obj.bss._bytes()) == big


# --- graph walks with a step budget (DAGs: fine depth, exponential paths) -------------


def _dag(n: int, named: bool, leaf_member: str = "x") -> list[Type]:
    """S1 .. Sn, each with two members of the next struct (at the same offset), Sn an int."""
    types = [INT]
    for i in range(1, n):
        nxt = i + 2  # ids: 1 = int, 2 = S1, 3 = S2, ...
        types.append(Type(Kind.STRUCT, f"S{i}", size=4, members=[
            Member("a" if named else "", nxt, 0), Member("b" if named else "", nxt, 0)]))
    types.append(Type(Kind.STRUCT, f"S{n}", size=4, members=[Member(leaf_member, 1, 0)]))
    return types


def test_anonymous_member_dag_is_bounded_in_event_types() -> None:
    btf = _btf(*_dag(30, named=False))
    with within(), pytest.raises(DecodeError, match="steps"):
        EventType.from_btf(btf, "S1")


def _ldimm64(value: int) -> list[Any]:
    from tracekit.obj.insn import decode

    return decode(struct.pack("<BBhi", 0x18, 0, 0, value & 0xFFFFFFFF) + struct.pack("<BBhi", 0, 0, 0, value >> 32))


def test_type_matches_over_a_struct_dag_is_bounded() -> None:
    from tracekit.btf.ext import CoreRelo
    from tracekit.errors import CORERelocationError
    from tracekit.obj import core

    # shared types are compared once per pair: a 2^30-path DAG takes 30 steps and matches
    btf = _btf(*_dag(30, named=True))
    relo = CoreRelo(0, 2, "0", core.CoreKind.TYPE_MATCHES)
    with within():
        fx = core.relocate(_ldimm64(1), [relo], btf, [btf])
    assert fx[0].new == 1 and not fx[0].poisoned
    # and a check that really has that many distinct pairs runs out of budget
    wide = [INT] + [Type(Kind.STRUCT, f"W{i}", size=4, members=[Member(f"m{j}", 1, 0) for j in range(300)])
                    for i in range(300)]
    top = Type(Kind.STRUCT, "top", size=4, members=[Member(f"w{i}", i + 2, 0) for i in range(300)])
    big = _btf(*wide, top)
    relo = CoreRelo(0, len(wide) + 1, "0", core.CoreKind.TYPE_MATCHES)
    with within(), pytest.raises(CORERelocationError, match="steps"):
        core.relocate(_ldimm64(1), [relo], big, [big])


def test_member_search_through_an_anonymous_dag_is_bounded() -> None:
    from tracekit.btf.ext import CoreRelo
    from tracekit.errors import CORERelocationError
    from tracekit.obj import core

    local = _btf(INT, Type(Kind.STRUCT, "S1", size=4, members=[Member("wanted", 1, 0)]))
    target = _btf(*_dag(40, named=False, leaf_member="other"))
    relo = CoreRelo(0, 2, "0:0", core.CoreKind.FIELD_BYTE_OFFSET)
    with within(), pytest.raises(CORERelocationError, match="steps"):
        core.relocate(_ldimm64(0), [relo], local, [target])


def test_a_chain_of_thousands_of_callees_is_a_relocation_error(tmp_path: Path) -> None:
    """The plan appends callees recursively: 1,500 nested calls were a RecursionError."""
    from tests.support import build_bpf_object
    from tracekit.errors import RelocationError

    n = 1500
    src = ['#define SEC(n) __attribute__((section(n), used))',
           f'static __attribute__((noinline)) int f{n}(int x) {{ asm volatile("" : "+r"(x)); return x; }}']
    src += [f'static __attribute__((noinline)) int f{i}(int x) {{ asm volatile("" : "+r"(x)); return f{i + 1}(x) + 1; }}'
            for i in range(n - 1, 0, -1)]
    src += ['SEC("tp/syscalls/sys_enter_getpid") int prog(void *ctx) { return f1(0); }',
            'char LICENSE[] SEC("license") = "GPL";']
    (tmp_path / "chain.bpf.c").write_text("\n".join(src) + "\n")
    spec = elf.load_spec(build_bpf_object(tmp_path / "chain.bpf.c", use_vmlinux_h=False))
    assert len(spec.functions) == n + 1
    with within(), pytest.raises(RelocationError, match="BPF_MAX_SUBPROGS"):
        plan_program(spec, spec.programs["prog"], [])


def test_describe_and_alignment_of_branching_graphs_are_bounded() -> None:
    """A prototype whose 16 parameters point back at it: describe() was 16^64 calls."""
    from tracekit.btf.types import Param

    proto = _btf(INT, Type(Kind.PTR, type=3), Type(Kind.FUNC_PROTO, type=2, params=[Param(f"p{i}", 2) for i in range(16)]))
    dag = _btf(*_dag(60, named=True))
    with within():
        text = proto.describe(3)
        assert "..." in text and len(text) < 10_000
        assert dag.alignment_of(2) == 4


def test_a_target_with_thousands_of_namesakes_fails_fast() -> None:
    """60,000 structs named like opensnoop's CO-RE types: the plan took 7 s."""
    from tracekit.errors import CORERelocationError

    spec = elf.load_spec(OPENSNOOP)
    assert spec.btf is not None
    names = {spec.btf.type(r.type_id).name for p in spec.programs.values() for r in p.core_relos}
    b = BTFBuilder.from_btf(spec.btf)
    i32 = b.add_type(INT)
    for n in names:
        for _ in range(5000):
            b.add_type(Type(Kind.STRUCT, n, size=8, members=[Member("zzz", i32, 0)]))
    target = BTF(b.encode(), name="namesakes")
    with within():
        for p in spec.programs.values():
            if p.core_relos:
                with pytest.raises(CORERelocationError, match="more than 1024 target types"):
                    plan_program(spec, p, [target])


def test_a_fifo_or_device_is_not_read_as_an_object(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "obj.o"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with within(), pytest.raises(ELFError, match="not a regular file"):
            tracekit.open(path)

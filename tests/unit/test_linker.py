"""The static linker against clang-built objects, compared with libbpf's (bpftool gen object)."""

from __future__ import annotations

import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from tests.support import build_bpf_object
from tracekit.btf.ext import BTFExt
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.cli import main as cli_main
from tracekit.errors import LinkerError
from tracekit.obj import elf, linker

BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"


@pytest.fixture(scope="module")
def lib() -> Path:
    return build_bpf_object("link_lib.bpf.c")


@pytest.fixture(scope="module")
def main_o() -> Path:
    return build_bpf_object("link_main.bpf.c")


def _bpftool_link(tmp_path: Path, *inputs: Path) -> bytes:
    if not Path(BPFTOOL).exists():
        pytest.skip("bpftool is not installed")
    out = tmp_path / "ref.o"
    subprocess.run([BPFTOOL, "gen", "object", str(out), *map(str, inputs)], check=True, capture_output=True)
    return out.read_bytes()


def _summary(data: bytes) -> dict:
    """Everything the linkers must agree on, by name (type ids differ: libbpf dedups BTF)."""
    e = ELFFile(BytesIO(data))
    secs = {s.name: s for s in e.iter_sections()}
    st = secs[".symtab"]

    def secname(ndx):
        return e.get_section(ndx).name if isinstance(ndx, int) and ndx else ndx

    syms = {
        (s.name, s["st_info"]["bind"], s["st_info"]["type"], secname(s["st_shndx"]), s["st_value"], s["st_size"],
         s["st_other"]["visibility"])
        for s in st.iter_symbols() if s["st_info"]["bind"] != "STB_LOCAL"
    }
    sections = {
        n: (s["sh_type"], s["sh_size"], s.data() if s["sh_type"] == "SHT_PROGBITS" else None)
        for n, s in secs.items()
        if s["sh_type"] in ("SHT_PROGBITS", "SHT_NOBITS") and not n.startswith(".BTF")
    }
    rels = {
        s.name: sorted((r["r_offset"], st.get_symbol(r["r_info_sym"]).name, r["r_info_type"]) for r in s.iter_relocations())
        for s in e.iter_sections() if s["sh_type"] == "SHT_REL"
    }
    btf = BTF(secs[".BTF"].data())
    ext = BTFExt.parse(secs[".BTF.ext"].data(), btf)
    return dict(
        syms=syms,
        sections=sections,
        rels=rels,
        datasecs={t.name: [(btf.name_of(si.type), si.offset, si.size) for si in t.secinfos]
                  for _, t in btf.types() if t.kind == Kind.DATASEC},
        func_info={s: [(r.insn, btf.name_of(r.type_id)) for r in v] for s, v in ext.func_info.items()},
        line_info={s: [(r.insn, btf.string(r.file_name_off), btf.string(r.line_off), r.line_col) for r in v]
                   for s, v in ext.line_info.items()},
        core_relos={s: [(r.insn, btf.describe(r.type_id), r.access, r.kind) for r in v]
                    for s, v in ext.core_relos.items()},
        funcs={(t.name, t.linkage) for _, t in btf.types() if t.kind == Kind.FUNC},
        vars={(t.name, t.linkage) for _, t in btf.types() if t.kind == Kind.VAR},
    )


def test_linked_object_matches_libbpf(lib: Path, main_o: Path, tmp_path: Path) -> None:
    ours = _summary(linker.link([main_o, lib]))
    ref = _summary(_bpftool_link(tmp_path, main_o, lib))
    # same symbol resolution (strong lib_scale from main, externs bound to lib's definitions)
    assert ours["syms"] == ref["syms"]
    # byte-identical code and data (relocated immediates included), same relocations
    assert ours["sections"] == ref["sections"]
    assert ours["rels"] == ref["rels"]
    # same DATASEC layout and BTF.ext records (CO-RE of both objects, remapped)
    for key in ("datasecs", "func_info", "line_info", "core_relos", "funcs", "vars"):
        assert ours[key] == ref[key], key


def test_resolution_details(lib: Path, main_o: Path) -> None:
    s = _summary(linker.link([main_o, lib]))
    syms = {x[0]: x for x in s["syms"]}
    # main's strong lib_scale (first in .text) wins over lib's __weak one
    assert syms["lib_scale"][1:4] == ("STB_GLOBAL", "STT_FUNC", ".text") and syms["lib_scale"][4] == 0
    # externs of main are now lib's definitions
    assert syms["lib_add"][2:4] == ("STT_FUNC", ".text")
    assert syms["lib_counter"][2:4] == ("STT_OBJECT", ".bss")
    assert syms["shared_map"][2:4] == ("STT_OBJECT", ".maps")
    assert all(x[3] != "SHN_UNDEF" for x in s["syms"])
    # no extern FUNC/VAR survives in BTF: all resolved
    assert all(linkage != 2 for _, linkage in s["funcs"] | s["vars"])
    # CO-RE records of both inputs, in their sections
    kinds = {(sec, r[1], r[3]) for sec, v in s["core_relos"].items() for r in v}
    assert (".text", "struct task_struct", 9) in kinds  # lib: bpf_core_type_size
    assert ("syscall", "struct task_struct", 0) in kinds  # main: bpf_core_field_offset


def test_order_of_inputs_does_not_change_resolution(lib: Path, main_o: Path) -> None:
    a = _summary(linker.link([main_o, lib]))
    b = _summary(linker.link([lib, main_o]))
    pick = lambda s: {(x[0], x[1], x[2], x[3]) for x in s["syms"]}  # noqa: E731
    assert pick(a) == pick(b)
    spec = elf.load_spec(linker.link([lib, main_o]), name="link_main")
    assert set(spec.programs) == {"main_prog", "main_on_enter", "lib_prog"}
    assert not spec.externs


def test_spec_of_linked_output(lib: Path, main_o: Path) -> None:
    spec = elf.load_spec(linker.link([main_o, lib]), name="link_main")
    assert set(spec.programs) == {"main_prog", "main_on_enter", "lib_prog"}
    names = {f.name for f in spec.functions.values()}
    assert {"lib_add", "lib_scale", "lib_record"} <= names
    assert "shared_map" in spec.maps
    # lib's .rodata knob sits after main's two
    ro = spec.btf.type(spec.maps["link_mai.rodata"].datasec_type_id)
    assert [(spec.btf.name_of(si.type), si.offset) for si in ro.secinfos] == [
        ("main_knob", 0), ("target_tgid", 4), ("lib_factor", 8)]


def test_kernel_externs_stay_for_load_time(lib: Path, tmp_path: Path) -> None:
    m = build_bpf_object("link_main.bpf.c", defines=["WITH_KERNEL_EXTERNS"])
    out = linker.link([m, lib])
    s = _summary(out)
    undef = {x[0] for x in s["syms"] if x[3] == "SHN_UNDEF"}
    assert undef == {"LINUX_KERNEL_VERSION", "bpf_rcu_read_lock"}
    assert [v[0] for v in s["datasecs"][".kconfig"]] == ["LINUX_KERNEL_VERSION"]
    assert [v[0] for v in s["datasecs"][".ksyms"]] == ["bpf_rcu_read_lock"]
    spec = elf.load_spec(out, name="link_main")
    assert {n: e.kind for n, e in spec.externs.items()} == {"LINUX_KERNEL_VERSION": "kconfig", "bpf_rcu_read_lock": "kfunc"}
    ref = _summary(_bpftool_link(tmp_path, m, lib))
    assert s["syms"] == ref["syms"] and s["datasecs"] == ref["datasecs"]


@pytest.mark.parametrize(
    ("variant", "expect"),
    [
        ("STRONG_DUP", ["conflicting definitions of global symbol 'lib_add'", "'lib.bpf.o'", "'bad.bpf.o'"]),
        ("PROTO_MISMATCH", ["global function 'lib_add' has a different prototype", "int (*)(int, int)",
                            "int (*)(long)", "'bad.bpf.o'"]),
        ("VAR_MISMATCH", ["global variable 'lib_counter' has a different type", "__u64", "__u32"]),
        ("KIND_MISMATCH", ["'lib_add' is a function in 'lib.bpf.o'", "but a variable in 'bad.bpf.o'"]),
        ("MAP_MISMATCH", ["'shared_map' has a different map definition", "member 'type'"]),
        ("DUP_MAP", ["conflicting definitions of global symbol 'shared_map'", "'lib.bpf.o' and 'bad.bpf.o'"]),
        ("LICENSE_MISMATCH", ["'license' differs", "'GPL' in 'lib.bpf.o'", "'Dual BSD/GPL' in 'bad.bpf.o'"]),
    ],
)
def test_conflicts_are_refused(lib: Path, variant: str, expect: list[str], tmp_path: Path) -> None:
    bad = build_bpf_object("link_bad.bpf.c", defines=[variant])
    with pytest.raises(LinkerError) as ei:
        linker.link([lib, bad], names=["lib.bpf.o", "bad.bpf.o"])
    for piece in expect:
        assert piece in str(ei.value)
    # libbpf refuses the same inputs
    if Path(BPFTOOL).exists():
        r = subprocess.run([BPFTOOL, "gen", "object", str(tmp_path / "x.o"), str(lib), str(bad)], capture_output=True)
        assert r.returncode != 0


def test_weak_definitions_pick_first_and_strong_wins(lib: Path) -> None:
    # two weak lib_scale (lib's) + one strong (main's) in any order: strong wins
    m = build_bpf_object("link_main.bpf.c")
    for order in ([lib, m], [m, lib]):
        syms = {x[0]: x for x in _summary(linker.link(order))["syms"]}
        assert syms["lib_scale"][1] == "STB_GLOBAL"
        assert syms["lib_scale"][5] == 24  # main's 3-insn body, not lib's weak one


def test_bad_inputs() -> None:
    with pytest.raises(LinkerError, match="nothing to link"):
        linker.link([])
    with pytest.raises(LinkerError, match="not an ELF file"):
        linker.link([b"hello, not an object"], names=["junk.o"])
    with pytest.raises(LinkerError, match="cannot read link input"):
        linker.link(["/nonexistent/x.bpf.o"])


def test_cli_link(lib: Path, main_o: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "linked.bpf.o"
    assert cli_main(["link", str(out), str(main_o), str(lib)]) == 0
    assert out.read_bytes() == linker.link([main_o, lib])
    bad = build_bpf_object("link_bad.bpf.c", defines=["STRONG_DUP"])
    assert cli_main(["link", str(tmp_path / "bad.o"), str(lib), str(bad)]) == 1
    assert "conflicting definitions of global symbol 'lib_add'" in capsys.readouterr().err
    assert not (tmp_path / "bad.o").exists()


def test_linking_is_deterministic(lib: Path, main_o: Path) -> None:
    assert linker.link([main_o, lib]) == linker.link([main_o, lib])


# --- BTF deduplication ---------------------------------------------------------------------


def _btf_of(data: bytes) -> BTF:
    return BTF(ELFFile(BytesIO(data)).get_section_by_name(".BTF").data())


def _kinds_by_name(btf: BTF) -> dict[tuple[str, str], int]:
    """How many types of each (kind, name); anonymous ones by their C spelling."""
    out: dict[tuple[str, str], int] = {}
    for tid, t in btf.types():
        key = (t.kind.name, t.name or btf.describe(tid))
        out[key] = out.get(key, 0) + 1
    return out


def test_output_btf_is_deduplicated_like_libbpf(lib: Path, main_o: Path, tmp_path: Path) -> None:
    ours = _btf_of(linker.link([main_o, lib]))
    ref = _btf_of(_bpftool_link(tmp_path, main_o, lib))
    # same number of types, of the same kinds and names, and the same byte sizes
    assert len(ours) == len(ref)
    assert _kinds_by_name(ours) == _kinds_by_name(ref)
    assert len(ours.data) == len(ref.data)
    # every struct of vmlinux.h both objects use is there once
    assert len(ours.find("task_struct", Kind.STRUCT)) == 1
    undeduped = _btf_of(linker.link([main_o, lib], dedup=False))
    assert len(undeduped.find("task_struct", Kind.STRUCT)) == 2
    assert len(undeduped.data) > 1.5 * len(ours.data)
    # no string twice
    parts = ours.strings.split(b"\0")[1:-1]
    assert len(parts) == len(set(parts))


def test_dedup_with_the_definition_first(lib: Path, main_o: Path, tmp_path: Path) -> None:
    """lib (definitions) before main (externs).  libbpf's linker names an extern FUNC's
    parameters only when the extern comes first, so with this order it keeps main's two
    unnamed extern prototypes, ``int (*)(int, int)`` and ``int (*)(int)``, unreferenced.
    We name them in either order, so they collapse: exactly those two types fewer."""
    ours = _kinds_by_name(_btf_of(linker.link([lib, main_o])))
    ref = _kinds_by_name(_btf_of(_bpftool_link(tmp_path, lib, main_o)))
    diff = {k: (ours.get(k, 0), ref.get(k, 0)) for k in set(ours) | set(ref) if ours.get(k, 0) != ref.get(k, 0)}
    assert diff == {("FUNC_PROTO", "int (*)(int, int)"): (1, 2), ("FUNC_PROTO", "int (*)(int)"): (2, 3)}
    same_order = _kinds_by_name(_btf_of(linker.link([main_o, lib])))
    assert ours == same_order


def test_dedup_keeps_ext_records_pointing_at_the_right_types(lib: Path, main_o: Path) -> None:
    a = _summary(linker.link([main_o, lib]))
    b = _summary(linker.link([main_o, lib], dedup=False))
    for key in ("func_info", "line_info", "core_relos", "datasecs", "funcs", "vars"):
        assert a[key] == b[key], key
    # BTF.ext type ids point at the kinds the kernel expects
    data = linker.link([main_o, lib])
    btf = _btf_of(data)
    ext = BTFExt.parse(ELFFile(BytesIO(data)).get_section_by_name(".BTF.ext").data(), btf)
    assert all(btf.kind_of(r.type_id) == Kind.FUNC for v in ext.func_info.values() for r in v)
    spec = elf.load_spec(data, name="link_main")
    assert set(spec.programs) == {"main_prog", "main_on_enter", "lib_prog"}


def test_dedup_cost(lib: Path, main_o: Path) -> None:
    import time

    other = build_bpf_object("link_other.bpf.c")
    best = {}
    for dd in (False, True):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            linker.link([main_o, lib, other], dedup=dd)
            times.append(time.perf_counter() - t0)
        best[dd] = min(times)
    # ~1300 input types: dedup adds a fraction of the link's own cost (measured ~1.1x)
    assert best[True] < 2 * best[False], best


def test_a_modifier_cycle_in_an_input_is_an_error_not_a_hang() -> None:
    """Hostile input (issue 10): two CONSTs pointing at each other in a library's BTF."""
    from tracekit.btf.types import Kind, Type
    from tracekit.btf.writer import BTFBuilder
    from tracekit.errors import LinkerError
    from tracekit.obj import linker

    b = BTFBuilder()
    b.add_type(Type(Kind.CONST, type=2))
    b.add_type(Type(Kind.CONST, type=1))
    bad = b.to_btf(name="lib.bpf.o")
    ok = BTFBuilder()
    ok.add_type(Type(Kind.INT, "int", size=4, bits=32))
    m = linker._TypeMatcher(ok.to_btf(), bad)
    with pytest.raises(LinkerError, match="chain longer than"):
        m.mismatch(1, 1)

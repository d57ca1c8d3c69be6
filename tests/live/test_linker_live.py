"""Linked objects on the live kernel: ours and libbpf's, loaded by tracekit and by libbpf."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import tracekit
from tests.support import build_bpf_object, require_live
from tracekit.kernel.syscalls import bpf
from tracekit.obj import linker

pytestmark = pytest.mark.live
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"


@pytest.fixture
def objs() -> tuple[Path, Path, Path]:
    require_live()
    return build_bpf_object("link_main.bpf.c"), build_bpf_object("link_lib.bpf.c"), build_bpf_object("link_other.bpf.c")


def run(prog: tracekit.Program) -> int:
    # BPF_PROG_TEST_RUN with no ctx/data: SEC("syscall") programs refuse any data buffer
    # (Program.test_run() always passes one; see the report).
    return bpf.prog_test_run(prog.fd).retval


def _exercise(obj: tracekit.Object) -> dict:
    obj.load()
    ret_main = run(obj.programs["main_prog"])
    ret_lib = run(obj.programs["lib_prog"])
    return dict(ret_main=ret_main, ret_lib=ret_lib, bss=obj.bss.as_dict(), data=obj.data.as_dict(),
                map=sorted(obj.maps["shared_map"].items()))


def test_linked_programs_run(objs, tmp_path: Path) -> None:
    main_o, lib_o, _ = objs
    obj = tracekit.open(linker.link([main_o, lib_o]), name="link_main")
    try:
        r = _exercise(obj)
    finally:
        obj.close()
    bss = r["bss"]
    assert r["ret_main"] == 3 + 100  # lib's .rodata lib_factor + main's main_knob
    assert bss["res_add"] == 7 + 5  # lib_add(lib_data, 5): extern function and extern .data variable
    assert bss["res_scale"] == 40  # main's strong lib_scale (x * 10), not lib's weak x * 2
    assert bss["res_record"] == 1 and bss["lib_last"] == 9
    # CO-RE in both parts, relocated for the running kernel
    vmlinux = tracekit.BTF.from_file("/sys/kernel/btf/vmlinux")
    ts = vmlinux.type(vmlinux.find_one("task_struct", tracekit.btf.types.Kind.STRUCT))
    pid = next(m for m in ts.members if m.name == "pid")
    assert bss["main_pid_off"] == pid.bit_offset // 8
    assert bss["lib_task_size"] == ts.size
    # lib_prog calls lib_scale too: the strong one; lib_counter = 1 (main) + 10 (lib_prog)
    assert r["ret_lib"] == 3 and bss["lib_counter"] == 11
    # the shared map: written by lib_record (key 1) and by main through its extern (key 2)
    m = dict(r["map"])
    assert int.from_bytes(m[(1).to_bytes(4, "little")], "little") == 9
    assert int.from_bytes(m[(2).to_bytes(4, "little")], "little") == 42


def test_same_behaviour_as_libbpf_linked_output(objs, tmp_path: Path) -> None:
    main_o, lib_o, _ = objs
    ref = tmp_path / "ref.o"
    subprocess.run([BPFTOOL, "gen", "object", str(ref), str(main_o), str(lib_o)], check=True, capture_output=True)
    results = []
    for src in (linker.link([main_o, lib_o]), ref.read_bytes()):
        obj = tracekit.open(src, name="link_main")
        try:
            results.append(_exercise(obj))
        finally:
            obj.close()
    assert results[0] == results[1]


def test_libbpf_loads_our_output(objs, tmp_path: Path) -> None:
    main_o, lib_o, _ = objs
    out = tmp_path / "linked.bpf.o"
    linker.link_files(out, [main_o, lib_o])
    mnt = tempfile.mkdtemp(prefix="tk-bpffs-")
    subprocess.run(["mount", "-t", "bpf", "bpf", mnt], check=True)
    try:
        r = subprocess.run([BPFTOOL, "prog", "loadall", str(out), f"{mnt}/p"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(f"{mnt}/p")) == ["lib_prog", "main_on_enter", "main_prog"]
    finally:
        subprocess.run(["umount", mnt], check=True)
        os.rmdir(mnt)


def test_raw_tp_writes_bss_through_library_call(objs) -> None:
    main_o, lib_o, _ = objs
    with tracekit.open(main_o, link=[lib_o]) as obj:
        obj.rodata.target_tgid = os.getpid()
        obj.load()
        obj.programs["main_on_enter"].attach()
        for _ in range(5):
            os.getppid()
        hits, counter = obj.bss.main_hits, obj.bss.lib_counter
    assert hits >= 5
    assert counter == 1000 * hits  # lib_add(0, 1000) per syscall, added to lib's .bss variable


def test_open_with_link_keeps_main_name_and_resolves(objs) -> None:
    main_o, lib_o, other_o = objs
    with tracekit.open(other_o, link=[lib_o]) as obj:
        assert obj.name == "link_other"
        assert "link_oth.rodata" in obj.maps
        obj.load()
        assert run(obj.programs["other_prog"]) == 0
        assert obj.bss.other_seen == 7 + 9
        assert obj.bss.lib_counter == 3 + 100  # lib_add(lib_factor, 100)


def test_kernel_takes_deduplicated_btf_with_func_and_line_info(objs) -> None:
    """The linker's deduplicated BTF goes to the kernel with every program's func_info and
    line_info (resolved through the dedup id map), and the programs run as before."""
    main_o, lib_o, _ = objs
    data = linker.link([main_o, lib_o])
    counts = {}
    with tracekit.open(data, name="link_main") as obj:
        obj.load()
        for name in ("main_prog", "lib_prog", "main_on_enter"):
            s = bpf.obj_get_info_by_fd(obj.programs[name].fd, bpf.ProgInfoStruct())
            assert s.btf_id != 0, name
            counts[name] = (s.nr_func_info, s.nr_line_info)
            assert s.nr_func_info >= 1 and s.nr_line_info > 0, (name, counts[name])
        assert run(obj.programs["main_prog"]) == 103
        kernel_btf_size = _btf_size(s.btf_id)
    # the same records as the undeduplicated link: dedup changes ids, not what they describe
    with tracekit.open(linker.link([main_o, lib_o], dedup=False), name="link_main") as obj:
        obj.load()
        for name, want in counts.items():
            s = bpf.obj_get_info_by_fd(obj.programs[name].fd, bpf.ProgInfoStruct())
            assert (s.nr_func_info, s.nr_line_info) == want
        # what the kernel holds is the smaller, deduplicated BTF
        assert kernel_btf_size < 0.75 * _btf_size(s.btf_id)


def _btf_size(btf_id: int) -> int:
    f = bpf.btf_get_fd_by_id(btf_id)
    try:
        return bpf.btf_info(f.fd).btf_size
    finally:
        f.close()

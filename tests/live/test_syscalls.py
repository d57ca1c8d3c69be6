"""bpf(2), perf_event_open(2), tracefs/bpffs helpers against the running kernel."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import textwrap

import pytest

from tests.support import open_fds, require_live
from tracekit.errors import (
    AttachError,
    BTFLoadError,
    PermissionDeniedError,
    SyscallError,
    VerifierError,
)
from tracekit.kernel.fd import FD
from tracekit.kernel.syscalls import bpf, fs, perf
from tracekit.obj import insn as I
from tracekit.uapi import Cmd, MapType, ProgType


@pytest.fixture(autouse=True)
def _live() -> None:
    require_live()



def ret_imm(value: int) -> bytes:
    return I.encode([I.mov64_imm(0, value), I.exit_insn()])


def minimal_btf(int_bits: int = 32) -> bytes:
    """A BTF blob with one type, ``int`` (4 bytes): header + type section + strings."""
    strings = b"\0int\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | int_bits)  # signed
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


# --- programs ------------------------------------------------------------------------------


def test_load_program_and_info() -> None:
    before = open_fds()
    fd = bpf.load_program(ProgType.RAW_TRACEPOINT, ret_imm(0), name="tk_ret0")
    try:
        info = bpf.prog_info(fd.fd)
        assert info.type == ProgType.RAW_TRACEPOINT
        assert info.name == "tk_ret0"
        assert info.xlated_prog_len == 16
        assert len(info.tag) == 16
        assert info.gpl_compatible
        # PROG_GET_NEXT_ID finds it; PROG_GET_FD_BY_ID reopens it.
        ids = []
        i = bpf.prog_get_next_id(0)
        while i is not None:
            ids.append(i)
            i = bpf.prog_get_next_id(i)
        assert info.id in ids
        with bpf.prog_get_fd_by_id(info.id) as again:
            assert bpf.prog_info(again.fd).tag == info.tag
    finally:
        fd.close()
    assert open_fds() == before


def test_long_program_name_is_truncated_and_sanitized() -> None:
    with bpf.load_program(ProgType.RAW_TRACEPOINT, ret_imm(0), name="a-very/long:program_name_here") as fd:
        assert bpf.prog_info(fd.fd).name == "a_very_long_pro"


def test_verifier_rejection_carries_the_log() -> None:
    before = open_fds()
    with pytest.raises(VerifierError) as ei:
        bpf.load_program(ProgType.RAW_TRACEPOINT, I.encode([I.exit_insn()]), name="bad_exit")
    e = ei.value
    assert e.program == "bad_exit"
    assert e.errno == errno.EACCES
    assert "R0 !read_ok" in e.log
    assert "R0 !read_ok" in str(e)
    assert open_fds() == before


def test_verifier_log_on_request_and_growth() -> None:
    # A long straight-line program gives a log far larger than the first buffer with level 2.
    prog = [I.mov64_imm(0, 0)] + [I.Insn(I.BPF_ALU64 | I.BPF_ADD | I.BPF_K, 0, 0, 0, 1)] * 20000 + [I.exit_insn()]
    bad = prog[:-1] + [I.Insn(I.BPF_LDX | I.BPF_MEM | I.BPF_DW, 0, 1, 0, 0), I.Insn(I.BPF_LDX | I.BPF_MEM | I.BPF_DW, 0, 0, 0, 0), I.exit_insn()]
    with pytest.raises(VerifierError) as ei:
        bpf.load_program(ProgType.RAW_TRACEPOINT, I.encode(bad), name="big_bad", log_level=2)
    assert len(ei.value.log) > bpf.INITIAL_LOG_SIZE
    assert "invalid mem access" in ei.value.log


def test_prog_test_run_syscall_program() -> None:
    with bpf.load_program(ProgType.SYSCALL, ret_imm(42), name="tk_sys42", prog_flags=1 << 4) as fd:
        r = bpf.prog_test_run(fd.fd, ctx_in=b"\0" * 8)
        assert r.retval == 42
        r = bpf.prog_test_run(fd.fd)
        assert r.retval == 42
        assert r.duration_ns >= 0


def test_prog_test_run_ctx_written_back() -> None:
    # SYSCALL programs may write their context, which the kernel copies back into ctx_in
    # (ctx_out is refused for them): *(u32 *)(r1 + 0) = 7; r0 = 0
    prog = [I.Insn(I.BPF_ST | I.BPF_MEM | I.BPF_W, 1, 0, 0, 7), I.mov64_imm(0, 0), I.exit_insn()]
    with bpf.load_program(ProgType.SYSCALL, I.encode(prog), name="tk_ctx", prog_flags=1 << 4) as fd:
        r = bpf.prog_test_run(fd.fd, ctx_in=b"\1\2\3\4\5\6\7\x08")
        assert r.ctx_in_after == b"\7\0\0\0\5\6\7\x08"
        with pytest.raises(SyscallError) as ei:
            bpf.prog_test_run(fd.fd, ctx_in=b"\0" * 8, ctx_out_size=8)
        assert ei.value.errno == errno.EINVAL


def test_prog_load_wrong_args() -> None:
    with pytest.raises(ValueError):
        bpf.prog_load(ProgType.RAW_TRACEPOINT, b"\0" * 7)
    with pytest.raises(ValueError):
        bpf.prog_load(ProgType.TRACING, ret_imm(0), attach_prog_fd=5, attach_btf_obj_fd=6)


# --- BTF ---------------------------------------------------------------------------------


def test_load_btf_and_info() -> None:
    before = open_fds()
    with bpf.load_btf(minimal_btf(), "mini") as fd:
        info = bpf.btf_info(fd.fd)
        assert info.btf_size == len(minimal_btf())
        assert not info.kernel_btf
        assert bpf.btf_data(fd.fd) == minimal_btf()
        with bpf.btf_get_fd_by_id(info.id) as again:
            assert bpf.btf_info(again.fd).id == info.id
    assert open_fds() == before


def test_load_btf_rejected_has_log() -> None:
    before = open_fds()
    with pytest.raises(BTFLoadError) as ei:
        bpf.load_btf(minimal_btf(int_bits=64), "broken")  # 64 bits in a 4-byte int
    assert ei.value.log.strip()
    assert "nr_bits" in ei.value.log or "Invalid" in ei.value.log
    assert open_fds() == before


def test_vmlinux_btf_found_by_id() -> None:
    i = bpf.btf_get_next_id(0)
    found = False
    while i is not None:
        try:
            fd = bpf.btf_get_fd_by_id(i)
        except SyscallError as e:  # raced with a BTF going away
            assert e.errno == errno.ENOENT
        else:
            with fd:
                info = bpf.btf_info(fd.fd)
                if info.kernel_btf and info.name == "vmlinux":
                    found = True
                    break
        i = bpf.btf_get_next_id(i)
    assert found


# --- errors --------------------------------------------------------------------------------


def test_bad_fd_errors_are_specific() -> None:
    with pytest.raises(SyscallError) as ei:
        bpf.map_info(999_999)
    assert ei.value.errno in (errno.EBADF, errno.EBADFD)
    with pytest.raises(SyscallError) as ei:
        bpf.map_freeze(999_999)
    assert "freeze" in str(ei.value)


def test_non_root_gets_permission_denied() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        # Import first: the interpreter's files may not be readable by "nobody".
        from tracekit.errors import PermissionDeniedError
        from tracekit.kernel.maps import Map
        from tracekit.uapi import MapType
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        try:
            Map.create(MapType.ARRAY, 4, 4, 1, name="nope")
        except PermissionDeniedError as e:
            print("DENIED", e.errno, e)
            sys.exit(0)
        print("CREATED")
        sys.exit(1)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("DENIED 1 ")
    assert "root" in r.stdout


# --- perf and tracefs -----------------------------------------------------------------------


def test_tracefs_and_tracepoint_id() -> None:
    root = fs.tracefs_path()
    assert os.path.isdir(os.path.join(root, "events"))
    tp = fs.tracepoint_id("syscalls", "sys_enter_getpid")
    with open(os.path.join(root, "events/syscalls/sys_enter_getpid/id")) as f:
        assert tp == int(f.read())
    assert fs.tracepoint_exists("syscalls", "sys_enter_getpid")
    assert not fs.tracepoint_exists("syscalls", "sys_enter_nope")


def test_missing_tracepoint_lists_near_matches() -> None:
    with pytest.raises(AttachError) as ei:
        fs.tracepoint_id("syscalls", "sys_enter_getpidd")
    assert "syscalls:sys_enter_getpid" in str(ei.value)
    with pytest.raises(AttachError) as ei:
        fs.tracepoint_id("syscall", "sys_enter_getpid")
    assert "syscalls:sys_enter_getpid" in str(ei.value)
    with pytest.raises(AttachError):
        fs.tracepoint_id("../..", "x")


def test_mounts_are_found() -> None:
    point = fs.bpffs_path()
    assert fs.is_bpffs(point)
    assert not fs.is_bpffs("/proc")
    assert fs.find_mount("proc") == "/proc"
    assert fs.find_mount("no-such-fs") is None


def test_perf_event_open_tracepoint_enable_disable() -> None:
    before = open_fds()
    tp = fs.tracepoint_id("syscalls", "sys_enter_getpid")
    with perf.open_tracepoint(tp) as pfd:
        perf.disable(pfd.fd)
        perf.enable(pfd.fd)
        with pytest.raises(SyscallError) as ei:
            perf.set_bpf(pfd.fd, 999_999)
        assert ei.value.errno == errno.EBADF
    assert open_fds() == before


def test_perf_event_open_bad_event() -> None:
    with pytest.raises(SyscallError) as ei:
        perf.open_tracepoint(0xFFFFFFF)
    assert ei.value.errno in (errno.ENOENT, errno.EINVAL)


def test_possible_cpus() -> None:
    assert len(perf.possible_cpus()) >= os.cpu_count()  # type: ignore[operator]


# --- fd ownership -----------------------------------------------------------------------------


def test_fd_owner_closes_once_and_warns_on_leak() -> None:
    before = open_fds()
    f = FD(os.open("/dev/null", os.O_RDONLY), "test fd")
    n = f.fd
    f.close()
    f.close()
    assert f.closed
    assert n not in open_fds() or open_fds() == before
    g = FD(os.open("/dev/null", os.O_RDONLY), "leaky")
    with pytest.warns(ResourceWarning, match="unclosed leaky"):
        del g
        import gc

        gc.collect()
    assert open_fds() == before


def test_raw_bpf_unknown_command() -> None:
    import ctypes

    ret, err = bpf.sys_bpf(9999, bpf.LinkDetachAttr())
    assert ret < 0 and err == errno.EINVAL
    assert Cmd.MAP_CREATE == 0 and MapType.ARRAY == 2
    assert ctypes.sizeof(bpf.LinkDetachAttr) == 4


def test_eperm_without_log_is_permission_denied_with_reason() -> None:
    # On this host fentry programs are refused with EPERM and an empty verifier log.
    from tracekit.btf import BTF, Kind
    from tracekit.uapi import AttachType

    btf = BTF.from_file("/sys/kernel/btf/vmlinux")
    tid = btf.find_one("do_sys_openat2", Kind.FUNC)
    assert tid is not None
    try:
        fd = bpf.load_program(ProgType.TRACING, ret_imm(0), name="tk_fentry",
                              expected_attach_type=AttachType.TRACE_FENTRY, attach_btf_id=tid)
    except PermissionDeniedError as e:
        assert e.errno == errno.EPERM
        assert "although we run as root" in str(e)
    else:  # a kernel where fentry works
        fd.close()

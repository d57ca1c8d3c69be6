"""Attaching hand-assembled programs: tracepoint, raw_tracepoint, tp_btf; cookies,
pinning, detaching, and no leaked fds."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from tests.support import require_live
from tracekit.btf import BTF, Kind
from tracekit.errors import AttachError, NotSupportedError, SyscallError
from tracekit.hooks.links import (
    Link,
    attach_raw_tracepoint,
    attach_tracepoint,
    attach_tracing,
)
from tracekit.kernel.maps import Map
from tracekit.kernel.syscalls import bpf
from tracekit.obj import insn as I
from tracekit.uapi import AttachType, Helper, LinkType, MapType, ProgType


@pytest.fixture(autouse=True)
def _live() -> None:
    require_live()




@pytest.fixture
def counter() -> Iterator[Map]:
    with Map.create(MapType.ARRAY, 4, 8, 1, name="tk_counter") as m:
        yield m


def mov_reg(dst: int, src: int) -> I.Insn:
    return I.Insn(I.BPF_ALU64 | I.BPF_MOV | I.BPF_X, dst, src)


def counter_program(map_fd: int, *, store_cookie: bool = False, pid: int | None = None) -> bytes:
    """Increment (or, with store_cookie, set to bpf_get_attach_cookie()) element 0 of an
    array map — only for ``pid`` (default: this process), so other processes don't count."""
    pid = os.getpid() if pid is None else pid
    end = "end"
    prog: list[I.Insn | str] = [
        mov_reg(6, 1),  # keep ctx for the cookie helper
        I.Insn(I.CALL, imm=Helper.get_current_pid_tgid),
        I.Insn(I.BPF_ALU64 | 0x70 | I.BPF_K, 0, 0, 0, 32),  # r0 >>= 32 (tgid)
        ("jne", pid),  # if r0 != pid goto end
        I.Insn(I.LD_IMM64, 1, I.BPF_PSEUDO_MAP_FD, 0, map_fd), I.Insn(0),
        mov_reg(2, 10),
        I.Insn(I.BPF_ALU64 | I.BPF_ADD | I.BPF_K, 2, 0, 0, -4),
        I.Insn(I.BPF_ST | I.BPF_MEM | I.BPF_W, 10, 0, -4, 0),
        I.Insn(I.CALL, imm=Helper.map_lookup_elem),
        ("jeq0",),  # if r0 == 0 goto end
    ]
    if store_cookie:
        prog += [
            mov_reg(7, 0),
            mov_reg(1, 6),
            I.Insn(I.CALL, imm=Helper.get_attach_cookie),
            I.Insn(I.BPF_STX | I.BPF_MEM | I.BPF_DW, 7, 0, 0, 0),  # *(u64 *)(r7 + 0) = r0
        ]
    else:
        prog += [
            I.mov64_imm(1, 1),
            I.Insn(I.BPF_STX | I.BPF_ATOMIC | I.BPF_DW, 0, 1, 0, I.BPF_ADD),  # lock *(u64 *)r0 += r1
        ]
    prog += [end, I.mov64_imm(0, 0), I.exit_insn()]
    # resolve the two forward jumps to "end"
    target = prog.index(end)
    out: list[I.Insn] = []
    for idx, x in enumerate(prog):
        if x == end:
            continue
        if isinstance(x, tuple):
            off = target - idx - 1
            if x[0] == "jne":
                out.append(I.Insn(I.BPF_JMP | 0x50 | I.BPF_K, 0, 0, off, x[1]))
            else:
                out.append(I.Insn(I.BPF_JMP | 0x10 | I.BPF_K, 0, 0, off, 0))
        else:
            out.append(x)
    return I.encode(out)


def count(m: Map) -> int:
    return int.from_bytes(m.lookup(0), "little")  # type: ignore[arg-type]


def getpids(n: int = 5) -> None:
    for _ in range(n):
        os.getpid()  # CPython does not cache getpid(): each call is a syscall


# --- tracepoint ----------------------------------------------------------------------------


def test_tracepoint_counter(counter: Map, no_leaks: None) -> None:
    with bpf.load_program(ProgType.TRACEPOINT, counter_program(counter.fd), name="tk_tp_count") as prog:
        with attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpid") as link:
            assert link.is_bpf_link and link.perf_fd is not None
            getpids(5)
            assert count(counter) >= 5
            info = link.info()
            assert info.type == LinkType.PERF_EVENT
            assert info.prog_id == bpf.prog_info(prog.fd).id
            assert info.details.get("tp_name") == "sys_enter_getpid"
        assert link.closed
        before = count(counter)
        getpids(5)
        assert count(counter) == before  # detached by close


def test_tracepoint_cookie(counter: Map, no_leaks: None) -> None:
    prog_bytes = counter_program(counter.fd, store_cookie=True)
    with bpf.load_program(ProgType.TRACEPOINT, prog_bytes, name="tk_tp_cookie") as prog:
        with attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpid", cookie=0xC00C1E) as link:
            getpids(1)
            assert count(counter) == 0xC00C1E
            assert link.info().details.get("cookie") == 0xC00C1E


def test_tracepoint_ioctl_fallback(counter: Map, no_leaks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels < 5.15 refuse BPF_PERF_EVENT links with EINVAL; the ioctl path must then work.

    Only the refusal is simulated; the PERF_EVENT_IOC_SET_BPF attach and the counting are real.
    """
    import tracekit.hooks.links as links

    def old_kernel_link_create(*a: object, **k: object) -> object:
        raise SyscallError("create BPF link", errno.EINVAL)

    with bpf.load_program(ProgType.TRACEPOINT, counter_program(counter.fd), name="tk_tp_ioctl") as prog:
        monkeypatch.setattr(links._bpf, "link_create", old_kernel_link_create)
        with attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpid") as link:
            assert not link.is_bpf_link
            getpids(3)
            assert count(counter) >= 3
            with pytest.raises(NotSupportedError):
                link.info()
        before = count(counter)
        getpids(3)
        assert count(counter) == before
        with pytest.raises(NotSupportedError, match="5.15"):
            attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpid", cookie=1)


def test_tracepoint_errors(no_leaks: None) -> None:
    with bpf.load_program(ProgType.RAW_TRACEPOINT, I.encode([I.mov64_imm(0, 0), I.exit_insn()]),
                          name="tk_wrongtype") as prog:
        with pytest.raises(AttachError, match="does not exist.*sys_enter_getpid"):
            attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpidx")
        # A raw_tp program on a perf tracepoint: both attach paths refuse; say why.
        with pytest.raises(AttachError, match="right type"):
            attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpid")


# --- raw tracepoint ----------------------------------------------------------------------------


def test_raw_tracepoint_counter(counter: Map, no_leaks: None) -> None:
    with bpf.load_program(ProgType.RAW_TRACEPOINT, counter_program(counter.fd), name="tk_rawtp") as prog:
        with attach_raw_tracepoint(prog.fd, "sys_enter") as link:
            getpids(5)
            assert count(counter) >= 5
            info = link.info()
            assert info.type == LinkType.RAW_TRACEPOINT
            assert info.details["tp_name"] == "sys_enter"
        before = count(counter)
        getpids(3)
        assert count(counter) == before


def test_raw_tracepoint_trivial_program(no_leaks: None) -> None:
    # The SEC-less minimal program: r0 = 0; exit.
    with bpf.load_program(ProgType.RAW_TRACEPOINT, I.encode([I.mov64_imm(0, 0), I.exit_insn()]),
                          name="tk_ret0") as prog:
        with attach_raw_tracepoint(prog.fd, "sys_enter"):
            os.getppid()


def test_raw_tracepoint_missing(no_leaks: None) -> None:
    with bpf.load_program(ProgType.RAW_TRACEPOINT, I.encode([I.mov64_imm(0, 0), I.exit_insn()]),
                          name="tk_ret0") as prog:
        with pytest.raises(AttachError, match="no raw tracepoint 'no_such_tp'"):
            attach_raw_tracepoint(prog.fd, "no_such_tp")


# --- tp_btf (BTF-typed tracing) ------------------------------------------------------------------


def vmlinux_btf_id(name: str) -> int:
    btf = BTF.from_file("/sys/kernel/btf/vmlinux")
    tid = btf.find_one(name, Kind.TYPEDEF)
    assert tid is not None, name
    return tid


def test_tp_btf_counter(counter: Map, no_leaks: None) -> None:
    prog = bpf.load_program(
        ProgType.TRACING, counter_program(counter.fd), name="tk_tpbtf",
        expected_attach_type=AttachType.TRACE_RAW_TP, attach_btf_id=vmlinux_btf_id("btf_trace_sys_enter"),
    )
    with prog, attach_tracing(prog.fd, AttachType.TRACE_RAW_TP, target="sys_enter") as link:
        getpids(4)
        assert count(counter) >= 4
        info = link.info()
        assert info.type in (LinkType.RAW_TRACEPOINT, LinkType.TRACING)
    before = count(counter)
    getpids(2)
    assert count(counter) == before


def test_tracing_attach_wrong_program(no_leaks: None) -> None:
    with bpf.load_program(ProgType.RAW_TRACEPOINT, I.encode([I.mov64_imm(0, 0), I.exit_insn()]),
                          name="tk_ret0") as prog:
        with pytest.raises(AttachError, match="expected_attach_type"):
            attach_tracing(prog.fd, AttachType.TRACE_FENTRY)


# --- pin and detach --------------------------------------------------------------------------------




def test_pinned_link_outlives_close_until_unpinned(counter: Map, bpffs: str, no_leaks: None) -> None:
    path = os.path.join(bpffs, "tk_link")
    with bpf.load_program(ProgType.TRACEPOINT, counter_program(counter.fd), name="tk_pinlink") as prog:
        link = attach_tracepoint(prog.fd, "syscalls", "sys_enter_getpid")
        link.pin(path)
        link.close()
    # Program, link and perf event fds are closed; the pin keeps the attachment alive.
    getpids(3)
    assert count(counter) >= 3
    pinned = Link(bpf.obj_get(path), kind="tracepoint", target="syscalls:sys_enter_getpid")
    assert pinned.info().type == LinkType.PERF_EVENT
    # This kernel cannot force-detach perf links: detach() closes and says so.
    assert pinned.detach() is False
    assert pinned.closed
    assert pinned.detach() is False  # idempotent
    getpids(2)
    assert count(counter) >= 5  # still attached through the pin
    os.unlink(path)
    # The last reference dropped by unlinking a pin is released from a kernel workqueue,
    # so the detach is asynchronous: wait (bounded) until the counter stops moving.
    import time

    deadline = time.monotonic() + 5
    while True:
        before = count(counter)
        getpids(3)
        if count(counter) == before:
            break
        assert time.monotonic() < deadline, "link still attached 5 s after its pin was removed"
        time.sleep(0.02)


def test_link_create_bad_fd_is_attach_error(no_leaks: None) -> None:
    with pytest.raises((AttachError, SyscallError)):
        attach_raw_tracepoint(999_999, "sys_enter")

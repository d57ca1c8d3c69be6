"""uprobe.multi / uretprobe.multi links (BPF_TRACE_UPROBE_MULTI, Linux 6.6), live.

The probed functions are the tk_fire_* functions of tests/objects/usdt_target.c (each
called once per integer the process reads) and tk_uprobe_target of attach_target.c
(returns 2x+1).  Counts are exact: per function (by runtime IP), per BPF cookie.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

import tracekit
from tests.live.test_attach_probes import target_binary
from tests.live.test_usdt import Target
from tests.support import build_bpf_object, need, open_fds, require_live
from tests.unit.test_usdt_notes import build_usdt_target
from tracekit.errors import AttachError, NotSupportedError
from tracekit.hooks import uprobe, usdt
from tracekit.kernel import features

pytestmark = pytest.mark.live

FIRE = ["tk_fire_mem", "tk_fire_regs", "tk_fire_global", "tk_fire_stack", "tk_fire_sib", "tk_fire_twice_a",
        "tk_fire_twice_b", "tk_fire_sema"]


@pytest.fixture(scope="module")
def binary() -> str:
    return build_usdt_target()


@pytest.fixture(scope="module")
def obj() -> Iterator[Any]:
    require_live()
    need("uprobe.multi", uprobe.uprobe_multi_supported(), "BPF_TRACE_UPROBE_MULTI programs are refused")
    o = tracekit.open(str(build_bpf_object("uprobe_multi.bpf.c")))
    o.load()
    yield o
    o.close()


@pytest.fixture
def fresh(obj: Any) -> Any:
    keys = list(obj.maps["calls"].keys())
    for k in keys:
        obj.maps["calls"].delete(k)
    obj.bss["by_cookie"] = [0] * 16
    obj.bss["rets"] = [0] * 16
    obj.bss["ret_hits"] = 0
    return obj


@pytest.fixture
def target(binary: str) -> Iterator[Target]:
    t = Target(binary)
    yield t
    t.close()


def calls_by_name(obj: Any, binary: str, pid: int) -> dict[str, int]:
    """calls map (runtime IP -> count) by function name."""
    ips = {usdt._runtime_ip(pid, binary, off): name for name, off in uprobe.match_symbols(binary, "tk_fire_*")}
    out = {}
    keys = obj.maps["calls"].keys()  # an ObjectMap forwards keys() to the kernel map; no __iter__
    for k in keys:
        ip = int.from_bytes(k, "little")
        out[ips.get(ip, hex(ip))] = int.from_bytes(obj.maps["calls"].lookup(k), "little")
    return out


def test_glob_pattern_counts_every_call(fresh: Any, binary: str, target: Target) -> None:
    before = open_fds()
    link = fresh.programs["tk_multi"].attach_uprobe_multi(binary, "tk_fire_*", pid=target.pid)
    assert link.kind == "uprobe.multi" and len(link.offsets) == len(FIRE)
    for x in range(5):
        target.fire(x)
    link.close()
    target.fire(99)  # detached: not counted
    assert calls_by_name(fresh, binary, target.pid) == {name: 5 for name in FIRE}
    assert fresh.bss["by_cookie"][0] == 5 * len(FIRE)
    assert open_fds() == before


def test_symbols_with_cookies_and_offsets(fresh: Any, binary: str, target: Target) -> None:
    prog = fresh.programs["tk_multi"]
    with prog.attach_uprobe_multi(binary, symbols=["tk_fire_mem", "tk_fire_regs"], cookies=[11, 12],
                                  pid=target.pid):
        offs = dict(uprobe.match_symbols(binary, "tk_fire_s*"))
        with prog.attach_uprobe_multi(binary, offsets=[offs["tk_fire_stack"], offs["tk_fire_sema"]], cookie=13,
                                      pid=target.pid):
            target.fire(1)
            target.fire(2)
        target.fire(3)
    cookies = fresh.bss["by_cookie"]
    assert (cookies[11], cookies[12], cookies[13]) == (3, 3, 4)
    assert calls_by_name(fresh, binary, target.pid) == {"tk_fire_mem": 3, "tk_fire_regs": 3, "tk_fire_stack": 2,
                                                        "tk_fire_sema": 2}


def test_uretprobe_multi_sees_return_values(fresh: Any) -> None:
    """attach_target.c's tk_uprobe_target(x) returns 2x+1."""
    path = target_binary()
    proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        with fresh.programs["tk_multi_ret"].attach_uprobe_multi(path, "tk_uprobe_*", cookie=5, pid=proc.pid) as lk:
            assert lk.kind == "uretprobe.multi"
            proc.stdin.write("20\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "41"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert (fresh.bss["ret_hits"], fresh.bss["rets"][5]) == (1, 41)


def test_pid_limits_the_link(fresh: Any, binary: str, target: Target) -> None:
    other = Target(binary)
    try:
        with fresh.programs["tk_multi"].attach_uprobe_multi(binary, "tk_fire_mem", pid=other.pid):
            target.fire(1)
            other.fire(2)
            other.fire(3)
    finally:
        other.close()
    assert fresh.bss["by_cookie"][0] == 2


def test_section_target_and_object_attach(binary: str, target: Target) -> None:
    """SEC("uprobe.multi/PATH:PATTERN") attaches with Object.attach() (every process)."""
    require_live()
    need("uprobe.multi", uprobe.uprobe_multi_supported(), "BPF_TRACE_UPROBE_MULTI programs are refused")
    with tracekit.open(str(build_bpf_object("uprobe_multi.bpf.c"))) as o:
        o.programs["tk_multi"].set_attach_target(f"{binary}:tk_fire_twice_*")
        o.programs["tk_multi_ret"].autoload = False
        (link,) = o.attach()
        assert link.target == f"{binary}:tk_fire_twice_*"
        target.fire(1)
        target.fire(2)
        assert calls_by_name(o, binary, target.pid) == {"tk_fire_twice_a": 2, "tk_fire_twice_b": 2}


def test_errors(fresh: Any, binary: str) -> None:
    prog = fresh.programs["tk_multi"]
    with pytest.raises(AttachError, match=r"no function of .* matches 'tk_nothing\*'"):
        prog.attach_uprobe_multi(binary, "tk_nothing*")
    with pytest.raises(AttachError, match="per-function cookies need an explicit list"):
        prog.attach_uprobe_multi(binary, "tk_fire_*", cookies=[1])
    with pytest.raises(AttachError, match="2 cookies for 1 targets"):
        prog.attach_uprobe_multi(binary, symbols=["tk_fire_mem"], cookies=[1, 2])
    with pytest.raises(AttachError, match="exactly one of"):
        prog.attach_uprobe_multi(binary, "tk_fire_*", symbols=["tk_fire_mem"])
    with pytest.raises(AttachError, match=r"not loaded for uprobe\.multi"):
        prog.spec.attach_kind = "uprobe"
        try:
            prog.attach_uprobe_multi(binary, "tk_fire_*")
        finally:
            prog.spec.attach_kind = "uprobe.multi"


def test_kernel_without_uprobe_multi_says_so(fresh: Any, binary: str) -> None:
    """The feature probe decides before BPF_LINK_CREATE: on a kernel without the attach
    type the error names the feature, the kernel version and the alternative."""
    with features.override(attach_type_trace_uprobe_multi=False):
        assert not uprobe.uprobe_multi_supported()
        with pytest.raises(NotSupportedError, match=r"uprobe\.multi links is not supported by this kernel "
                           r"\(needs Linux 6\.6 or newer\).*attach_uprobe\(\)") as e:
            fresh.programs["tk_multi"].attach_uprobe_multi(binary, "tk_fire_*")
        assert e.value.min_kernel == "6.6"
    assert uprobe.uprobe_multi_supported()

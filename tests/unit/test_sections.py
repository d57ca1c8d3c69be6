"""tracekit.obj.sections: libbpf's SEC() table."""

from __future__ import annotations

import pytest

from tracekit.errors import SectionError
from tracekit.obj.sections import SUPPORTED_PREFIXES, parse_section
from tracekit.uapi import AttachType as AT
from tracekit.uapi import ProgType as PT

CASES = [
    # sec, prog_type, expected_attach_type, attach_kind, target, sleepable, needs_btf
    ("tracepoint/syscalls/sys_enter_execve", PT.TRACEPOINT, 0, "tracepoint", "syscalls/sys_enter_execve", False, False),
    ("tp/sched/sched_switch", PT.TRACEPOINT, 0, "tracepoint", "sched/sched_switch", False, False),
    ("tp.s/a/b", PT.TRACEPOINT, 0, "tracepoint", "a/b", True, False),
    ("raw_tracepoint/sys_enter", PT.RAW_TRACEPOINT, 0, "raw_tp", "sys_enter", False, False),
    ("raw_tp/sys_exit", PT.RAW_TRACEPOINT, 0, "raw_tp", "sys_exit", False, False),
    ("raw_tracepoint.w/bpf_test_finish", PT.RAW_TRACEPOINT_WRITABLE, 0, "raw_tp", "bpf_test_finish", False, False),
    ("raw_tp.w/x", PT.RAW_TRACEPOINT_WRITABLE, 0, "raw_tp", "x", False, False),
    ("tp_btf/sched_switch", PT.TRACING, AT.TRACE_RAW_TP, "tp_btf", "sched_switch", False, True),
    ("fentry/do_unlinkat", PT.TRACING, AT.TRACE_FENTRY, "fentry", "do_unlinkat", False, True),
    ("fexit/do_unlinkat", PT.TRACING, AT.TRACE_FEXIT, "fexit", "do_unlinkat", False, True),
    ("fmod_ret/security_x", PT.TRACING, AT.MODIFY_RETURN, "fmod_ret", "security_x", False, True),
    ("fentry.s/f", PT.TRACING, AT.TRACE_FENTRY, "fentry", "f", True, True),
    ("fexit.s/f", PT.TRACING, AT.TRACE_FEXIT, "fexit", "f", True, True),
    ("fmod_ret.s/f", PT.TRACING, AT.MODIFY_RETURN, "fmod_ret", "f", True, True),
    ("kprobe/do_sys_openat2", PT.KPROBE, 0, "kprobe", "do_sys_openat2", False, False),
    ("kretprobe/do_sys_openat2", PT.KPROBE, 0, "kretprobe", "do_sys_openat2", False, False),
    ("ksyscall/execve", PT.KPROBE, 0, "ksyscall", "execve", False, False),
    ("kretsyscall/execve", PT.KPROBE, 0, "kretsyscall", "execve", False, False),
    ("kprobe.multi/tcp_*", PT.KPROBE, AT.TRACE_KPROBE_MULTI, "kprobe.multi", "tcp_*", False, False),
    ("kretprobe.multi/tcp_*", PT.KPROBE, AT.TRACE_KPROBE_MULTI, "kretprobe.multi", "tcp_*", False, False),
    ("uprobe/bin/bash:readline", PT.KPROBE, 0, "uprobe", "bin/bash:readline", False, False),
    ("uretprobe//bin/bash:readline", PT.KPROBE, 0, "uretprobe", "/bin/bash:readline", False, False),
    ("uprobe.s/libc.so.6:malloc", PT.KPROBE, 0, "uprobe", "libc.so.6:malloc", True, False),
    ("uretprobe.s/x:y", PT.KPROBE, 0, "uretprobe", "x:y", True, False),
    ("uprobe.multi/libc.so.6:*alloc", PT.KPROBE, AT.TRACE_UPROBE_MULTI, "uprobe.multi", "libc.so.6:*alloc", False, False),
    ("uretprobe.multi/x:y", PT.KPROBE, AT.TRACE_UPROBE_MULTI, "uretprobe.multi", "x:y", False, False),
    ("perf_event", PT.PERF_EVENT, 0, "perf_event", "", False, False),
    ("syscall", PT.SYSCALL, 0, "syscall", "", True, False),
    ("iter/task", PT.TRACING, AT.TRACE_ITER, "iter", "task", False, True),
    ("iter.s/task", PT.TRACING, AT.TRACE_ITER, "iter", "task", True, True),
    ("lsm/file_open", PT.LSM, AT.LSM_MAC, "lsm", "file_open", False, True),
    ("lsm.s/file_open", PT.LSM, AT.LSM_MAC, "lsm", "file_open", True, True),
    ("socket", PT.SOCKET_FILTER, 0, "socket", "", False, False),
    ("xdp", PT.XDP, AT.XDP, "xdp", "", False, False),
    ("tc", PT.SCHED_CLS, 0, "tc", "", False, False),
    ("classifier", PT.SCHED_CLS, 0, "tc", "", False, False),
    ("tc/ingress", PT.SCHED_CLS, AT.TCX_INGRESS, "tc", "", False, False),
    ("cgroup_skb/ingress", PT.CGROUP_SKB, AT.CGROUP_INET_INGRESS, "cgroup", "", False, False),
    ("cgroup_skb/egress", PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, "cgroup", "", False, False),
    ("lwt_in", PT.LWT_IN, 0, "", "", False, False),
]


@pytest.mark.parametrize("sec,pt,at,kind,target,sleep,btf", CASES)
def test_table(sec, pt, at, kind, target, sleep, btf):
    d = parse_section(sec)
    assert (d.prog_type, d.expected_attach_type, d.attach_kind, d.attach_target, d.sleepable, d.needs_attach_btf) == (
        pt, at, kind, target, sleep, btf)
    assert d.autoload and d.section == sec


def test_bare_prefix_has_no_target_and_cannot_auto_attach():
    d = parse_section("kprobe")
    assert (d.attach_kind, d.attach_target, d.auto_attach) == ("kprobe", "", False)
    assert parse_section("kprobe/do_exit").auto_attach
    assert not parse_section("syscall").auto_attach


def test_question_mark_disables_autoload():
    d = parse_section("?tp/syscalls/sys_enter_openat")
    assert (d.autoload, d.section, d.attach_target) == (False, "tp/syscalls/sys_enter_openat", "syscalls/sys_enter_openat")


def test_plus_rows_need_a_slash():
    # "kprobe+" matches "kprobe" and "kprobe/...", never "kprobefoo"; "xdp" is exact.
    for bad in ("kprobefoo", "tracepointx/a", "xdp/foo", "syscall/x", "sockets"):
        with pytest.raises(SectionError):
            parse_section(bad)


def test_unknown_section_message():
    with pytest.raises(SectionError) as ei:
        parse_section("my_hook/thing")
    msg = str(ei.value)
    assert "'my_hook/thing'" in msg and "tracepoint/<category>/<name>" in msg and "SUPPORTED_PREFIXES" in msg
    assert "tp_btf[/<target>]" in SUPPORTED_PREFIXES

"""The hooks the summary and block tools choose on this kernel, loaded and attached for real.

Runs on the host (6.18: tracepoints only) and in the qemu guests (6.1, 6.12, 7.2: kprobes
and fentry too; tests/vm/test_in_guest_attach.py's GUEST_SUITE), where the fallback
chains take other branches: biosnoop's I/O start before block_io_start (6.5), cachestat
on BCC's kernel functions.  The tools' own tests (test_tool_*.py) check their output
with workloads on this host.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest

from tests.support import KNOWN_FEATURES, SERIES, require_live

pytestmark = pytest.mark.live

_VERSION = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
_HAS_FUNCTIONS = SERIES in KNOWN_FEATURES["kprobes"] or SERIES in KNOWN_FEATURES["fentry"]


def test_syscount_counts_exactly_in_the_kernel() -> None:
    require_live()
    from tracekit.probes.syscount import SysCount, syscall_number

    nr = syscall_number("getppid")
    assert nr is not None
    with SysCount(filter_pid=os.getpid(), filter_syscall=nr, measure_latency=True) as probe:
        for _ in range(300):
            os.getppid()
        rows = probe.pop()   # type: ignore[attr-defined]
    assert [(r.key, r.count) for r in rows] == [(nr, 300)]
    assert rows[0].total_ns > 0


def test_runqlat_counts_our_sleeps() -> None:
    require_live()
    from tracekit.probes.runqlat import RunQLat

    def switches() -> int:  # this thread's context switches, voluntary and not
        status = Path("/proc/thread-self/status").read_text().splitlines()
        return sum(int(ln.split()[1]) for ln in status
                   if ln.split(":")[0] in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))

    # Switches over the probe's whole life count: attaching and reading take their own
    # (many under qemu's emulation), and each can be one more run-queue latency sample.
    before = switches()
    with RunQLat(targ_tgid=os.getpid(), targ_per_thread=True) as probe:
        for _ in range(50):
            time.sleep(0.002)
        hists = probe.histograms()   # type: ignore[attr-defined]
        during = switches() - before
    assert probe.chosen["switch"][1].endswith("/sched_switch")
    by_tid = hists.by_label()
    # each sleep ends with one wakeup -> run (at least 50 - a few at the edges); preemptions
    # on a loaded machine add more, and each of those is one of our own context switches
    total = by_tid[__import__("threading").get_native_id()].total
    assert 45 <= total <= during + 8, (by_tid, during)


def test_biolatency_and_biosnoop_attach() -> None:
    require_live()
    from tracekit.probes.biolatency import BioLatency
    from tracekit.probes.biosnoop import BioSnoop

    with BioLatency(targ_queued=True, targ_per_disk=True) as lat:
        assert set(lat.chosen) == {"insert", "issue", "complete"}
        assert all(p.loaded for p in lat.obj.programs.values() if p.autoload)   # type: ignore[union-attr]
    with BioSnoop() as snoop:
        how = snoop.chosen["start"][1]
    if _VERSION >= (6, 5):
        assert how.endswith("/block_io_start"), how   # the tracepoint (6.5+)
    else:
        # the function the tracepoint replaced (fentry where it works, else a kprobe), or
        # block_getrq where that function is inline (6.1)
        assert how.split("/", 1)[1] in ("__blk_account_io_start", "blk_account_io_start", "block_getrq"), how


def test_cachestat_counts_with_functions_or_tracepoints(tmp_path) -> None:
    require_live()
    from tracekit.probes.cachestat import CacheStat

    path = tmp_path / "f"
    path.write_bytes(b"x" * (1 << 20))
    with CacheStat() as probe:
        for _ in range(3):
            with open(path, "rb") as f:
                f.read()
        counts = probe.read()   # type: ignore[attr-defined]
        mode = probe.mode   # type: ignore[attr-defined]
    if _HAS_FUNCTIONS:
        assert mode == "functions", probe.chosen
        assert set(probe.chosen) == {"apcl", "mpa", "mbd", "apd"}
    else:
        assert mode == "tracepoints", probe.chosen
    # three reads of a 256-page file that stays cached: accesses, whichever way counted
    assert counts.mpa >= 3, counts

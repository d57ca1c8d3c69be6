"""tracekit-runqlat counts each time a known sleeper waited on the run queue."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support import ROOT, require_live

pytestmark = pytest.mark.live

N = 200
SLACK = 6

# Waits for "go" (its wakeup happens while traced), then sleeps N times; reports how many
# times it was switched out meanwhile (voluntary: each sleep; nonvoluntary: preempted),
# each of which ends with one run-queue wait, then waits for "exit".
CHILD = f"""
import sys, time
def switches():
    with open("/proc/self/status") as f:
        return sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
sys.stdin.readline()
a = switches()
for _ in range({N}):
    time.sleep(0.002)
b = switches()
print(b - a, flush=True)
sys.stdin.readline()
"""


def _tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.runqlat", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _counts(out: str) -> dict[str, dict[tuple[int, int], int]]:
    hists: dict[str, dict[tuple[int, int], int]] = {}
    name = ""
    for line in out.splitlines():
        m = re.match(r"^(pid|tid|pidns) = (.*)$", line)
        if m:
            name = line
            continue
        m = re.match(r"^\s+(\d+) -> (\d+)\s+: (\d+)\s+\|[* ]*\|$", line)
        if m:
            hists.setdefault(name, {})[(int(m[1]), int(m[2]))] = int(m[3])
    return hists


def _run(*opts: str, pid_opt: bool = True) -> tuple[str, int, int]:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc = _tool(*(("-p", str(child.pid)) if pid_opt else ()), *opts)
        try:
            banner = (proc.stderr if "--json" in opts else proc.stdout).readline()
            assert banner == "Tracing run queue latency... Hit Ctrl-C to end.\n", banner + proc.stderr.read()
            child.stdin.write("go\n")
            child.stdin.flush()
            waits = int(child.stdout.readline())
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        child.communicate("exit\n", timeout=30)
    return out, waits, child.pid


def test_sleeper_waits_are_counted() -> None:
    require_live()
    out, waits, _ = _run()
    assert waits >= N
    (counts,) = _counts(out).values()
    total = sum(counts.values())
    # one wait per switch it counted itself (sleeps and preemptions) + the wakeup that
    # delivered "go", within a few: its counter's window and ours differ at each end, and
    # a wakeup racing with a task still on its CPU is measured at its next switch-in, or
    # never (as in BCC and libbpf-tools)
    assert waits - SLACK <= total <= waits + SLACK, (total, waits, out)
    assert "     usecs               : count     distribution" in out
    assert next(iter(counts)) == (0, 1)


def test_per_process_section_and_json() -> None:
    require_live()
    out, waits, pid = _run("-P", "--json")
    (report,) = [json.loads(line) for line in out.splitlines()]
    (h,) = report["histograms"]
    assert h["pid"] == pid and h["val_type"] == "usecs"
    assert waits - SLACK <= h["count"] <= waits + SLACK
    assert sum(b["count"] for b in h["buckets"]) == h["count"]


def test_per_thread_milliseconds_text() -> None:
    require_live()
    out, waits, pid = _run("-L", "-m")
    hists = _counts(out)
    assert list(hists) == [f"tid = {pid}"], out
    assert waits - SLACK <= sum(hists[f"tid = {pid}"].values()) <= waits + SLACK
    assert "     msecs               : count     distribution" in out

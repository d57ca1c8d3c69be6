"""tracekit-offcputime sees a known sleeper: a child named tk-sleeper that sleeps in
clock_nanosleep, its blocked stack (do_nanosleep) and about the traced time off-CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, require_live

pytestmark = pytest.mark.live

SLEEPER = """
import ctypes, time
ctypes.CDLL(None).prctl(15, b"tk-sleeper", 0, 0, 0)   # PR_SET_NAME
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def sleeper():
    p = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    yield p
    p.kill()
    p.wait()


def run_tool(*args: str) -> str:
    """Run tracekit-offcputime to its end; its output."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "tracekit_tools.offcputime", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def test_kernel_stack_and_time_of_the_sleeper(sleeper) -> None:
    require_live()
    t0 = time.monotonic()
    out = run_tool("-K", "-p", str(sleeper.pid), "2")
    assert time.monotonic() - t0 < 30
    head, _, body = out.partition("\n")
    assert head == f"Tracing off-CPU time (us) of PIDs {sleeper.pid} by kernel stack for 2 secs."
    blocks = [b.strip("\n") for b in body.split("\n\n") if b.strip()]
    assert blocks, out
    # the dominant (last: ascending) stack is the nanosleep path, named bare, scheduler first
    hot = blocks[-1].splitlines()
    frames = [line.strip() for line in hot[:-2]]
    assert frames[0] in ("__schedule", "schedule"), hot
    assert "do_nanosleep" in frames and any("nanosleep" in f and "sys" in f for f in frames), hot
    assert not any(f.startswith("bpf_prog_") for f in frames)
    assert hot[-2] == f"    {'-':<16} tk-sleeper ({sleeper.pid})"
    usecs = int(hot[-1])
    # 2 s traced: the sleeper is off-CPU nearly all of it (the interval running when tracing
    # starts and the one running when it ends are not complete, each < 50 ms)
    assert 1_700_000 <= usecs <= 2_100_000, usecs


def test_folded_and_json(sleeper) -> None:
    require_live()
    out = run_tool("-f", "-p", str(sleeper.pid), "1")
    lines = out.splitlines()
    assert lines, out
    stack, total = lines[-1].rsplit(" ", 1)
    frames = stack.split(";")
    assert frames[0] == "tk-sleeper"
    assert "do_nanosleep" in frames and frames[-1] in ("__schedule", "schedule"), stack
    assert 800_000 <= int(total) <= 1_050_000
    out = run_tool("--json", "-K", "-m", "10000", "-p", str(sleeper.pid), "1")
    (report,) = [json.loads(line) for line in out.splitlines()]
    stacks = report["stacks"]
    assert stacks and {s["comm"] for s in stacks} == {"tk-sleeper"}
    assert all(s["pid"] == sleeper.pid and s["user"] is None for s in stacks)
    assert any("do_nanosleep" in s["kernel"] for s in stacks)


def test_min_block_time_filters_everything_out(sleeper) -> None:
    require_live()
    # every sleep lasts ~50 ms: a 1 s minimum leaves nothing
    out = run_tool("-f", "-m", "1000000", "-p", str(sleeper.pid), "1")
    assert out == ""


@pytest.mark.parametrize("program", ["sched_switch_btf", "sched_switch_raw"])
def test_each_hook_of_the_chain_measures_the_sleep(sleeper, program: str) -> None:
    """tp_btf is chosen where it loads; the raw_tp fallback gives the same totals."""
    require_live()
    from tracekit.probes.offcputime import OffCPUTime

    class Only(OffCPUTime):
        fallbacks = {"sched_switch": (program,)}  # noqa: RUF012 - a test's one-off declaration

    with Only(pids=[sleeper.pid], user_stacks=False) as probe:
        assert probe.chosen["sched_switch"][0] == program
        time.sleep(1)
        totals = probe.totals()
        kernel = [f.bare for f in probe.stacks.kernel(totals[-1].kernel_stack_id)]
    assert totals[-1].comm == "tk-sleeper" and totals[-1].tid == sleeper.pid
    assert 700_000 <= sum(t.usecs for t in totals) <= 1_050_000
    assert "do_nanosleep" in kernel

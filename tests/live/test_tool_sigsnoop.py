"""tracekit-sigsnoop and tracekit-killsnoop see a child's kill()s with the right pid,
signal and result: `sleep 60 & kill -0 $!; kill -TERM $!; kill -0 <unused pid>`."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from tests.live.toolrun import Tool
from tests.support import require_live
from tracekit.probes.sigsnoop import SRC_GENERATE, SRC_KILL, SigSnoop

pytestmark = pytest.mark.live
#: the comm of this interpreter (and of children started with sys.executable): "python3"
#: or "python" in a venv
PY_COMM = Path("/proc/self/comm").read_text().strip()

# The killer is a child, so its rows are told apart from anything else on the machine
KILLER = """
import os, signal, subprocess, sys, time
sleeper = subprocess.Popen(["sleep", "60"])
# Popen may return before the exec'd image renamed the task: wait for its new comm
while open(f"/proc/{sleeper.pid}/comm").read().strip() != "sleep":
    time.sleep(0.001)
print(os.getpid(), sleeper.pid, flush=True)
os.kill(sleeper.pid, 0)
os.kill(sleeper.pid, signal.SIGTERM)
sleeper.wait()
try:
    os.kill(int(sys.argv[1]), 0)
except ProcessLookupError:
    pass
"""


def _unused_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    return next(p for p in range(top - 1, 1, -1) if not os.path.exists(f"/proc/{p}"))


def _kill_workload() -> tuple[int, int, int]:
    unused = _unused_pid()
    out = subprocess.run([sys.executable, "-c", KILLER, str(unused)], capture_output=True, text=True, check=True)
    killer, sleeper = map(int, out.stdout.split())
    return killer, sleeper, unused


@pytest.mark.parametrize("tool,opts", [("killsnoop", ()), ("sigsnoop", ("-k",))])
def test_kill_rows(tool: str, opts: tuple[str, ...]) -> None:
    require_live()
    t = Tool(tool, *opts)
    try:
        head = t.header().split()
        if tool == "killsnoop":
            assert head == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"]
        else:
            assert head == ["TIME", "PID", "COMM", "SIG", "TPID", "TCOMM", "RESULT"]
        killer, sleeper, unused = _kill_workload()
        t.wait_for(lambda ls: sum(r.split()[1:2] == [str(killer)] for r in ls[1:]) >= 3)
        rows = [r.split() for r in t.stop()[1:] if r.split()[1:2] == [str(killer)]]
    finally:
        t.kill()
    if tool == "killsnoop":
        # TIME PID COMM SIG TPID RESULT
        assert [r[2:] for r in rows] == [[PY_COMM, "0", str(sleeper), "0"], [PY_COMM, "15", str(sleeper), "0"],
                                         [PY_COMM, "0", str(unused), str(-errno.ESRCH)]]
    else:
        # TIME PID COMM SIG TPID TCOMM RESULT: TCOMM only where a signal was generated
        assert [r[2:] for r in rows] == [[PY_COMM, "0", str(sleeper), "N/A", "0"],
                                         [PY_COMM, "15", str(sleeper), "sleep", "0"],
                                         [PY_COMM, "0", str(unused), "N/A", str(-errno.ESRCH)]]


def test_killsnoop_failed_only_json() -> None:
    require_live()
    t = Tool("killsnoop", "-x", "--json")
    try:
        killer, _sleeper, unused = _wait_attached_then_work(t)
        t.wait_for(lambda ls: any(json.loads(ln)["pid"] == killer for ln in ls))
        rows = [json.loads(ln) for ln in t.stop() if json.loads(ln)["pid"] == killer]
    finally:
        t.kill()
    assert len(rows) == 1
    r = rows[0]
    assert (r["sig"], r["tpid"], r["ret"], r["comm"], r["syscall"]) == (0, unused, -errno.ESRCH, PY_COMM, "kill")


def _wait_attached_then_work(t: Tool) -> tuple[int, int, int]:
    """With --json a tool prints nothing until an event: poke it with kill(unused, 0) from
    this process until a row appears, then run the workload."""
    import time

    probe_pid = _unused_pid()
    deadline = time.monotonic() + 30
    seen = False
    while not seen and time.monotonic() < deadline:
        try:
            os.kill(probe_pid, 0)
        except ProcessLookupError:
            pass
        try:
            t.wait_for(lambda ls: any(json.loads(ln)["tpid"] == probe_pid for ln in ls), timeout=0.2)
            seen = True
        except AssertionError:
            pass
    assert seen, t.stderr
    return _kill_workload()


def test_sigsnoop_default_sees_sigterm_and_sigchld() -> None:
    require_live()
    t = Tool("sigsnoop", "-n")
    try:
        t.header()
        killer, sleeper, _unused = _kill_workload()
        t.wait_for(lambda ls: any(r.split()[1:2] == [str(sleeper)] for r in ls[1:]))
        rows = [r.split() for r in t.stop()[1:]]
    finally:
        t.kill()
    # signal 0 never reaches signal_generate: only SIGTERM from the killer, and the
    # SIGCHLD that the sleeper's exit sends to it
    from_killer = [r[2:] for r in rows if r[1] == str(killer) and r[4] == str(sleeper)]
    assert from_killer == [[PY_COMM, "SIGTERM", str(sleeper), "sleep", "0"]]
    from_sleeper = [r[2:] for r in rows if r[1] == str(sleeper)]
    assert from_sleeper == [["sleep", "SIGCHLD", str(killer), PY_COMM, "0"]]


@pytest.mark.anyio
async def test_sigsnoop_probe_fields() -> None:
    require_live()
    got = []
    first, second = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    for p in (first, second):
        while Path(f"/proc/{p.pid}/comm").read_text().strip() != "sleep":
            await anyio.sleep(0.001)
    try:
        async with SigSnoop(filtered_pid=os.getpid(), kill_mode=True) as probe:
            os.kill(first.pid, signal.SIGUSR1)
            with anyio.fail_after(10):
                async for ev in probe:
                    got.append(ev)
                    break
        async with SigSnoop(target_pid=second.pid, sig_mask=1 << signal.SIGTERM) as probe:
            os.kill(second.pid, signal.SIGCONT)    # not in sig_mask: filtered in the kernel
            os.kill(second.pid, signal.SIGTERM)
            with anyio.fail_after(10):
                async for ev in probe:
                    got.append(ev)
                    break
    finally:
        for p in (first, second):
            p.kill()
            p.wait()
    k, g = got
    assert (k.pid, k.tid, k.tpid, k.sig, k.ret, k.source, k.result) == (
        os.getpid(), threading.get_native_id(), first.pid, signal.SIGUSR1, 0, SRC_KILL, -1)
    assert k.has_tcomm and k.tcomm == "sleep" and k.comm == Path("/proc/self/comm").read_text().strip()
    assert (g.pid, g.tpid, g.sig, g.source, g.tcomm, g.ret) == (os.getpid(), second.pid, signal.SIGTERM,
                                                                SRC_GENERATE, "sleep", 0)

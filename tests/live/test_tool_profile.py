"""tracekit-profile finds the busy loop of a helper binary by name: folded (-f) and BCC's
default block output, with a sample count matching the CPU time the helper used."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.support import ROOT, require_live
from tests.unit.test_symbols import SPIN_FUNC, spawn, spin_target

pytestmark = pytest.mark.live

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def run_tool(*args: str, pid: int, banner: bool = True) -> tuple[str, float]:
    """Run tracekit-profile to its end; the output and the CPU seconds ``pid`` used meanwhile."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "tracekit_tools.profile", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = ""
    if banner:
        first = proc.stdout.readline()
        assert first.startswith("Sampling at 49 Hertz of PID ["), (first, proc.stderr.read() if proc.stderr else "")
    before = cpu_seconds(pid)
    out, err = proc.communicate(timeout=60)
    used = cpu_seconds(pid) - before
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return first + out, used


@pytest.fixture
def spinner():
    p, _, _ = spawn(spin_target(), "spin")
    yield p
    p.kill()
    p.wait()


def test_folded_user_stack_names_the_busy_function(spinner) -> None:
    require_live()
    out, used = run_tool("-f", "-U", "-p", str(spinner.pid), "2", pid=spinner.pid, banner=False)
    lines = out.splitlines()
    assert len(lines) == 1, out  # identical stacks merged into one line
    stack, count = lines[0].rsplit(" ", 1)
    frames = stack.split(";")
    comm = os.path.basename(spin_target())[:15]
    assert frames[0] == comm
    assert frames[-2:] == ["main", SPIN_FUNC], out
    # 49 samples per CPU-second the spinner got (it shares 2 CPUs with the test and the tool)
    expected = 49 * used
    # lower bound loose: on a loaded 2-core machine cpu-clock samples of a runnable but
    # preempted spinner are not taken, while its CPU time is counted
    assert 0.35 * expected <= int(count) <= 1.25 * expected + 3, (count, used)


def test_default_output_is_bccs_block(spinner) -> None:
    require_live()
    out, _ = run_tool("-p", str(spinner.pid), "1.5", pid=spinner.pid)
    assert out.startswith(f"Sampling at 49 Hertz of PID [{spinner.pid}] by user + kernel stack for 1.5 secs.\n")
    blocks = [b for b in out.split("\n\n")[1:] if b.strip()]
    assert blocks, out
    comm = os.path.basename(spin_target())[:15]
    total = 0
    for b in blocks:
        lines = b.splitlines()
        assert lines[-2] == f"    {'-':<16} {comm} ({spinner.pid})", b
        assert lines[-1].startswith("        ") and lines[-1].strip().isdigit()
        total += int(lines[-1])
    # the hottest stack (printed last) is in the busy loop, leaf first, with offsets and module
    hottest = blocks[-1].splitlines()
    user_leaf = next(line for line in hottest if SPIN_FUNC in line)
    assert user_leaf.startswith(f"    {SPIN_FUNC}+0x") and user_leaf.endswith(f"[{os.path.basename(spin_target())}]")
    assert any(line.startswith("    main+0x") for line in hottest)
    assert total > 10


def test_json_and_kernel_only(spinner) -> None:
    require_live()
    out, _ = run_tool("--json", "-p", str(spinner.pid), "1", pid=spinner.pid, banner=False)
    reports = [json.loads(line) for line in out.splitlines()]
    assert len(reports) == 1
    stacks = reports[0]["stacks"]
    assert stacks and all(s["pid"] == spinner.pid for s in stacks)
    assert any(any(f.startswith(SPIN_FUNC + "+0x") for f in s["user"]) for s in stacks)


def test_ctrl_c_prints_the_report(spinner) -> None:
    require_live()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "tracekit_tools.profile", "-f", "-p", str(spinner.pid)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    import time

    time.sleep(3)  # start-up (no banner with -f) and a second of samples
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert SPIN_FUNC in out, out


def test_kernel_stacks_of_a_reading_thread() -> None:
    require_live()
    p, _, _ = spawn(spin_target(), "read")  # a second thread reads /dev/zero in a loop
    try:
        out, _ = run_tool("-K", "-f", "-p", str(p.pid), "2", pid=p.pid, banner=False)
    finally:
        p.kill()
        p.wait()
    kernel = [line for line in out.splitlines() if ";" in line]
    assert any("vfs_read" in line.split(" ")[0].split(";") for line in kernel), out
    # root first: the syscall entry comes before the read path
    line = next(line for line in kernel if "vfs_read" in line)
    frames = line.rsplit(" ", 1)[0].split(";")
    assert frames.index("vfs_read") > 1 and not any(f.endswith("_[k]") for f in frames)

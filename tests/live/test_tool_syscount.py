"""tracekit-syscount counts exactly the syscalls a known child makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.support import ROOT, require_live

pytestmark = pytest.mark.live

# waits for a line on stdin (so the tool is attached first), then makes exactly 1000
# getppid() and 500 failing close() calls, and leaves without interpreter shutdown
CHILD = (
    "import os, sys\n"
    "sys.stdin.readline()\n"
    "for _ in range(1000): os.getppid()\n"
    "for _ in range(500):\n"
    "    try: os.close(999)\n"
    "    except OSError: pass\n"
    "os._exit(0)\n"
)


def _tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.syscount", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _counts(out: str) -> dict[str, int]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            rows[parts[0]] = int(parts[1])
    return rows


def _run_with_child(*opts: str) -> tuple[str, str, int]:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    proc = _tool("-p", str(child.pid), *opts)
    try:
        # printed once the programs are attached (on stderr with --json)
        banner = (proc.stderr if "--json" in opts else proc.stdout).readline()
        assert banner.startswith("Tracing "), banner + proc.stderr.read()
        child.communicate("go\n", timeout=30)
        assert child.returncode == 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    return banner + out, err, proc.returncode


def test_counts_exactly_the_childs_calls() -> None:
    require_live()
    out, err, rc = _run_with_child()
    assert rc == 0, err
    rows = _counts(out)
    assert rows["getppid"] == 1000, out
    assert rows["close"] == 500, out
    lines = out.splitlines()
    assert lines[0] == "Tracing syscalls, printing top 10... Ctrl+C to quit."
    assert lines[1].startswith("[") and lines[1].endswith("]")
    assert lines[2] == f"{'SYSCALL':<22} {'COUNT':>8}"
    assert lines[3] == f"{'getppid':<22} {1000:8d}"   # sorted by count, descending
    assert lines[-1] == "Detaching..."
    assert "Traceback" not in err


@pytest.mark.parametrize("opt", [["-x"], ["-e", "EBADF"], ["-e", "9"]])
def test_failures_only(opt: list[str]) -> None:
    require_live()
    out, err, rc = _run_with_child(*opt)
    assert rc == 0, err
    assert _counts(out) == {"close": 500}, out


def test_latency_and_process_columns_and_json() -> None:
    require_live()
    out, err, rc = _run_with_child("-L", "-P", "--json")
    assert rc == 0, err
    reports = [json.loads(line) for line in out.splitlines()[1:]]
    assert len(reports) == 1, out
    rows = reports[0]["rows"]
    # the read() that got "go" entered before the probe attached: no latency, not counted
    assert len(rows) == 1 and rows[0]["count"] == 1500, rows
    with open(f"/proc/{os.getpid()}/comm") as f:
        assert rows[0]["comm"] == f.read().strip()  # the same interpreter as ours
    assert rows[0]["total_ns"] > 0


def test_exec_runs_the_command_and_stops_with_it() -> None:
    require_live()
    script = "import os\nfor _ in range(700): os.getppid()\n"
    proc = _tool("--syscall", "getppid", "--exec", f"{sys.executable} -c '{script}'")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines()[0] == "Tracing syscall 'getppid'... Ctrl+C to quit."
    assert _counts(out) == {"getppid": 700}, out
    assert out.splitlines()[-1] == "Detaching..."


def test_interval_reports_clear_the_counts() -> None:
    require_live()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
    proc = _tool("-p", str(child.pid), "-i", "0.5", "--syscall", "getppid")
    try:
        proc.stdout.readline()
        child.communicate("go\n", timeout=30)
        reports: list[dict[str, int]] = []
        block: list[str] = []
        # several 0.5 s reports: the 1000 calls appear in exactly one of them, once
        while len(reports) < 4:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if line.strip() == "":
                reports.append(_counts("\n".join(block)))
                block = []
            else:
                block.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert sum(r.get("getppid", 0) for r in reports) == 1000, reports
    assert sorted(r.get("getppid", 0) for r in reports)[-1] == 1000


def test_closed_pipe_and_list() -> None:
    out = subprocess.run([sys.executable, "-m", "tracekit_tools.syscount", "-l"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0 and "getppid" in out.stdout.split()
    require_live()
    sh = subprocess.run(f"{sys.executable} -m tracekit_tools.syscount -i 0.2 | head -1", shell=True,
                        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert sh.stdout.startswith("Tracing syscalls"), sh
    assert "Traceback" not in sh.stderr and "BrokenPipe" not in sh.stderr, sh.stderr

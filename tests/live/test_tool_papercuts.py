"""What a user trying the tools hit first (issue 11 item 10), each checked for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import tracekit
from tests.support import ROOT, require_live

pytestmark = pytest.mark.live


def _tool(name: str, *args: str, **kw) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", f"tracekit_tools.{name}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _wait_for_handlers(pid: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = open(f"/proc/{pid}/status").read()
        caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise AssertionError(f"pid {pid} never installed its SIGTERM handler")


def test_opensnoop_does_not_report_its_own_tracefs_reads() -> None:
    require_live()
    proc = _tool("opensnoop", "-d", "1.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    own = [line for line in out.splitlines()[1:] if line.split()[:1] == [str(proc.pid)]]
    assert not [line for line in own if "/sys/kernel/tracing" in line or "/sys/kernel/debug" in line], own


def test_a_tool_started_with_sigint_ignored_still_stops_on_sigint() -> None:
    require_live()
    # A shell script's `tool &` starts it with SIGINT ignored.
    proc = _tool("execsnoop", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout is not None
    header = proc.stdout.readline()
    assert header.split()[:2] == ["PCOMM", "PID"], header
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0])
def test_ctrl_c_during_start_up_prints_no_traceback(delay: float) -> None:
    require_live()
    proc = _tool("opensnoop")
    # From the moment tracekit_tools has installed its handlers -- SIGTERM caught is the sign,
    # Python itself catches only SIGINT -- through imports, loading and attaching.  (Not the
    # interpreter's own first ~30 ms, before any line of tracekit runs: no Python program
    # can handle a signal there.)
    _wait_for_handlers(proc.pid)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_sigterm_detaches_cleanly() -> None:
    require_live()
    proc = _tool("opensnoop")
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize("tool,opt", [("execsnoop", "-n"), ("execsnoop", "-l"), ("opensnoop", "-n")])
def test_a_bad_regex_is_an_option_error(tool: str, opt: str) -> None:
    proc = _tool(tool, opt, "(unclosed")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "invalid regular expression '(unclosed'" in err and "Traceback" not in err


def test_a_missing_object_path_is_no_such_file(tmp_path) -> None:
    with pytest.raises(tracekit.errors.ObjectNotFoundError, match="no such file: 'nope.bpf.o'"):
        tracekit.attach("nope.bpf.o")
    with pytest.raises(FileNotFoundError, match="no such file"):
        tracekit.open(str(tmp_path / "x.bpf.o"))
    with pytest.raises(tracekit.errors.ProbeNotFoundError, match="no bundled probe named 'nope'.*execsnoop"):
        tracekit.open("nope")


def test_a_knob_of_the_wrong_type_names_the_knob() -> None:
    with pytest.raises(tracekit.KnobError, match=r"OpenSnoop\.targ_pid must be int, not str"):
        tracekit.probes.OpenSnoop(targ_pid="12")  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # KnobError is a TypeError too
        tracekit.probes.OpenSnoop(targ_pid="12")  # type: ignore[arg-type]

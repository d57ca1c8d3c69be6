"""The bundled tools inside the qemu guests (run there by tests/vm/test_in_guest_attach.py).

On the host they skip: tests/live/test_snoops.py covers the tools on this kernel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.vm
#: collected only inside the guests (tests/conftest.py deselects it on the host)
GUEST_ONLY = True


def _tool_env() -> dict[str, str]:
    # tracekit_tools is tools/ of this checkout (setup maps it); make the import resolve
    # here whatever editable install the host's interpreter points at.
    shim = CHECKOUT / "build" / "vm-tools-path"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "tracekit_tools"
    if not link.is_symlink():
        link.symlink_to(CHECKOUT / "tools")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(CHECKOUT), env.get("PYTHONPATH", "")])
    return env


def test_execsnoop_sees_an_exec_within_its_duration() -> None:
    marker = f"tk-{uuid.uuid4().hex[:10]}"
    tool = shutil.which("tracekit-execsnoop")
    cmd = [tool] if tool and "shims" not in tool else [sys.executable, "-m", "tracekit_tools.execsnoop"]
    t0 = time.monotonic()
    proc = subprocess.Popen([*cmd, "-d", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_tool_env(), cwd=CHECKOUT)
    assert proc.stdout is not None
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    # -d counts from the tool's start, loading included, which under TCG takes most of
    # the 5 s: exec from a shell loop (cheap) for as long as the tool runs.
    loop = subprocess.Popen(["sh", "-c", f"while :; do /bin/echo {marker} >/dev/null; sleep 0.1; done"])
    try:
        proc.wait(240)
    finally:
        loop.kill()
        loop.wait()
    th.join(10)
    assert lines and lines[0].split()[:3] == ["PCOMM", "PID", "PPID"], lines
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, err
    hits = [ln for ln in lines if marker in ln]
    assert hits, f"no exec of /bin/echo {marker} in {lines!r} (stderr {err!r})"
    assert hits[0].split()[0] == "echo"
    assert time.monotonic() - t0 < 300


def test_opensnoop_sees_a_failed_open_within_its_duration() -> None:
    missing = f"/tk-missing-{uuid.uuid4().hex[:10]}"
    tool = shutil.which("tracekit-opensnoop")
    cmd = [tool] if tool and "shims" not in tool else [sys.executable, "-m", "tracekit_tools.opensnoop"]
    proc = subprocess.Popen([*cmd, "-d", "5", "-x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_tool_env(), cwd=CHECKOUT)
    assert proc.stdout is not None
    header = proc.stdout.readline()  # printed once the programs are attached
    assert header.split() == ["PID", "COMM", "FD", "ERR", "PATH"], header
    loop = subprocess.Popen(["sh", "-c", f"while :; do cat {missing} 2>/dev/null; sleep 0.1; done"])
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        loop.kill()
        loop.wait()
    assert proc.returncode == 0, err
    rows = [ln.split() for ln in out.splitlines() if ln.endswith(missing)]
    assert rows, f"no failed open of {missing} in {out!r} (stderr {err!r})"
    assert rows[0][1:] == ["cat", "-1", "2", missing]

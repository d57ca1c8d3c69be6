"""tracekit-bindsnoop: a child's binds on loopback with protocol, address, port, options
and result (a bind to a port in use fails with EADDRINUSE and shows only with -E)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from tests.live.toolrun import Tool, ensure_loopback, free_port
from tests.support import require_live
from tracekit.probes.bindsnoop import BindSnoop, opts_str

pytestmark = pytest.mark.live
#: the comm of this interpreter (and of children started with sys.executable): "python3"
#: or "python" in a venv
PY_COMM = Path("/proc/self/comm").read_text().strip()


@pytest.fixture(autouse=True)
def _loopback() -> None:
    require_live()
    ensure_loopback()

CHILD = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", port))
again = socket.socket()
try:
    again.bind(("127.0.0.1", port))
except OSError as e:
    assert e.errno == 98, e
six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
six.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
six.bind(("::1", 0))
print(six.getsockname()[1], flush=True)
"""


def _run_child(port: int) -> tuple[int, int]:
    child = subprocess.run([sys.executable, "-c", CHILD, str(port)], capture_output=True, text=True, check=True)
    return child.returncode, int(child.stdout.split()[0])


@pytest.mark.parametrize("errors", [False, True])
def test_bindsnoop_rows(errors: bool) -> None:
    require_live()
    port = free_port()
    tool = Tool("bindsnoop", "-w", *(["-E"] if errors else []))
    try:
        head = tool.header().split()
        assert head == [*(["RC"] if errors else []), "PID", "COMM", "PROT", "ADDR", "PORT", "OPTS", "IF"]
        t0 = time.monotonic()
        _, six_port = _run_child(port)
        want = 4 if errors else 3
        tool.wait_for(lambda ls: sum(" ::1 " in r or f" {port} " in r for r in ls[1:]) >= want)
        # (a failed bind would already be here: rows come in order)
        rows = [r.split() for r in tool.stop()[1:] if " ::1 " in r or f" {port} " in r]
    finally:
        tool.kill()
    assert time.monotonic() - t0 < 20
    if errors:
        rcs = [r.pop(0) for r in rows]
        assert rcs == ["0", "0", str(-errno.EADDRINUSE), "0"]
    pid = rows[0][0]
    assert int(pid) != os.getpid() and all(r[0] == pid and r[1] == PY_COMM for r in rows)
    # PID COMM PROT ADDR PORT OPTS IF
    expected = [["TCP", "127.0.0.1", str(port), "...R.", "0"], ["UDP", "127.0.0.1", str(port), ".....", "0"]]
    if errors:
        expected.append(["TCP", "127.0.0.1", str(port), ".....", "0"])
    expected.append(["UDP", "::1", str(six_port), "....r", "0"])
    assert [r[2:] for r in rows] == expected


def test_bindsnoop_count_json() -> None:
    require_live()
    port = free_port()
    tool = Tool("bindsnoop", "--count", "--json", "-P", str(port))
    try:
        deadline = time.monotonic() + 30
        while "Tracing binds" not in tool.stderr and time.monotonic() < deadline:
            time.sleep(0.02)
        _run_child(port)
        time.sleep(0.3)
        lines = tool.stop()
    finally:
        tool.kill()
    # one JSON object per report (a single one, at Ctrl-C)
    reports = [json.loads(ln) for ln in lines if ln.strip()]
    assert len(reports) == 1 and reports[0]["binds"] == [{"laddr": "127.0.0.1", "lport": port, "binds": 2}], reports


@pytest.mark.anyio
async def test_bindsnoop_probe_fields() -> None:
    require_live()
    got = []
    async with BindSnoop(targ_tgid=os.getpid(), ignore_errors=False) as probe:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))     # port 0: the kernel's pick is reported
        s.listen()
        port = s.getsockname()[1]
        t = socket.socket()
        with pytest.raises(OSError):
            t.bind(("127.0.0.1", port))
        with anyio.fail_after(10):
            async for ev in probe:
                got.append(ev)
                if len(got) == 2:
                    break
        s.close()
        t.close()
    ok, bad = got
    assert (ok.pid, ok.tid, ok.uid, ok.ret, ok.af, ok.proto) == (os.getpid(), os.getpid(), os.getuid(), 0,
                                                                   socket.AF_INET, socket.IPPROTO_TCP)
    assert ok.port == port and ok.addr[:4] == bytes([127, 0, 0, 1]) and opts_str(ok.opts) == "...R."
    assert bad.ret == -errno.EADDRINUSE and bad.port == port and opts_str(bad.opts) == "....."


CGROUP_CHILD = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
"""


def test_bindsnoop_cgroup_filter() -> None:
    require_live()
    import uuid
    from pathlib import Path

    from tracekit.context import cgroup as cg

    d = Path(cg.cgroup2_mount()) / f"tk-bind-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        tool = Tool("bindsnoop", "-c", str(d))
        try:
            tool.header()
            outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            outside.bind(("127.0.0.1", 0))    # this process: not in the cgroup
            out_port = outside.getsockname()[1]
            child = subprocess.run([sys.executable, "-c", CGROUP_CHILD], capture_output=True, text=True, check=True,
                                   preexec_fn=lambda: (d / "cgroup.procs").write_text(str(os.getpid())))
            in_port = int(child.stdout)
            tool.wait_for(lambda ls: any(f" {in_port} " in r for r in ls[1:]))
            rows = tool.stop()[1:]
            outside.close()
        finally:
            tool.kill()
    finally:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)   # the child's exit is still being accounted
    assert [r.split()[2:5] for r in rows if f" {in_port} " in r] == [["UDP", "127.0.0.1", str(in_port)]]
    assert not [r for r in rows if f" {out_port} " in r]
    assert all(r.split()[0] != str(os.getpid()) for r in rows)

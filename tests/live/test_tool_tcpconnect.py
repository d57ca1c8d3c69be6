"""tracekit-tcpconnect on loopback: the exact connects of a child, refused ones included,
and -c's counts; the probe's own fields on asyncio and trio."""

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

from tests.live.toolrun import Tool, ensure_loopback
from tests.support import require_live
from tracekit.probes.tcpconnect import TcpConnect

pytestmark = pytest.mark.live
#: the comm of this interpreter (and of children started with sys.executable): "python3"
#: or "python" in a venv
PY_COMM = Path("/proc/self/comm").read_text().strip()


@pytest.fixture(autouse=True)
def _loopback() -> None:
    require_live()
    ensure_loopback()

CLIENT = """
import socket, sys
port, refused, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    print(c.getsockname()[1], flush=True)
    c.close()
try:
    socket.create_connection(("127.0.0.1", refused))
except ConnectionRefusedError:
    pass
"""


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()   # bound and closed: nobody listens there (for the few ms the test needs)
    return port


def test_tcpconnect_rows_have_the_childs_pid_ports_and_addresses() -> None:
    require_live()
    srv = _listener()
    port, refused = srv.getsockname()[1], _closed_port()
    tool = Tool("tcpconnect", "-L", "-U", "-t")
    try:
        assert tool.header().split() == ["TIME(s)", "UID", "PID", "COMM", "IP", "SADDR", "LPORT", "DADDR", "DPORT"]
        child = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(refused), "1"], capture_output=True,
                               text=True, check=True)
        lport = int(child.stdout.split()[0])

        def both(ls: list[str]) -> bool:
            return len([ln for ln in ls[1:] if ln.split()[-1:] in ([str(port)], [str(refused)])]) >= 2

        tool.wait_for(both)
        rows = tool.stop()
    finally:
        tool.kill()
        srv.close()
    rows = [r.split() for r in rows[1:] if r.split()[-1] in (str(port), str(refused))]
    assert len(rows) == 2, rows
    pid = rows[0][2]
    ok, bad = rows
    # TIME(s) UID PID COMM IP SADDR LPORT DADDR DPORT
    assert ok[1:] == [str(os.getuid()), pid, PY_COMM, "4", "127.0.0.1", str(lport), "127.0.0.1", str(port)]
    assert bad[2:6] == [pid, PY_COMM, "4", "127.0.0.1"] and bad[7:] == ["127.0.0.1", str(refused)]
    assert int(bad[6]) > 0           # the port the refused SYN went from
    assert float(ok[0]) <= float(bad[0]) < 5.0    # seconds since the first event


def test_tcpconnect_count_mode_counts_three_connects() -> None:
    require_live()
    srv = _listener()
    port = srv.getsockname()[1]
    tool = Tool("tcpconnect", "-c", "--json", "-P", str(port))
    try:
        # nothing on stdout before the report: the banner on stderr says the probes are attached
        deadline = time.monotonic() + 30
        while "Tracing connect" not in tool.stderr and time.monotonic() < deadline:
            time.sleep(0.02)
        subprocess.run([sys.executable, "-c", CLIENT, str(port), str(_closed_port()), "3"], check=True,
                       capture_output=True)
        time.sleep(0.3)
        lines = tool.stop()
    finally:
        tool.kill()
        srv.close()
    # one JSON object per report (a single one, at Ctrl-C); -P keeps only the listener's
    # port: the refused connect is not counted
    reports = [json.loads(ln) for ln in lines if ln.strip()]
    assert len(reports) == 1, reports
    assert reports[0]["flows"] == [{"ip": 4, "saddr": "127.0.0.1", "daddr": "127.0.0.1", "dport": port,
                                    "connects": 3}]


@pytest.mark.anyio
async def test_tcpconnect_probe_fields() -> None:
    require_live()
    srv = _listener()
    port, refused = srv.getsockname()[1], _closed_port()
    got = []
    try:
        async with TcpConnect(targ_tgid=os.getpid(), targ_family=socket.AF_INET) as probe:
            c = socket.create_connection(("127.0.0.1", port))
            lport = c.getsockname()[1]
            c.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", refused))
            six = socket.socket(socket.AF_INET6)   # filtered out by targ_family
            try:
                six.connect(("::1", port))
            except OSError:
                pass
            six.close()
            with anyio.fail_after(10):
                async for ev in probe:
                    got.append(ev)
                    if len(got) == 2:
                        break
    finally:
        srv.close()
    ok, bad = got
    assert (ok.pid, ok.tid, ok.uid, ok.ret, ok.af) == (os.getpid(), os.getpid(), os.getuid(), 0, socket.AF_INET)
    assert (ok.lport, ok.dport) == (lport, port)
    assert TcpConnect.saddr_str(ok) == TcpConnect.daddr_str(ok) == "127.0.0.1"
    assert bad.ret == -errno.ECONNREFUSED and bad.dport == refused and bad.lport > 0
    assert TcpConnect.daddr_str(bad) == "127.0.0.1"

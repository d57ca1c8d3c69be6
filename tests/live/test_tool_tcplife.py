"""tracekit-tcplife on loopback: a child sends 100 KiB to a server in this process; the
client's and the server's sessions each get their row, with the right pid, ports and bytes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from tests.live.toolrun import Tool, ensure_loopback
from tests.support import require_live
from tracekit.probes.tcplife import TcpLife

pytestmark = pytest.mark.live
#: the comm of this interpreter (and of children started with sys.executable): "python3"
#: or "python" in a venv
PY_COMM = Path("/proc/self/comm").read_text().strip()


@pytest.fixture(autouse=True)
def _loopback() -> None:
    require_live()
    ensure_loopback()

PAYLOAD = 102400
CLIENT = f"""
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
c.sendall(b"x" * {PAYLOAD})
c.close()
"""


class Server:
    """Accepts one connection on 127.0.0.1, reads to EOF, closes (a passive close)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        while data := conn.recv(65536):
            self.received += len(data)
        conn.close()

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()


def _session() -> tuple[Server, int, int]:
    srv = Server()
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(srv.port)], stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=30)
    srv.close()
    assert child.returncode == 0 and srv.received == PAYLOAD
    return srv, child.pid, int(out.split()[0])


def test_tcplife_rows_for_both_ends() -> None:
    require_live()
    tool = Tool("tcplife", "-w")
    try:
        assert tool.header().split() == ["PID", "COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT", "TX_KB", "RX_KB",
                                         "MS"]
        srv, child_pid, cport = _session()

        def ours(ls: list[str]) -> list[list[str]]:
            return [r.split() for r in ls[1:] if str(srv.port) in r.split()[4:7:2]]

        tool.wait_for(lambda ls: len(ours(ls)) >= 2)
        rows = ours(tool.stop())
    finally:
        tool.kill()
    by_lport = {r[4]: r for r in rows}
    client, server = by_lport[str(cport)], by_lport[str(srv.port)]
    # PID COMM IP LADDR LPORT RADDR RPORT TX_KB RX_KB MS
    assert client[:8] == [str(child_pid), PY_COMM, "4", "127.0.0.1", str(cport), "127.0.0.1", str(srv.port),
                          "100"]
    assert client[8] == "0"
    assert server[:9] == [str(os.getpid()), PY_COMM, "4", "127.0.0.1", str(srv.port), "127.0.0.1", str(cport),
                          "0", "100"]
    assert 0 < float(client[9]) < 10_000 and 0 < float(server[9]) < 10_000


def test_tcplife_csv_with_time() -> None:
    require_live()
    tool = Tool("tcplife", "-s", "-T")
    try:
        assert tool.header() == "TIME,PID,COMM,IP,LADDR,LPORT,RADDR,RPORT,TX_KB,RX_KB,MS"
        srv, child_pid, cport = _session()
        tool.wait_for(lambda ls: sum(f",{srv.port}," in r for r in ls[1:]) >= 2)
        rows = [r.split(",") for r in tool.stop()[1:] if f",{srv.port}," in r]
    finally:
        tool.kill()
    client = next(r for r in rows if r[5] == str(cport))
    assert len(client[0]) == 8 and client[0].count(":") == 2
    assert client[1:10] == [str(child_pid), PY_COMM, "4", "127.0.0.1", str(cport), "127.0.0.1", str(srv.port),
                            "100", "0"]


@pytest.mark.anyio
async def test_tcplife_probe_bytes() -> None:
    require_live()
    got = {}
    async with TcpLife(targ_family=socket.AF_INET) as probe:
        srv, child_pid, cport = _session()
        with anyio.fail_after(10):
            async for ev in probe:
                if srv.port in (ev.lport, ev.dport) and cport in (ev.lport, ev.dport):
                    got[ev.lport] = ev
                    if len(got) == 2:
                        break
    client, server = got[cport], got[srv.port]
    # the kernel counts sequence space, so SYN and FIN may add one byte each to the data
    assert PAYLOAD <= client.tx_b <= PAYLOAD + 2 and client.rx_b <= 1 and client.pid == child_pid
    assert PAYLOAD <= server.rx_b <= PAYLOAD + 1 and server.tx_b <= 2 and server.pid == os.getpid()
    assert client.comm == server.comm == PY_COMM
    assert 0 < client.span_ns < 10 * 10**9

"""tracekit-tcpretrans on loopback: a SYN the listener drops is retransmitted after the
initial RTO (1 s), and the row names the connecting socket's ends and SYN_SENT.

No netem (sch_netem is not on every kernel) and no firewall rule: a listener whose
accept queue is full (listen(0) with one connection queued) drops further SYNs, so the
client's retransmission is real and nothing outside this test is touched."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import anyio
import pytest

from tests.live.toolrun import Tool, ensure_loopback
from tests.support import require_live
from tracekit.probes.tcpretrans import RETRANSMIT, TcpRetrans

pytestmark = pytest.mark.live


@pytest.fixture(autouse=True)
def _loopback() -> None:
    require_live()
    ensure_loopback()

CLIENT = """
import socket, sys, time
c = socket.socket(); c.setblocking(False)
try:
    c.connect(("127.0.0.1", int(sys.argv[1])))
except BlockingIOError:
    pass
print(c.getsockname()[1], flush=True)
time.sleep(float(sys.argv[2]))
"""


class FullListener:
    """A listener whose accept queue is full: every new SYN is dropped."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port: int = self.sock.getsockname()[1]
        self.queued = socket.create_connection(("127.0.0.1", self.port))  # fills the queue

    def close(self) -> None:
        self.queued.close()
        self.sock.close()


def _client(port: int, linger: float) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(linger)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def test_tcpretrans_sees_the_syn_retransmit() -> None:
    require_live()
    lst = FullListener()
    tool = Tool("tcpretrans", "-s")
    child = None
    try:
        assert tool.header().split() == ["TIME", "PID", "IP", "LADDR:LPORT", "T>", "RADDR:RPORT", "STATE", "SEQ"]
        t0 = time.monotonic()
        child, lport = _client(lst.port, 1.6)
        remote = f"127.0.0.1:{lst.port}"
        tool.wait_for(lambda ls: any(remote in r for r in ls[1:]), timeout=10)
        waited = time.monotonic() - t0
        lines = tool.stop()
    finally:
        tool.kill()
        if child is not None:
            child.wait(10)
        lst.close()
    rows = [r.split() for r in lines[1:] if f"127.0.0.1:{lst.port}" in r]
    # TIME PID IP LADDR:LPORT T> RADDR:RPORT STATE SEQ
    assert rows[0][2:7] == ["4", f"127.0.0.1:{lport}", "R>", f"127.0.0.1:{lst.port}", "SYN_SENT"], rows
    assert int(rows[0][7]) >= 0 and len(rows[0][0]) == 8
    assert 0.8 < waited < 5, waited   # the first SYN retransmission comes after the 1 s initial RTO


def test_tcpretrans_count_mode() -> None:
    require_live()
    lst = FullListener()
    tool = Tool("tcpretrans", "-c", "--json")
    child = None
    try:
        deadline = time.monotonic() + 30
        while "Tracing retransmits" not in tool.stderr and time.monotonic() < deadline:
            time.sleep(0.02)
        child, lport = _client(lst.port, 1.5)
        child.wait(10)
        time.sleep(0.2)
        lines = tool.stop()
    finally:
        tool.kill()
        if child is not None:
            child.wait(10)
        lst.close()
    # one JSON object per report (a single one, at Ctrl-C): {"ts", "time", "flows": [...]}
    reports = [json.loads(ln) for ln in lines if ln.strip()]
    assert len(reports) == 1, reports
    flows = reports[0]["flows"]
    ours = [f for f in flows if f["rport"] == lst.port]
    assert ours == [{"ip": 4, "laddr": "127.0.0.1", "lport": lport, "raddr": "127.0.0.1", "rport": lst.port,
                     "retransmits": 1}], flows


@pytest.mark.anyio
async def test_tcpretrans_probe_event() -> None:
    require_live()
    lst = FullListener()
    try:
        async with TcpRetrans(targ_family=socket.AF_INET) as probe:
            c = socket.socket()
            c.setblocking(False)
            with pytest.raises(BlockingIOError):
                c.connect(("127.0.0.1", lst.port))
            lport = c.getsockname()[1]
            with anyio.fail_after(8):
                async for ev in probe:
                    if ev.dport == lst.port:
                        break
            c.close()
    finally:
        lst.close()
    assert (ev.type, ev.state, ev.lport, ev.af) == (RETRANSMIT, 2, lport, socket.AF_INET)
    assert ev.saddr[:4] == ev.daddr[:4] == bytes([127, 0, 0, 1])


def test_lossprobe_needs_kprobes_and_says_so() -> None:
    require_live()
    from tracekit.errors import NotSupportedError
    from tracekit.hooks.fallback import why_unsupported

    why = why_unsupported("kprobe", "tcp_send_loss_probe")
    if why is None:
        # a kernel with kprobes loads and attaches the loss-probe program too
        with TcpRetrans(lossprobe=True) as probe:
            assert probe.obj is not None and probe.obj.programs["kprobe__tcp_send_loss_probe"].autoload
    else:
        with pytest.raises(NotSupportedError, match=r"kprobe tcp_send_loss_probe .*retransmits are still traced"):
            TcpRetrans(lossprobe=True).open()
        tool = Tool("tcpretrans", "-l", "-d", "1")
        tool.proc.wait(30)
        assert tool.proc.returncode == 1
        time.sleep(0.1)
        assert "kprobe tcp_send_loss_probe" in tool.stderr and "Traceback" not in tool.stderr

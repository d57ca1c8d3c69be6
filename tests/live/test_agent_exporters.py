"""The agent with real consumers: OTLP/HTTP pushed to a loopback receiver decoded with
opentelemetry-proto, a real Prometheus server (Debian's ``prometheus``) scraping it, and the
``tracekit agent`` command stopped by SIGTERM after a SIGHUP reload; plus a compressed soak.
Only 127.0.0.1 addresses."""

from __future__ import annotations

import functools
import gc
import http.server
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from tests.live.test_agent import (
    VALUES,
    ceil_log2,
    http_get,
    kernel_prog_ids,
    make_config_dir,
    prog_names,
    samples,
    workload,
)
from tests.support import open_fds, require_live, skip_or_fail
from tracekit.agent import Agent

pytestmark = pytest.mark.live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(n))
        type(self).paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


@pytest.mark.anyio
async def test_otlp_push_decoded_by_opentelemetry_proto(tmp_path: Path) -> None:
    require_live()
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    d = make_config_dir(tmp_path / "c", ["agent_basic", "agent_hist"])
    _Receiver.bodies = []
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1/metrics"
        agent = Agent(config_path=d, listen=None, otlp_url=url, otlp_interval=3600)
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(agent.run, handle_signals=False))
            workload()
            agent.stop()  # the final push happens on the way out
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(_Receiver.bodies) == 1
    req = ExportMetricsServiceRequest.FromString(_Receiver.bodies[0])
    metrics = {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    seeks = metrics["ebpf_exporter_agent_seeks"]
    assert seeks.sum.is_monotonic and seeks.sum.aggregation_temporality == 2  # CUMULATIVE
    pts = {tuple(sorted((a.key, a.value.string_value) for a in p.attributes)): p.as_double
           for p in seeks.sum.data_points}
    assert pts == {(("comm", "py"), ("kind", "zero")): 3.0, (("comm", "py"), ("kind", "one")): 4.0,
                   (("comm", "py"), ("kind", "unknown:2")): 3.0}
    h = metrics["ebpf_exporter_agent_exp2zero"].histogram
    assert h.aggregation_temporality == 2 and len(h.data_points) == 1
    p = h.data_points[0]
    assert list(p.explicit_bounds) == [0.0] + [float(2 ** (i - 1)) for i in range(1, 13)]
    want = [0] * 14
    for v in VALUES:
        want[min(0 if v == 0 else ceil_log2(v) + 1, 12)] += 1
    assert list(p.bucket_counts) == want
    assert p.count == len(VALUES) and p.sum == float(sum(VALUES))
    assert not p.HasField("min")  # unknown from maps: left unset, not 0


def _wait_http(url: str, deadline: float) -> tuple[int, bytes, str]:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return http_get(url)
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer: {last}")


def test_prometheus_server_scrapes_the_agent(tmp_path: Path) -> None:
    """Debian's prometheus scrapes the agent on loopback; its HTTP API returns the series."""
    require_live()
    prom = shutil.which("prometheus")
    if prom is None:
        skip_or_fail("Debian's prometheus is not installed: apt-get install prometheus (tests/run.sh installs it)")
        return
    d = make_config_dir(tmp_path / "c", ["agent_basic"])
    agent_port, prom_port = free_port(), free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                   f"  - job_name: tracekit\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n")
    agent = Agent(config_path=d, listen=("127.0.0.1", agent_port))
    stop = threading.Event()
    errors: list[BaseException] = []

    def run_agent() -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(functools.partial(agent.run, handle_signals=False))
                while not stop.is_set():
                    await anyio.sleep(0.05)
                agent.stop()

        try:
            anyio.run(main)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    t = threading.Thread(target=run_agent)
    t.start()
    p = subprocess.Popen([prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        _wait_http(f"http://127.0.0.1:{agent_port}/metrics", deadline)
        workload()
        q = urllib.parse.quote('ebpf_exporter_agent_syscalls{errno="ENOENT"}')
        result: list[Any] = []
        while time.monotonic() < deadline and not result:
            try:
                _, body, _ = http_get(f"http://127.0.0.1:{prom_port}/api/v1/query?query={q}")
                result = json.loads(body)["data"]["result"]
            except (OSError, KeyError, ValueError):
                pass
            if not result:
                time.sleep(0.5)
        assert result, "Prometheus never returned the series"
        assert result[0]["metric"]["syscall"] == "lseek" and result[0]["metric"]["job"] == "tracekit"
        assert float(result[0]["value"][1]) == 4.0
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        stop.set()
        t.join(30)
    assert not errors


@pytest.mark.parametrize(("backend", "stop"), [("asyncio", signal.SIGTERM), ("trio", signal.SIGINT)])
def test_command_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path, backend: str, stop: int) -> None:
    """``tracekit agent``: SIGHUP picks up an added config, SIGTERM (asyncio) or SIGINT (trio)
    exits 0 with every program detached and unloaded."""
    require_live()
    d = make_config_dir(tmp_path / "c", ["agent_basic"])
    port = free_port()
    before = kernel_prog_ids()
    p = subprocess.Popen([sys.executable, "-m", "tracekit.cli", "agent", "--config", str(d),
                          "--listen", f"127.0.0.1:{port}", "--log-json", "--backend", backend],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        status, body, _ = _wait_http(f"http://127.0.0.1:{port}/healthz", deadline)
        assert status == 200 and set(json.loads(body)["configs"]) == {"agent_basic"}
        make_config_dir(d, ["agent_hist"])
        p.send_signal(signal.SIGHUP)
        while time.monotonic() < deadline:
            _, body, _ = http_get(f"http://127.0.0.1:{port}/healthz")
            if "agent_hist" in json.loads(body)["configs"]:
                break
            time.sleep(0.1)
        workload()
        s = samples(http_get(f"http://127.0.0.1:{port}/metrics")[1].decode())
        assert s["ebpf_exporter_agent_exp2zero_count"][()] == float(len(VALUES))
        assert prog_names(kernel_prog_ids() - before) >= {"count_seeks", "hist_seeks"}
        p.send_signal(stop)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err.decode()
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(r["msg"].startswith("reload:") and r.get("added") == ["agent_hist"] for r in logs)
    assert logs[-1]["msg"] == "agent stopped"
    assert not {"count_seeks", "hist_seeks"} & prog_names(kernel_prog_ids() - before)


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_soak_scrapes_and_reloads_stay_flat(tmp_path: Path) -> None:
    """Compressed soak: 1,000 scrapes and 100 reloads (a quarter of them restarting a changed
    config); fds do not grow and RSS grows by less than 10% from the warmed-up level."""
    require_live()
    d = make_config_dir(tmp_path / "c", ["agent_basic", "agent_hist", "agent_percpu"])
    agent = Agent(config_path=d, listen=None)
    agent.start()
    try:
        hist = d / "agent_hist.yaml"
        text = hist.read_text()

        def cycle(n: int) -> None:
            for i in range(n):
                workload([i % 50])
                agent.scrape()
                if i % 10 == 0:
                    if i % 40 == 0:
                        hist.write_text(text + f"# {i}\n")  # changed: the probe restarts
                    agent.reload()

        cycle(150)  # warm-up: caches, allocator, first reloads
        gc.collect()
        fds0, rss0 = len(open_fds()), _rss()
        cycle(1000)
        gc.collect()
        fds1, rss1 = len(open_fds()), _rss()
    finally:
        agent.close()
    assert fds1 <= fds0, (fds0, fds1)
    assert rss1 / rss0 < 1.10, (rss0, rss1)
    assert agent.reloads == 115


@pytest.mark.anyio
async def test_tracing_spans_exported_by_otlp(tmp_path: Path) -> None:
    """tracing.spans: each ring-buffer record is one span with the ids, times, name and
    attributes of its labels, sent to the traces endpoint beside --otlp's."""
    require_live()
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.support import build_bpf_object

    d = tmp_path / "c"
    d.mkdir()
    shutil.copy(build_bpf_object("agent_spans.bpf.c"), d / "agent_spans.bpf.o")
    shutil.copy(Path(__file__).resolve().parent.parent / "objects" / "agent_configs" / "agent_spans.yaml", d)
    _Receiver.bodies, _Receiver.paths = [], []
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    t0 = time.time_ns()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1/metrics"
        agent = Agent(config_path=d, listen=None, otlp_url=url, otlp_interval=3600)
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(agent.run, handle_signals=False))
            workload([1, 2, 3])
            await anyio.sleep(0.5)  # the span task drains every 0.2 s
            s = samples(agent.scrape().decode())
            agent.stop()
    finally:
        srv.shutdown()
        srv.server_close()
    t1 = time.time_ns()
    assert s["ebpf_exporter_spans_exported_total"] == {(("config", "agent_spans"),): 3.0}
    spans = []
    for path, body in zip(_Receiver.paths, _Receiver.bodies):
        if path == "/v1/traces":
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                svc = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
                assert svc == "tracekit-test"
                spans += [sp for ss in rs.scope_spans for sp in ss.spans]
    assert len(spans) == 3
    for sp, v in zip(sorted(spans, key=lambda sp: sp.span_id), [1, 2, 3]):
        assert sp.name == "seek"
        assert sp.trace_id == b"\x11" * 15 + bytes([v])
        assert sp.span_id == struct.pack("<Q", v + 1)
        assert sp.parent_span_id == (struct.pack("<Q", 0x42) if v % 2 else b"")
        assert sp.end_time_unix_nano - sp.start_time_unix_nano == v * 1000
        assert t0 - 10**9 <= sp.start_time_unix_nano <= t1
        attrs = {a.key: a.value.string_value for a in sp.attributes}
        assert attrs == {"kind": "odd" if v % 2 else "even", "ebpf_exporter.config": "agent_spans"}

#!/usr/bin/env python3
"""Issue 15: the agent's cost, each figure against an idle agent measured in the same run.

    python bench/bench_agent.py [--series 10000] [--scrapes 50] [--rate 20000] [--seconds 3] [--json]

The agent runs as ``tracekit agent`` in its own process (its CPU is read from
/proc/PID/stat) with one config whose map ``bench_series`` the bench fills from outside
(found by map name) and whose lseek program counts a workload's events in the kernel:

- ``scrape``: /metrics over loopback HTTP, ``--scrapes`` times, with the map empty (idle)
  and with ``--series`` keys (one series each): median latency, agent CPU per scrape,
  and the ratios;
- ``events``: agent CPU over ``--seconds`` with one scrape a second, while a workload
  process makes ``--rate`` lseeks a second (counted in the kernel), against the same
  without the workload: the ratio is ~1 when metrics cost no per-event Python work.

Needs root; builds its BPF object with tests/support.py (clang-19).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """metrics:
  counters:
    - name: bench_series
      help: series filled by the bench
      labels:
        - name: key
          size: 4
          decoders: [{name: uint}]
    - name: bench_events
      help: workload events counted in the kernel
      labels:
        - name: bucket
          size: 4
          decoders: [{name: uint}]
"""
MAGIC = 0x7A6B00000000


def cpu_seconds(pid: int) -> float:
    """On-CPU time of every thread of ``pid`` (schedstat: nanoseconds, not 10 ms ticks)."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((t / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return bytes(r.read())


def find_map(name: str) -> object:
    from tracekit.kernel.maps import Map
    from tracekit.kernel.syscalls import bpf

    cur = 0
    while (nxt := bpf.map_get_next_id(cur)) is not None:
        cur = nxt
        try:
            m = Map.from_id(nxt)
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
        if m.info().name == name:
            return m
        m.close()
    raise SystemExit(f"map {name} not found: did the agent load its config?")


def scrape_round(url: str, pid: int, n: int) -> tuple[float, float, int]:
    get(url)  # warm: decode caches filled
    lat = []
    c0 = cpu_seconds(pid)
    for _ in range(n):
        t = time.perf_counter()
        body = get(url)
        lat.append(time.perf_counter() - t)
    cpu = (cpu_seconds(pid) - c0) / n
    return statistics.median(lat), cpu, body.count(b"\nebpf_exporter_bench_series{")


def steady(url: str, pid: int, seconds: float, rate: int) -> tuple[float, int]:
    """Agent CPU over ``seconds`` (one scrape a second) with a workload at ``rate``/s."""
    work = None
    if rate:
        code = (f"import os, time\nfd = os.open('/dev/null', os.O_RDONLY)\nend = time.monotonic() + {seconds}\n"
                f"n = 0\nt0 = time.monotonic()\nwhile time.monotonic() < end:\n"
                f"    os.lseek(fd, {MAGIC} + n % 64, 0)\n    n += 1\n"
                f"    ahead = n / {rate} - (time.monotonic() - t0)\n"
                f"    if ahead > 0.001:\n        time.sleep(ahead)\nprint(n)\n")
        work = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    c0 = cpu_seconds(pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        get(url)
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    cpu = cpu_seconds(pid) - c0
    sent = int(work.communicate()[0]) if work is not None else 0
    return cpu, sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--rate", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from tests.support import build_bpf_object

    d = Path(tempfile.mkdtemp(prefix="tk-bench-agent-"))
    shutil.copy(build_bpf_object("agent_bench.bpf.c"), d / "bench.bpf.o")
    (d / "bench.yaml").write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    agent = subprocess.Popen([sys.executable, "-m", "tracekit.cli", "agent", "--config", str(d), "--listen",
                              f"127.0.0.1:{port}", "--max-series", str(args.series + 100)],
                             stderr=subprocess.DEVNULL)
    out: dict[str, float | int] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get(url)
                break
            except OSError:
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise SystemExit("the agent did not start") from None
                time.sleep(0.1)
        m = find_map("bench_series")
        idle_lat, idle_cpu, n0 = scrape_round(url, agent.pid, args.scrapes)
        keys = [struct.pack("=I", i) for i in range(args.series)]
        vals = [struct.pack("=Q", i + 1) for i in range(args.series)]
        m.update_batch(keys, vals)  # type: ignore[attr-defined]
        full_lat, full_cpu, n1 = scrape_round(url, agent.pid, args.scrapes)
        assert n1 == args.series, (n1, args.series)
        m.delete_batch(keys)  # type: ignore[attr-defined]
        quiet_cpu, _ = steady(url, agent.pid, args.seconds, 0)
        busy_cpu, sent = steady(url, agent.pid, args.seconds, args.rate)
        counted = sum(float(line.split()[-1]) for line in get(url).decode().splitlines()
                      if line.startswith("ebpf_exporter_bench_events{"))
        out = {
            "series": n1, "idle_series": n0,
            "scrape_ms_idle": round(idle_lat * 1e3, 3), "scrape_ms_series": round(full_lat * 1e3, 3),
            "scrape_latency_ratio": round(full_lat / idle_lat, 2),
            "cpu_ms_per_scrape_idle": round(idle_cpu * 1e3, 3),
            "cpu_ms_per_scrape_series": round(full_cpu * 1e3, 3),
            "scrape_cpu_ratio": round(full_cpu / idle_cpu, 2) if idle_cpu else float("inf"),
            "events_sent": sent, "events_counted": int(counted),
            "event_rate": round(sent / args.seconds),
            "agent_cpu_s_quiet": round(quiet_cpu, 3), "agent_cpu_s_events": round(busy_cpu, 3),
            "event_cpu_ratio": round(busy_cpu / quiet_cpu, 2) if quiet_cpu else float("inf"),
        }
    finally:
        agent.terminate()
        agent.wait(30)
        shutil.rmtree(d, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Issue 13: what users feel -- start-up, CPU per event, memory -- each against a baseline
measured in the same invocation.

    python bench/bench_tools.py [--runs 5] [--only startup,ready,open,exec,idle] [--json]

Sections (each prints ``key=value`` lines, ratios are tracekit / baseline):

- ``startup``: ``python -c 'import tracekit'`` against ``python -c pass`` (wall time, median
  of ``--runs`` fresh interpreters), both with the interpreter of a real, non-editable
  install of this checkout (bench/_venv.py: what ``pip install .`` gives a user; the
  editable .venv's finder imports pathlib, inspect, ... at every start, which hides
  tracekit's own imports); ``python_isolated_pass`` (``-I -S``) is the interpreter's floor;
- ``ready``: a bundled tool started until its header is printed (programs attached),
  that install's ``bin/tracekit-opensnoop`` / ``-execsnoop`` against
  ``bench/c/build/snoop_front`` (libbpf, same object), and each one's peak RSS
  (``VmHWM`` just before it is stopped); ``editable_*``: the same tool run by the dev
  .venv's interpreter, for comparison with older figures;
- ``open``: one ``storm open N`` generator against each tool writing to a file: CPU per
  event (the tool's own on-CPU time from /proc/PID/task/*/schedstat, start-up excluded),
  rows seen for the generator and drops;
- ``exec``: the same with ``storm exec N`` (low rate: the per-wake-up cost dominates);
- ``idle``: an agent with 50 execsnoop probes attached, each iterated by its own task
  (asyncio and trio): CPU per second while nothing happens, CPU per wake-up (one exec
  wakes all 50 readers) and the agent's RSS against a bare interpreter's.

Needs root and tracefs (mounted on demand); builds bench/c on demand.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
C_BUILD = HERE / "c" / "build"
PROBES = REPO / "tracekit" / "probes"

sys.path.insert(0, str(HERE))
from _venv import installed_venv  # noqa: E402 - bench/ is not a package


def _ensure_built() -> None:
    need = [C_BUILD / "snoop_front", C_BUILD / "storm"]
    if not all(p.exists() for p in need):
        res = subprocess.run(["sh", str(HERE / "c" / "build.sh")], capture_output=True, text=True)
        if res.returncode:
            sys.exit(f"bench/c/build.sh failed:\n{res.stderr}")
    if not os.path.exists("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], capture_output=True)
    # installed packages are byte-compiled; this VM's PYTHONDONTWRITEBYTECODE would make every
    # fresh interpreter compile tracekit from source instead
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "tracekit"), str(REPO / "tools")],
                   capture_output=True)


def _cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of ``pid`` so far (schedstat: ns, not 10 ms ticks)."""
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(Path(f).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def _tool_cmd(tool: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from tracekit_tools.{tool} import main; sys.exit(main())"]


def _installed_tool_cmd(tool: str) -> list[str]:
    """The console script of a non-editable install: what a user runs."""
    return [str(Path(installed_venv()) / "bin" / f"tracekit-{tool}")]


def _c_cmd(tool: str) -> list[str]:
    return [str(C_BUILD / "snoop_front"), str(PROBES / f"{tool}.bpf.o")]


def _wait4(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Reap ``proc``: (exit status, peak RSS in MB)."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru.ru_maxrss / 1024


def _start(cmd: list[str], out: Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``cmd`` with stdout to ``out``; return once its first line (the header) is
    there, and the seconds that took."""
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.PIPE, cwd=str(REPO))
    while time.perf_counter() - t0 < timeout:
        if out.stat().st_size and b"\n" in out.read_bytes()[:4096]:
            proc.ready_cpu_ms = _cpu_ns(proc.pid) / 1e6  # type: ignore[attr-defined]
            return proc, time.perf_counter() - t0
        if proc.poll() is not None:
            break
        time.sleep(0.0005)
    proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    raise SystemExit(f"{' '.join(cmd)}: no header within {timeout}s:\n{err}")


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process: its peak RSS since exec.  Not wait4's ru_maxrss, which
    also counts the forked copy of this (much larger) benchmark process before the exec."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stop(proc: subprocess.Popen[bytes]) -> tuple[float, str]:
    """SIGINT ``proc`` and reap it: (its peak RSS in MB, read just before, and its stderr)."""
    rss = _peak_rss_mb(proc.pid)
    proc.send_signal(signal.SIGINT)
    _wait4(proc)
    err = proc.stderr.read().decode() if proc.stderr else ""
    return rss, err


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


# --- sections ------------------------------------------------------------------------------


def bench_startup(runs: int) -> dict[str, float]:
    python = str(Path(installed_venv()) / "bin" / "python")

    def wall(code: str) -> tuple[float, float]:
        """(wall ms, CPU ms of the child: user + system from wait4)"""
        flags = ["-I", "-S"] if code == "-I -S pass" else []
        t0 = time.perf_counter()
        proc = subprocess.Popen([python, *flags, "-c", code.removeprefix("-I -S ")], cwd="/")
        _, _, ru = os.wait4(proc.pid, 0)
        proc.returncode = 0
        return (time.perf_counter() - t0) * 1e3, (ru.ru_utime + ru.ru_stime) * 1e3

    res: dict[str, list[float]] = {}
    for _ in range(runs):  # interleaved: every variant sees the same machine load
        for key, code in (("python_pass", "pass"), ("python_isolated_pass", "-I -S pass"),
                          ("tracekit_import", "import tracekit"),
                          ("tracekit_import_object_probe", "import tracekit.object, tracekit.probe"),
                          ("tracekit_import_opensnoop_tool", "import tracekit_tools.opensnoop")):
            w, c = wall(code)
            res.setdefault(f"{key}_ms", []).append(w)
            res.setdefault(f"{key}_cpu_ms", []).append(c)
    row = {k: _median(v) for k, v in res.items()}
    row["ratio_import"] = round(row["tracekit_import_ms"] / row["python_pass_ms"], 2)
    row["ratio_import_cpu"] = round(row["tracekit_import_cpu_ms"] / row["python_pass_cpu_ms"], 2)
    return row


def bench_ready(runs: int, tool: str) -> dict[str, float]:
    """The installed tool against the C front end, plus the editable .venv's figure."""
    res: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        for _ in range(runs):  # interleaved: every variant sees the same machine load
            for who, cmd in (("c", _c_cmd(tool)), ("tracekit", _installed_tool_cmd(tool)),
                             ("editable_tracekit", _tool_cmd(tool))):
                proc, secs = _start(cmd, out)
                res.setdefault(f"{who}_{tool}_ready_ms", []).append(secs * 1e3)
                # CPU until ready (on-CPU time, not wall): robust when other work shares the cores
                res.setdefault(f"{who}_{tool}_ready_cpu_ms", []).append(proc.ready_cpu_ms)  # type: ignore[attr-defined]
                res.setdefault(f"{who}_{tool}_peak_rss_mb", []).append(_stop(proc)[0])
    row = {k: _median(v) for k, v in res.items()}
    for prefix in ("", "editable_"):
        for what in ("ready", "ready_cpu"):
            row[f"ratio_{prefix}{tool}_{what}"] = round(
                row[f"{prefix}tracekit_{tool}_{what}_ms"] / row[f"c_{tool}_{what}_ms"], 2)
    return row


def _storm_once(cmd: list[str], kind: str, n: int, out: Path) -> tuple[float, int, int, float, str]:
    """(CPU ns per event, rows for the generator, all rows, storm seconds, tool stderr)."""
    tool = "opensnoop" if kind == "open" else "execsnoop"
    proc, _ = _start(cmd, out)
    time.sleep(0.2)  # let start-up work (gc, caches) settle before the baseline read
    cpu0 = _cpu_ns(proc.pid)
    res = subprocess.run([str(C_BUILD / "storm"), kind, str(n)], capture_output=True, text=True, check=True)
    elapsed = int(res.stdout.split("elapsed_ns=")[1]) / 1e9
    # drain: wait until the output stops growing
    last = -1
    for _ in range(100):
        time.sleep(0.1)
        size = out.stat().st_size
        if size == last:
            break
        last = size
    cpu1 = _cpu_ns(proc.pid)
    _, err = _stop(proc)
    lines = out.read_bytes().splitlines()[1:]
    if tool == "opensnoop":
        mine = sum(1 for ln in lines if b" storm " in ln and ln.endswith(b"/dev/null"))
    else:
        mine = sum(1 for ln in lines if ln.startswith(b"true "))  # PCOMM of storm's children
    rows = max(len(lines), 1)
    return (cpu1 - cpu0) / rows, mine, len(lines), elapsed, err


def bench_storm(runs: int, kind: str, n: int) -> dict[str, float]:
    tool = "opensnoop" if kind == "open" else "execsnoop"
    res: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        for _ in range(runs):
            # the generator alone: the BPF programs' added cost per traced call is the
            # difference in its time per call with each tool attached
            res_ = subprocess.run([str(C_BUILD / "storm"), kind, str(n)], capture_output=True, text=True, check=True)
            res.setdefault("untraced_storm_events_per_s", []).append(n / (int(res_.stdout.split("elapsed_ns=")[1]) / 1e9))
            # tracekit_unbatched: the same tool with wake-up batching off (the design before
            # RecordStream.batch_latency: one wake-up per record at low rates)
            nobatch = [sys.executable, "-c", "import sys; from tracekit_tools import common; "
                       f"common.BATCH_LATENCY = 0; from tracekit_tools.{tool} import main; sys.exit(main())"]
            for who, cmd in (("c", _c_cmd(tool)), ("tracekit", _tool_cmd(tool)), ("tracekit_unbatched", nobatch)):
                cpu, mine, _rows, secs, _ = _storm_once(cmd, kind, n, out)
                res.setdefault(f"{who}_cpu_us_per_event", []).append(cpu / 1e3)
                res.setdefault(f"{who}_drops_pct", []).append(100.0 * (n - mine) / n)
                res.setdefault(f"{who}_storm_events_per_s", []).append(n / secs)
    row = {f"{kind}_{k}": _median(v) for k, v in res.items()}
    base = statistics.median(res["untraced_storm_events_per_s"])
    for who in ("c", "tracekit", "tracekit_unbatched"):
        row[f"{kind}_{who}_added_us_per_call"] = round(
            1e6 / statistics.median(res[f"{who}_storm_events_per_s"]) - 1e6 / base, 3)
    row[f"{kind}_ratio_cpu_per_event"] = round(
        statistics.median(res["tracekit_cpu_us_per_event"]) / statistics.median(res["c_cpu_us_per_event"]), 2)
    row[f"{kind}_ratio_unbatched_cpu_per_event"] = round(
        statistics.median(res["tracekit_unbatched_cpu_us_per_event"]) / statistics.median(res["c_cpu_us_per_event"]), 2)
    return row


_AGENT = r"""
import json, os, sys, time, resource
backend = sys.argv[1]
import anyio, tracekit
from tracekit.probes.execsnoop import ExecSnoop
N = 50
probes = [ExecSnoop() for _ in range(N)]
for p in probes:
    p.start()
seen = [0]

async def consume(p):
    async for ev in p:
        seen[0] += 1

def rss_kb():
    for ln in open("/proc/self/status"):
        if ln.startswith("VmRSS:"):
            return int(ln.split()[1])
    return 0

async def main():
    async with anyio.create_task_group() as tg:
        for p in probes:
            tg.start_soon(consume, p)
        await anyio.sleep(0.5)
        print(json.dumps({"ready": True, "rss_kb": rss_kb()}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        tg.cancel_scope.cancel()

anyio.run(main, backend=backend)
print(json.dumps({"seen": seen[0]}), flush=True)
for p in probes:
    p.close()
"""


def bench_idle(backend: str, idle_s: float = 2.0, execs: int = 40) -> dict[str, float]:
    bare = subprocess.run([sys.executable, "-c", "import anyio, trio\nfor ln in open('/proc/self/status'):\n"
                           " ln.startswith('VmRSS:') and print(ln.split()[1])"],
                          capture_output=True, text=True, check=True)
    bare_kb = int(bare.stdout.split()[0])
    proc = subprocess.Popen([sys.executable, "-c", _AGENT, backend], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=str(REPO))
    assert proc.stdout is not None and proc.stdin is not None
    ready = json.loads(proc.stdout.readline())
    c0 = _cpu_ns(proc.pid)
    time.sleep(idle_s)
    c1 = _cpu_ns(proc.pid)
    for _ in range(execs):  # spaced: each exec is its own wake-up of all 50 readers
        subprocess.run([str(C_BUILD / "storm"), "exec", "1"], capture_output=True, check=True)
        time.sleep(0.02)
    time.sleep(0.3)
    c2 = _cpu_ns(proc.pid)
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    seen = json.loads(proc.stdout.readline())["seen"]
    proc.wait()
    idle_per_s = (c1 - c0) / idle_s
    busy = (c2 - c1) - idle_per_s * (execs * 0.02 + 0.3)
    wakeups = max(seen, 1)
    return {f"idle50_{backend}_cpu_us_per_s": round(idle_per_s / 1e3, 1),
            f"idle50_{backend}_us_per_wakeup": round(busy / wakeups / 1e3, 2),
            f"idle50_{backend}_events_seen": seen,
            f"idle50_{backend}_rss_mb": round(ready["rss_kb"] / 1024, 1),
            f"idle50_{backend}_added_rss_mb": round((ready["rss_kb"] - bare_kb) / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="startup,ready,open,exec,idle")
    ap.add_argument("--open-n", type=int, default=200_000)
    ap.add_argument("--exec-n", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_tools.py needs root")
    _ensure_built()
    only = set(args.only.split(","))
    row: dict[str, float] = {}
    if "startup" in only:
        row.update(bench_startup(args.runs))
    if "ready" in only:
        row.update(bench_ready(args.runs, "opensnoop"))
        row.update(bench_ready(args.runs, "execsnoop"))
    if "open" in only:
        row.update(bench_storm(max(1, args.runs // 2), "open", args.open_n))
    if "exec" in only:
        row.update(bench_storm(max(1, args.runs // 2), "exec", args.exec_n))
    if "idle" in only:
        for backend in ("asyncio", "trio"):
            row.update(bench_idle(backend))
    if args.json:
        print(json.dumps(row))
    else:
        for k, v in row.items():
            print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

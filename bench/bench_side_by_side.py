#!/usr/bin/env python3
"""Issue 14: two tracekit tools side by side with libbpf C front ends that load the same
objects and print the same rows, measured in the same run.

    python bench/bench_side_by_side.py [--runs 3] [--out FILE] [--only opensnoop,runqlat]

- event tool: ``tracekit-opensnoop`` against ``bench/c/build/snoop_front``
  (``opensnoop.bpf.o``), under ``storm open N`` (open("/dev/null") + close, as fast as
  one C process can);
- histogram tool: ``tracekit-runqlat`` against ``bench/c/build/hist_front``
  (``runqlat.bpf.o``, tp_btf programs on both sides), under ``wakeup_storm N`` (two
  threads ping-ponging a byte over pipes: every hand-over is a wakeup and a switch).

Per tool and side, each figure the median of ``--runs`` runs, the two sides interleaved so
both see the same machine load:

- ``ready_ms``: wall time from spawn until the first line (header/banner, printed after
  every program is attached) is in the output file;
- ``events_per_s``: events the tool handled during the storm per second of storm
  (opensnoop: rows written for the generator's opens; runqlat: the histogram's total
  count, i.e. sched_switch-ins of a woken task, everything on the system);
- ``lost``: the probe's ``tk_dropped_<map>`` global (``tk_dropped_events``,
  ``tk_dropped_hists``), read from outside the tool just before it is stopped: the tool's
  ``.bss`` map is found through /proc/PID/fdinfo and looked up by id, the counter's
  offset is its ELF symbol's (both loaders keep the section layout); opensnoop also
  reports ``missing``: the generator's opens without a row;
- ``cpu_us_per_event``: user + system time of the tool process (its threads' on-CPU ns
  from /proc/PID/task/*/schedstat) spent from 0.2 s after ready until the storm's output
  is drained, per event handled (``cpu_window_ms``: that time); runqlat aggregates in
  the kernel, so its window is ~0 on both sides and its user-space work is the report:
  ``cpu_report_exit_ms`` (from the end of the storm to exit: map read, print, teardown;
  the total from wait4) and ``cpu_us_per_event_incl_report``;
- ``peak_rss_mb``: VmHWM of the tool process just before it is stopped.

Ratios are tracekit / C (1.0 = parity, lower is better).  Each run is bounded (a storm
of ~1 s, a 10 s cap on each wait); the whole bench takes well under two minutes.  The
tools write to files, never a terminal.  Needs root; builds bench/c on demand and mounts
tracefs.  Not run by the test suite.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
C_BUILD = HERE / "c" / "build"
PROBES = REPO / "tracekit" / "probes"
TICK = os.sysconf("SC_CLK_TCK")
CAP_S = 10.0  # no single wait of a run lasts longer (a storm: twice that)


def _ensure_built() -> None:
    need = ["snoop_front", "storm", "hist_front", "wakeup_storm"]
    if not all((C_BUILD / n).exists() for n in need):
        res = subprocess.run(["sh", str(HERE / "c" / "build.sh")], capture_output=True, text=True)
        if res.returncode:
            sys.exit(f"bench/c/build.sh failed:\n{res.stderr}")
    if not os.path.exists("/sys/kernel/tracing/events"):
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], capture_output=True)
    # an installed package is byte-compiled; without this every fresh interpreter would
    # compile tracekit from source (this VM sets PYTHONDONTWRITEBYTECODE)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "tracekit"), str(REPO / "tools")],
                   capture_output=True)


# --- reading the tool process from outside -------------------------------------------------


def _cpu_s(pid: int) -> float:
    """user + system seconds of ``pid`` so far: the on-CPU time of each of its threads
    (/proc/PID/task/*/schedstat, in ns).  It is the sum utime + stime are scaled to, so
    it matches wait4's figure; /proc/PID/stat's fields are in 10 ms ticks, too coarse for
    a histogram tool's few milliseconds.  Both tools are single-threaded, so no thread
    that has exited is missed."""
    total = 0
    for f in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(f.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def _vm_hwm_mb(pid: int) -> float:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1]) / 1024
    return float("nan")


def _symbol_offset(obj: Path, name: str) -> tuple[str, int]:
    """(section, offset) of global ``name`` in ``obj``'s ELF symbol table."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(obj, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise SystemExit(f"{obj}: no symbol table")
        for sym in symtab.iter_symbols():
            if sym.name == name:
                return elf.get_section(sym["st_shndx"]).name, int(sym["st_value"])
    raise SystemExit(f"{obj}: no symbol {name}")


def _read_global(pid: int, section: str, offset: int) -> int | None:
    """The u64 at ``offset`` of the ``section`` (e.g. ``.bss``) array map that process
    ``pid`` holds open, or None when it holds none (both libbpf and tracekit name that map
    ``<object prefix><section>``)."""
    from tracekit.kernel.syscalls import bpf as sb

    ids: set[int] = set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for p in fdinfo.iterdir():
        try:
            text = p.read_text()
        except OSError:
            continue
        for ln in text.splitlines():
            if ln.startswith("map_id:"):
                ids.add(int(ln.split()[1]))
    for map_id in sorted(ids):
        fd = sb.map_get_fd_by_id(map_id)
        try:
            info = sb.MapInfoStruct()
            sb.obj_get_info_by_fd(fd.fd, info)
            if not info.name.decode().endswith(section) or info.type != 2:  # BPF_MAP_TYPE_ARRAY
                continue
            key = ctypes.c_uint32(0)
            value = (ctypes.c_char * info.value_size)()
            sb.map_lookup_elem(fd.fd, key, value)
            return int.from_bytes(bytes(value)[offset:offset + 8], "little")
        finally:
            fd.close()
    return None


# --- one run of one side -------------------------------------------------------------------


def _start(cmd: list[str], out: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``cmd`` writing to ``out``; return once its first line is there, with the
    seconds that took."""
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.PIPE, cwd=str(REPO))
    while time.perf_counter() - t0 < CAP_S:
        if b"\n" in out.read_bytes()[:4096]:
            return proc, time.perf_counter() - t0
        if proc.poll() is not None:
            break
        time.sleep(0.0005)
    proc.kill()
    err = proc.stderr.read().decode() if proc.stderr else ""
    raise SystemExit(f"{' '.join(cmd)}: no first line within {CAP_S}s:\n{err}")


def _storm(cmd: list[str]) -> float:
    """Run a generator; the seconds its storm took (its own `elapsed_ns=`)."""
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=2 * CAP_S)
    return int(res.stdout.split("elapsed_ns=")[1]) / 1e9


def _drain(out: Path) -> None:
    """Wait until ``out`` stops growing (the tool has caught up), at most CAP_S."""
    last, t0 = -1, time.perf_counter()
    while time.perf_counter() - t0 < CAP_S:
        time.sleep(0.1)
        size = out.stat().st_size
        if size == last:
            return
        last = size


def _stop(proc: subprocess.Popen[bytes]) -> tuple[str, float]:
    """SIGINT ``proc`` (a summary tool prints its report then) and reap it with wait4:
    (stderr, its whole life's user + system seconds, all threads, microsecond units)."""
    proc.send_signal(signal.SIGINT)
    t0 = time.perf_counter()
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - t0 > CAP_S:
            proc.kill()
        time.sleep(0.005)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    return err, ru.ru_utime + ru.ru_stime


Counter = Callable[[bytes], int]


def _run(cmd: list[str], storm: list[str], obj: Path, drop_sym: str, count: Counter,
         out: Path, drain_rows: bool) -> dict[str, float]:
    section, offset = _symbol_offset(obj, drop_sym)
    proc, ready = _start(cmd, out)
    try:
        time.sleep(0.2)  # start-up leftovers (gc, lazy work) settle before the CPU baseline
        cpu0 = _cpu_s(proc.pid)
        secs = _storm(storm)
        if drain_rows:
            _drain(out)
        cpu1 = _cpu_s(proc.pid)
        lost = _read_global(proc.pid, section, offset)
        hwm = _vm_hwm_mb(proc.pid)
    finally:
        # a failed run must not leave its tool attached (it would slow every later run)
        err, cpu_total = _stop(proc)
    if proc.returncode not in (0, -signal.SIGINT, 130):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err}")
    events = count(out.read_bytes())
    # CPU in the storm window and from then to exit (a histogram tool's whole user-space
    # work: read the map, print; plus the interpreter's or libc's teardown; wait4's total)
    return {"ready_ms": ready * 1e3, "events": events, "events_per_s": events / secs,
            "storm_s": secs, "lost": float(lost if lost is not None else -1),
            "cpu_window_ms": (cpu1 - cpu0) * 1e3, "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(events, 1),
            "cpu_report_exit_ms": (cpu_total - cpu1) * 1e3,
            "cpu_us_per_event_incl_report": (cpu_total - cpu0) * 1e6 / max(events, 1),
            "peak_rss_mb": hwm}


def _tk(tool: str, *args: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from tracekit_tools.{tool} import main; sys.exit(main())", *args]


def _open_rows(data: bytes) -> int:
    # rows of the generator: COMM `storm`, PATH /dev/null (same columns on both sides)
    return sum(1 for ln in data.splitlines()[1:] if b" storm " in ln and ln.endswith(b"/dev/null"))


def _hist_total(data: bytes) -> int:
    total = 0
    for ln in data.splitlines():
        if b"->" in ln and b":" in ln:
            total += int(ln.split(b":")[1].split()[0])
    return total


def _shape(tool: str, data: bytes) -> list[bytes]:
    """What must be byte-identical between the two sides' output: opensnoop's header and
    a generator row after its PID column; runqlat's banner, histogram header and bucket
    labels (``low -> high :``) of the first slots (counts and bars differ run to run)."""
    lines = data.splitlines()
    if tool == "opensnoop":
        row = next((ln for ln in lines if b" storm " in ln and ln.endswith(b"/dev/null")), b"")
        return [lines[0] if lines else b"", row[6:]]
    return [ln.split(b":")[0] + b":" if b"->" in ln else ln for ln in lines[:6]]


def _sig(x: float) -> float:
    """``x`` to 4 significant digits (tiny per-event figures must not round to 0)."""
    return float(f"{x:.4g}")


def bench(tool: str, runs: int, n: int, report: list[str]) -> dict[str, float]:
    if tool == "opensnoop":
        obj, sym, count, drain = PROBES / "opensnoop.bpf.o", "tk_dropped_events", _open_rows, True
        sides = {"c": [str(C_BUILD / "snoop_front"), str(obj)], "tracekit": _tk("opensnoop")}
        storm = [str(C_BUILD / "storm"), "open", str(n)]
    else:
        obj, sym, count, drain = PROBES / "runqlat.bpf.o", "tk_dropped_hists", _hist_total, False
        sides = {"c": [str(C_BUILD / "hist_front"), str(obj)], "tracekit": _tk("runqlat")}
        storm = [str(C_BUILD / "wakeup_storm"), str(n)]
    res: dict[str, dict[str, list[float]]] = {"c": {}, "tracekit": {}}
    untraced: list[float] = []
    samples: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        for _ in range(runs):
            untraced.append(n / _storm(storm))
            for who, cmd in sides.items():
                one = _run(cmd, storm, obj, sym, count, out, drain)
                for k, v in one.items():
                    res[who].setdefault(k, []).append(v)
                samples[who] = out.read_bytes()
    row: dict[str, float] = {f"{tool}_untraced_storm_per_s": round(statistics.median(untraced))}
    keys = ["ready_ms", "events_per_s", "lost", "cpu_us_per_event", "cpu_window_ms", "peak_rss_mb", "events",
            "storm_s"]
    if tool == "runqlat":  # its per-event work is in the kernel: the report is its CPU
        keys[4:4] = ["cpu_report_exit_ms", "cpu_us_per_event_incl_report"]
    for key in keys:
        c = statistics.median(res["c"][key])
        t = statistics.median(res["tracekit"][key])
        row[f"{tool}_c_{key}"] = _sig(c)
        row[f"{tool}_tracekit_{key}"] = _sig(t)
        if key not in ("lost", "events", "storm_s", "cpu_window_ms"):
            row[f"{tool}_ratio_{key}"] = round(t / c, 2) if c else float("nan")
    if tool == "opensnoop":
        for who in ("c", "tracekit"):
            row[f"{tool}_{who}_missing"] = n - statistics.median(res[who]["events"])
    row[f"{tool}_same_rows"] = float(_shape(tool, samples["c"]) == _shape(tool, samples["tracekit"]))
    # the rows themselves: same layout on both sides (first lines of the last run)
    for who, data in samples.items():
        lines = data.decode(errors="replace").splitlines()
        pick = lines[:4] if tool == "opensnoop" else lines[:6]
        report.append(f"# {tool} {who} output, first lines of the last run:")
        report.extend(f"#   {ln}" for ln in pick)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="opensnoop,runqlat")
    ap.add_argument("--open-n", type=int, default=100_000)
    ap.add_argument("--wakeup-n", type=int, default=50_000)
    ap.add_argument("--out", default="bench_side_by_side.txt", help="where the figures go (default %(default)s)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_side_by_side.py needs root")
    _ensure_built()
    report: list[str] = [f"# bench_side_by_side runs={args.runs} (medians; ratio = tracekit / C)"]
    row: dict[str, float] = {}
    t0 = time.perf_counter()
    for tool in args.only.split(","):
        row.update(bench(tool, args.runs, args.open_n if tool == "opensnoop" else args.wakeup_n, report))
    report.extend(f"{k}={v}" for k, v in row.items())
    report.append(f"# bench took {time.perf_counter() - t0:.1f} s")
    Path(args.out).write_text("\n".join(report) + "\n")
    print(f"figures written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

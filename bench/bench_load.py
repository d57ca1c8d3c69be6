#!/usr/bin/env python3
"""Open + relocate + load time of the bundled probes: tracekit against libbpf (C).

    python bench/bench_load.py [-n ITER] [--cold-runs K] [--objects opensnoop execsnoop] [--json]

Needs root and the running kernel's BTF.  For each object it runs, in the same
invocation so both sides see the same machine load:

* the libbpf baseline, ``bench/c/build/load_baseline OBJ -n ITER`` (built on demand by
  ``bench/c/build.sh``): bpf_object__open_file + bpf_object__load per iteration;
* tracekit in this process: ``obj = tracekit.open(path); obj.load()`` timed, then
  ``obj.close()`` (not timed, like the baseline's close).  The first iteration of a
  process pays for reading the kernel BTF, which tracekit may then reuse; libbpf reparses
  it on every load.  So both figures are reported: "warm" (median over ITER in one
  process, after a warm-up), "cold" (the first open+load in each of K fresh
  processes, after ``import tracekit``, each with an empty on-disk cache) and
  "warm start" (the same, with the on-disk kernel BTF cache a previous process wrote).
  The fresh processes run the interpreter of a non-editable install of the checkout
  (bench/_venv.py, rebuilt when the tree changes): what ``pip install .`` gives a user.

The fresh-process figures are taken twice: on the default path (kernel-side CO-RE, and
the attach / kfunc / ksym ids looked up by the kernel: tracekit.kernel.btf_lookup) and
with ``TRACEKIT_CORE=user`` (tracekit's own engine, which reads vmlinux BTF): keys with
``user_``.  ``tracekit_[user_]cold_read_vmlinux`` says whether such a process read vmlinux
BTF (1) or not (0).  runqlat (tp_btf programs) is in the default set for that reason.

Programs whose tracepoint is missing on this kernel are switched off (autoload) on both
sides, as the tools do.  Output: key=value lines per object (milliseconds), with
``ratio_warm`` / ``ratio_cold`` / ``ratio_warm_start`` = tracekit / libbpf (lower is better, 1.0 = parity).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
C_DIR = HERE / "c"
LOAD_BASELINE = C_DIR / "build" / "load_baseline"
TRACEFS_EVENTS = (Path("/sys/kernel/tracing/events"), Path("/sys/kernel/debug/tracing/events"))

sys.path.insert(0, str(REPO))   # run from a checkout without installing
sys.path.insert(0, str(HERE))
from _venv import installed_venv  # noqa: E402 - bench/ is not a package


def ensure_tracefs() -> None:
    """Mount tracefs if needed so missing tracepoints can be detected (as root)."""
    if TRACEFS_EVENTS[0].exists() or TRACEFS_EVENTS[1].exists():
        return
    subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"],
                   check=False, capture_output=True)


def tracepoint_missing(target: str) -> bool:
    roots = [r for r in TRACEFS_EVENTS if r.exists()]
    return bool(roots) and not any((r / target).exists() for r in roots)


def build_baseline() -> None:
    if LOAD_BASELINE.exists():
        return
    res = subprocess.run(["sh", str(C_DIR / "build.sh")], capture_output=True, text=True)
    if res.returncode != 0 or not LOAD_BASELINE.exists():
        sys.exit(f"building the libbpf baseline failed (needs gcc and libbpf-dev):\n{res.stderr}")


def run_baseline(obj: Path, iterations: int) -> dict[str, float]:
    res = subprocess.run([str(LOAD_BASELINE), str(obj), "-n", str(iterations)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"load_baseline {obj.name} failed: {res.stderr.strip()}")
    out: dict[str, float] = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def tracekit_open_load(tracekit, path: Path) -> float:
    """One timed open+load (tracepoints missing here switched off); returns ms."""
    t0 = time.perf_counter()
    obj = tracekit.open(path)
    try:
        for prog in obj.programs.values():
            spec = getattr(prog, "spec", None)
            if getattr(spec, "attach_kind", "") == "tracepoint" and tracepoint_missing(spec.attach_target):
                prog.autoload = False
        obj.load()
        return (time.perf_counter() - t0) * 1e3
    finally:
        obj.close()


def run_tracekit_warm(path: Path, iterations: int, warmup: int) -> list[float]:
    import tracekit

    times = [tracekit_open_load(tracekit, path) for _ in range(warmup + iterations)]
    return times[warmup:]


# Run by the interpreter of a real (non-editable) install of the checkout (bench/_venv.py),
# from "/" so the checkout is not on sys.path: the editable .venv's finder imports pathlib,
# inspect, ... at start-up, which would hide the cost of tracekit importing them during the
# first open+load.  Self-contained for the same reason (importing bench_load would import
# pathlib, subprocess, tempfile, json first): the same work as tracekit_open_load().
_COLD_SNIPPET = """
import os, sys, time
t0 = time.perf_counter()
import tracekit
t1 = time.perf_counter()
roots = [r for r in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events") if os.path.isdir(r)]
t2 = time.perf_counter()
obj = tracekit.open({path!r})
try:
    for prog in obj.programs.values():
        spec = getattr(prog, "spec", None)
        if (roots and getattr(spec, "attach_kind", "") == "tracepoint"
                and not any(os.path.exists(os.path.join(r, spec.attach_target)) for r in roots)):
            prog.autoload = False
    obj.load()
    ms = (time.perf_counter() - t2) * 1e3
finally:
    obj.close()
import tracekit.kernel.btf as kb
print((t1 - t0) * 1e3, ms, int(kb._vmlinux is not None))
"""


def run_tracekit_cold(path: Path, runs: int, *, disk_cache: bool = True,
                      core: str = "auto", read_vmlinux: list[int] | None = None) -> tuple[list[float], list[float]]:
    """First open+load in fresh interpreters; returns (import ms list, open+load ms list).

    ``read_vmlinux`` (if given) collects, per timed run, 1 when the process read vmlinux
    BTF (the user-space engine) and 0 when it did not (kernel CO-RE and look-ups).

    ``disk_cache=False`` gives each interpreter an empty cache directory (XDG_CACHE_HOME):
    the true first start (kernel BTF read and scanned); ``True`` shares one cache written
    by a first, untimed process: every later process of a boot.
    """
    imports, loads = [], []
    code = _COLD_SNIPPET.format(path=str(path))
    python = os.path.join(installed_venv(), "bin", "python")
    with tempfile.TemporaryDirectory() as shared:
        def once(cache_dir: str) -> tuple[float, float]:
            # core: TRACEKIT_CORE (auto = the kernel's CO-RE where it can, user = tracekit's engine)
            env = dict(os.environ, XDG_CACHE_HOME=cache_dir, TRACEKIT_CORE=core)
            res = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd="/")
            if res.returncode != 0:
                raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed")
            imp, load, vm = res.stdout.split()
            last_vm[0] = int(vm)
            return float(imp), float(load)

        last_vm = [0]

        if disk_cache:
            once(shared)  # writes the cache (at its exit)
        for _ in range(runs):
            if disk_cache:
                imp, load = once(shared)
            else:
                with tempfile.TemporaryDirectory() as empty:
                    imp, load = once(empty)
            imports.append(imp)
            loads.append(load)
            if read_vmlinux is not None:
                read_vmlinux.append(last_vm[0])
    return imports, loads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--iterations", type=int, default=20)
    ap.add_argument("-w", "--warmup", type=int, default=2)
    ap.add_argument("--cold-runs", type=int, default=3, help="fresh processes for the cold figure (0: skip)")
    # runqlat: tp_btf programs (attach ids looked up in the kernel on the default path)
    ap.add_argument("--objects", nargs="+", default=["opensnoop", "execsnoop", "runqlat"],
                    help="bundled probe names or paths to .bpf.o files")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of key=value lines")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench_load needs root (BPF program load)")
    if args.iterations < 1:
        sys.exit("--iterations must be >= 1")

    from tracekit import probes

    ensure_tracefs()
    build_baseline()
    results = []
    for name in args.objects:
        path = Path(name) if name.endswith(".o") and Path(name).exists() else probes.path(name)
        row: dict[str, object] = {"object": path.name, "iterations": args.iterations}
        base = run_baseline(path, args.iterations)
        row["libbpf_open_load_ms"] = base["libbpf_open_load_ms"]
        row["libbpf_open_load_min_ms"] = base["libbpf_open_load_min_ms"]
        try:
            warm = run_tracekit_warm(path, args.iterations, args.warmup)
            row["tracekit_open_load_ms"] = round(statistics.median(warm), 3)
            row["tracekit_open_load_min_ms"] = round(min(warm), 3)
            row["ratio_warm"] = round(statistics.median(warm) / base["libbpf_open_load_ms"], 2)
            if args.cold_runs > 0:
                # installed packages are byte-compiled; with PYTHONDONTWRITEBYTECODE (this VM)
                # every fresh interpreter would otherwise compile tracekit from source
                subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "tracekit")],
                               capture_output=True)
                # default path (kernel-side CO-RE where the kernel can) and the user-space
                # engine (TRACEKIT_CORE=user), each cold (empty cache) and warm-start
                for tag, core in (("", "auto"), ("user_", "user")):
                    vm: list[int] = []
                    imports, cold = run_tracekit_cold(path, args.cold_runs, disk_cache=False, core=core,
                                                      read_vmlinux=vm)
                    # 0: the cold process never read vmlinux BTF (kernel CO-RE + in-kernel look-ups)
                    row[f"tracekit_{tag}cold_read_vmlinux"] = max(vm)
                    _, started = run_tracekit_cold(path, args.cold_runs, disk_cache=True, core=core)
                    if not tag:
                        row["tracekit_import_ms"] = round(statistics.median(imports), 3)
                    row[f"tracekit_{tag}cold_open_load_ms"] = round(statistics.median(cold), 3)
                    row[f"ratio_{tag}cold"] = round(statistics.median(cold) / base["libbpf_open_load_ms"], 2)
                    row[f"tracekit_{tag}warm_start_open_load_ms"] = round(statistics.median(started), 3)
                    row[f"ratio_{tag}warm_start"] = round(
                        statistics.median(started) / base["libbpf_open_load_ms"], 2)
        except Exception as exc:   # report the baseline even when tracekit cannot load yet
            row["tracekit_error"] = f"{type(exc).__name__}: {exc}"
        results.append(row)
        if not args.json:
            for key, value in row.items():
                print(f"{key}={value}")
            print()
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if any("tracekit_error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

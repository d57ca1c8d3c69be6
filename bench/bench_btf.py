#!/usr/bin/env python3
"""Kernel BTF start-up: tracekit (tracekit.kernel.btf) against libbpf's btf__parse.

    python bench/bench_btf.py [-n RUNS] [--json]

In the same invocation, so both sides see the same machine load:

* libbpf: ``bench/c/build/btf_baseline -n RUNS`` (built on demand by bench/c/build.sh):
  median of btf__parse(/sys/kernel/btf/vmlinux) and of one btf__find_by_name_kind;
* tracekit **cold**: RUNS fresh processes, each with an empty cache directory
  (XDG_CACHE_HOME), timing ``kernel.vmlinux()`` + ``find("task_struct")`` after the
  imports (sysfs read, scan, name array built; the cache is written at exit, untimed);
* tracekit **warm**: RUNS fresh processes sharing a cache written beforehand (the
  second process of a boot: the kernel's BTF mapped from sysfs (read before 6.16); the
  cache file's ownership/mode checked on its fd, offsets, name array and earlier look-ups
  read and verified by a CRC-32 over the whole file, boot id + BTF size compared);
* memory: in a fresh process, VmRSS and VmHWM (peak) before and after loading vmlinux
  BTF and resolving ~40 names, decoding their types (a typical CO-RE pass).

Output: key=value lines (milliseconds, MiB) and ratio_cold / ratio_warm = tracekit /
libbpf parse+find (lower is better; targets: cold <= 2, warm <= 1, peak RSS < 40 MiB).
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
BASELINE = HERE / "c" / "build" / "btf_baseline"

NAMES = """task_struct mm_struct file inode dentry sk_buff sock net_device cred pid
    signal_struct files_struct fdtable path vfsmount super_block page folio
    bpf_map bpf_prog trace_event_raw_sys_enter trace_event_raw_sys_exit pt_regs
    linux_binprm filename qstr kernfs_node cgroup css_set nsproxy pid_namespace
    mnt_namespace user_namespace ns_common sockaddr socket request_sock
    bpf_map_type task_struct___x no_such_type_tracekit""".split()


def child(mode: str) -> None:
    """One measurement in a fresh process; prints JSON."""
    sys.path.insert(0, str(REPO))
    from tracekit.kernel import btf as kernel

    def status() -> dict[str, int]:
        out = {}
        for line in open("/proc/self/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
        return out

    before = status()
    t0 = time.perf_counter()
    btf = kernel.vmlinux()
    btf.find("task_struct")
    t1 = time.perf_counter()
    res = {"ms": (t1 - t0) * 1e3}
    if mode == "mem":
        for n in NAMES:
            for tid in btf.find_by_essential_name(n.split("___")[0]):
                btf.type(tid)
        after = status()
        res["rss_mib"] = (after["VmRSS"] - before["VmRSS"]) / 1024
        res["hwm_mib"] = (after["VmHWM"] - before["VmRSS"]) / 1024
        t2 = time.perf_counter()
        for n in NAMES:
            btf.find_by_essential_name(n)
        res["lookup_us"] = (time.perf_counter() - t2) * 1e6 / len(NAMES)
    print(json.dumps(res))


def run_child(mode: str, cache: str) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    r = subprocess.run([sys.executable, __file__, "--child", mode], env=env,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def libbpf(n: int) -> dict[str, float]:
    if not BASELINE.exists():
        subprocess.run(["sh", str(HERE / "c" / "build.sh")], check=True, capture_output=True)
    r = subprocess.run([str(BASELINE), "-n", str(n)], capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in (l.split("=", 1) for l in r.stdout.split()) if k.endswith("_ms")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10, help="runs per measurement (default 10)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return
    base = libbpf(a.n)
    lib_ms = base["libbpf_btf_parse_ms"] + base["libbpf_btf_find_ms"]
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as shared:
        run_child("cold", shared)  # writes the cache the warm runs read
        for _ in range(a.n):
            with tempfile.TemporaryDirectory() as empty:
                cold.append(run_child("cold", empty)["ms"])
            warm.append(run_child("warm", shared)["ms"])
        mem = run_child("mem", shared)
        with tempfile.TemporaryDirectory() as empty:
            mem_cold = run_child("mem", empty)
    res = {
        "libbpf_parse_ms": base["libbpf_btf_parse_ms"],
        "libbpf_find_ms": base["libbpf_btf_find_ms"],
        "libbpf_parse_find_ms": round(lib_ms, 3),
        "tracekit_cold_ms": round(statistics.median(cold), 3),
        "tracekit_warm_ms": round(statistics.median(warm), 3),
        "ratio_cold": round(statistics.median(cold) / lib_ms, 2),
        "ratio_warm": round(statistics.median(warm) / lib_ms, 2),
        "tracekit_rss_added_warm_mib": round(mem["rss_mib"], 1),
        "tracekit_peak_added_warm_mib": round(mem["hwm_mib"], 1),
        "tracekit_rss_added_cold_mib": round(mem_cold["rss_mib"], 1),
        "tracekit_peak_added_cold_mib": round(mem_cold["hwm_mib"], 1),
        "tracekit_lookup_us": round(mem["lookup_us"], 1),
    }
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k}={v}")


if __name__ == "__main__":
    main()

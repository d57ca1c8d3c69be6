"""Run one command on every kernel of the matrix, one after another, within a time budget.

    python -m tests.vm.matrix [--kernels 6.1,6.12,sid] [--budget 40m] [--timeout 20m] -- CMD...

Exit status: 0 when CMD exited 0 on every kernel; otherwise the first failing kernel's
status (124 for a timeout, 125 for a guest that died, 2 for a setup error, 1 for a kernel
skipped because the budget ran out). For .ci/run: the budget bounds the whole matrix,
kernel preparation (a first-time download) included.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.vm.kernels import SERIES, VMSetupError, log, prepare_kernel
    from tests.vm.runner import parse_timeout, run
else:
    from .kernels import SERIES, VMSetupError, log, prepare_kernel
    from .runner import parse_timeout, run

DEFAULT_KERNELS = ("6.1", "6.12", "sid")


@dataclass
class MatrixEntry:
    series: str
    release: str
    returncode: int
    seconds: float
    boot_seconds: float | None
    note: str = ""


def run_matrix(cmd: Sequence[str], kernels: Sequence[str] = DEFAULT_KERNELS, *,
               budget: float = 3600.0, timeout: float | None = None, mem: str = "2G",
               retries: int = 2) -> list[MatrixEntry]:
    """Run ``cmd`` on each kernel in turn; each run gets min(timeout, budget left)."""
    start = time.monotonic()
    results: list[MatrixEntry] = []
    for series in kernels:
        left = budget - (time.monotonic() - start)
        t0 = time.monotonic()
        if left < 30:  # not even enough for a boot: say so rather than start a doomed run
            results.append(MatrixEntry(series, "-", 1, 0.0, None, "skipped: time budget exhausted"))
            log(f"=== {series}: skipped, {max(left, 0):.0f}s of the budget left")
            continue
        try:
            kernel = prepare_kernel(series)
        except VMSetupError as e:
            results.append(MatrixEntry(series, "-", 2, time.monotonic() - t0, None, f"setup: {e}"))
            log(f"=== {series}: setup failed: {e}")
            continue
        left = budget - (time.monotonic() - start)
        this_timeout = min(left, timeout) if timeout else left
        log(f"=== {series}: {kernel.release} (timeout {this_timeout:.0f}s) ===")
        res = run(cmd, kernel, timeout=this_timeout, mem=mem, retries=retries)
        note = "timeout" if res.timed_out else (res.notes[-1].splitlines()[0] if res.notes else "")
        results.append(MatrixEntry(series, res.kernel, res.returncode, time.monotonic() - t0,
                                   res.boot_seconds, note))
    return results


def summary(results: Sequence[MatrixEntry]) -> str:
    lines = ["kernel matrix:"]
    for r in results:
        status = "ok" if r.returncode == 0 else f"FAIL (exit {r.returncode})"
        boot = f", boot {r.boot_seconds:.1f}s" if r.boot_seconds is not None else ""
        note = f" - {r.note}" if r.note and r.returncode != 0 else ""
        lines.append(f"  {r.series:5} {r.release:24} {status:18} {r.seconds:7.1f}s{boot}{note}")
    return "\n".join(lines)


def exit_status(results: Sequence[MatrixEntry]) -> int:
    return next((r.returncode for r in results if r.returncode != 0), 0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.vm.matrix",
                                 description="Run CMD on each Debian kernel of the matrix.")
    ap.add_argument("--kernels", default=",".join(DEFAULT_KERNELS),
                    help=f"comma-separated, from {', '.join(SERIES)}")
    ap.add_argument("--budget", type=parse_timeout, default=3600.0,
                    help="total seconds (or 40m) for the whole matrix; default 3600")
    ap.add_argument("--timeout", type=parse_timeout, default=None, help="cap per kernel")
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give a command after --")
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    unknown = [k for k in kernels if k not in SERIES]
    if unknown:
        ap.error(f"unknown kernel(s) {unknown}; choose from {', '.join(SERIES)}")
    try:
        results = run_matrix(cmd, kernels, budget=args.budget, timeout=args.timeout,
                             mem=args.mem, retries=args.retries)
    except KeyboardInterrupt:
        log("interrupted; qemu killed")
        return 130
    print(summary(results), file=sys.stderr, flush=True)
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())

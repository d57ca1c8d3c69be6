#!/usr/bin/env python3
"""Ring buffer consume throughput: tracekit's async reader against libbpf (C).

    python bench/bench_ringbuf.py [-n RECORDS] [-r ROUNDS] [--backend asyncio|trio|both]
                                  [--compare DIR] [--json]

Needs root and ``sh bench/c/build.sh`` (the producer object and the libbpf baseline).
Records come from the same in-kernel producer the libbpf baseline uses,
``bench/c/ringbuf_producer.bpf.c``, loaded *by tracekit* (``tracekit.open``) and run with
``programs["produce"].test_run()``: a SEC("syscall") program writing RECORDS 48-byte
``struct record {u64 seq; u64 payload[5];}`` with bpf_loop + bpf_ringbuf_reserve/submit.
Each round fills the ring, then times one consumer draining exactly RECORDS records:

* ``per_event_raw``: ``async for rec in reader`` (bytes);
* ``per_event_decoded``: the same with the BTF-compiled EventType of ``struct record``
  (every field decoded to ints before the record is handed out);
* ``per_event_decoded_field``: the same, and the consumer reads ``rec.seq`` of each;
* ``batch_raw`` / ``batch_decoded``: ``async for batch in reader.batches()``;
* ``sync_raw``: ``reader.read_available(8192)`` in a loop (no event loop work).

Figures are records/s, median over ROUNDS.  The libbpf baseline
(``bench/c/build/ringbuf_baseline``: ``ring_buffer__consume`` with a counting callback) runs
in the same invocation, and ``ratio_*`` = tracekit / libbpf (higher is better).

``--compare DIR`` first runs this script against the tracekit package of another checkout
(e.g. a ``git worktree`` of an older commit) in a subprocess, then against this one, and
prints ``speedup_*`` = this / that, so before/after figures come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE = HERE / "c" / "build" / "ringbuf_baseline"
PRODUCER_OBJ = HERE / "c" / "build" / "ringbuf_producer.bpf.o"
REC_LEN = 48
BATCH = 8192


def _import_root() -> None:
    """Import tracekit from ``--tracekit DIR`` (the --compare child) or this checkout."""
    root = REPO
    if "--tracekit" in sys.argv:
        root = Path(sys.argv[sys.argv.index("--tracekit") + 1]).resolve()
    sys.path.insert(0, str(root))


_import_root()

import anyio  # noqa: E402

import tracekit  # noqa: E402
from tracekit.events.records import EventType  # noqa: E402
from tracekit.events.ringbuf import RingBuffer  # noqa: E402


def ring_size_for(n: int) -> int:
    need = n * ((REC_LEN + 8 + 7) & ~7)
    size = 4096
    while size < need:
        size *= 2
    return size


async def per_event(rb: RingBuffer, n: int) -> float:
    t0 = time.perf_counter()
    i = 0
    async for _ in rb:
        i += 1
        if i == n:
            break
    return n / (time.perf_counter() - t0)


async def per_event_field(rb: RingBuffer, n: int) -> float:
    t0 = time.perf_counter()
    i = total = 0
    async for ev in rb:
        total += ev.seq
        i += 1
        if i == n:
            break
    dt = time.perf_counter() - t0
    assert total >= n * (n - 1) // 2  # every record was read (seqs 0..n-1 plus the round base)
    return n / dt


async def batches(rb: RingBuffer, n: int) -> float:
    t0 = time.perf_counter()
    i = 0
    async for b in rb.batches():
        i += len(b)
        if i >= n:
            break
    return n / (time.perf_counter() - t0)


async def sync_drain(rb: RingBuffer, n: int) -> float:
    t0 = time.perf_counter()
    i = 0
    while i < n:
        i += len(rb.read_available(BATCH))
    return n / (time.perf_counter() - t0)


class Producer:
    """bench/c/ringbuf_producer.bpf.o, loaded by tracekit with a ring sized for ``n``."""

    def __init__(self, n: int) -> None:
        self.obj: Any = tracekit.open(str(PRODUCER_OBJ))
        try:
            self.ring_size = ring_size_for(n)
            self.obj.maps["records"].max_entries = self.ring_size
            self.obj.load()
            self.event_type = EventType.from_btf(self.obj.spec.btf, "record")
        except BaseException:
            self.obj.close()
            raise
        self.map_fd = self.obj.maps["records"].map.fd
        self.prog = self.obj.programs["produce"]

    def run(self, n: int) -> None:
        before = self.obj.bss.produced
        self.prog.test_run(struct.pack("<Q", n))
        made = self.obj.bss.produced - before
        assert made == n, f"producer wrote {made} of {n} records (dropped: {self.obj.bss.dropped})"

    def close(self) -> None:
        self.obj.close()


def run_backend(backend: str, n: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    p = Producer(n)
    try:
        et = p.event_type
        modes = {
            "per_event_raw": (per_event, None),
            "per_event_decoded": (per_event, et),
            "per_event_decoded_field": (per_event_field, et),
            "batch_raw": (batches, None),
            "batch_decoded": (batches, et),
            "sync_raw": (sync_drain, None),
        }
        produce_rps = []
        for mode, (fn, dec) in modes.items():
            figs = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                p.run(n)
                produce_rps.append(n / (time.perf_counter() - t0))
                rb = RingBuffer(p.map_fd, p.ring_size, decoder=dec, batch_size=BATCH)
                try:
                    figs.append(anyio.run(fn, rb, n, backend=backend))
                    assert rb.pending_bytes() == 0
                finally:
                    rb.close()
            out[mode] = statistics.median(figs)
        out["produce"] = statistics.median(produce_rps)
    finally:
        p.close()
    return out


def baseline(n: int, rounds: int) -> dict[str, float] | None:
    """The libbpf C baseline's figures, or None when it is not built."""
    if not (BASELINE.exists() and PRODUCER_OBJ.exists()):
        return None
    res = subprocess.run([str(BASELINE), str(PRODUCER_OBJ), "-n", str(n), "-r", str(rounds)],
                         capture_output=True, text=True, timeout=600)
    if res.returncode:
        print(f"libbpf_error={res.stderr.strip()!r}")
        return None
    figs = {}
    for line in res.stdout.splitlines():
        k, _, v = line.partition("=")
        try:
            figs[k.strip()] = float(v)
        except ValueError:
            pass
    return figs


def tracekit_figures(backends: tuple[str, ...], n: int, rounds: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for backend in backends:
        for k, v in run_backend(backend, n, rounds).items():
            results[f"tracekit_{backend}_{k}_rps"] = v
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1_000_000, help="records per round (<= 8388608)")
    ap.add_argument("-r", type=int, default=5, help="rounds per mode")
    ap.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    ap.add_argument("--compare", metavar="DIR", help="also measure the tracekit of checkout DIR (before/after)")
    ap.add_argument("--tracekit", metavar="DIR", help=argparse.SUPPRESS)  # used by --compare's child
    ap.add_argument("--no-baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not PRODUCER_OBJ.exists():
        print(f"{PRODUCER_OBJ} is missing: run 'sh bench/c/build.sh'", file=sys.stderr)
        return 2
    backends = ("asyncio", "trio") if args.backend == "both" else (args.backend,)
    other: dict[str, float] = {}
    if args.compare:
        cmd = [sys.executable, str(Path(__file__).resolve()), "-n", str(args.n), "-r", str(args.r),
               "--backend", args.backend, "--tracekit", args.compare, "--no-baseline", "--json"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=dict(os.environ))
        if res.returncode:
            print(res.stderr, file=sys.stderr)
            return 1
        other = json.loads(res.stdout)
    results = tracekit_figures(backends, args.n, args.r)
    for k, v in other.items():
        results["before_" + k] = v
        if k in results:
            results["speedup_" + k.removeprefix("tracekit_").removesuffix("_rps")] = results[k] / v
    base = None if args.no_baseline else baseline(args.n, args.r)
    if base:
        results.update(base)
        c = base.get("libbpf_ringbuf_consume_rps")
        if c:
            for k in list(results):
                if k.startswith("tracekit_") and not k.endswith("_produce_rps"):
                    results["ratio_" + k.removeprefix("tracekit_").removesuffix("_rps")] = results[k] / c
    elif not args.no_baseline:
        print(f"# libbpf baseline not built ({BASELINE}): run 'sh bench/c/build.sh' for ratios")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print(f"{k}={v:.4g}" if k.startswith(("ratio_", "speedup_")) else f"{k}={v:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

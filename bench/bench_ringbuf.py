#!/usr/bin/env python3
"""Ring buffer consume throughput: tracekit's async reader against libbpf (C).

    python bench/bench_ringbuf.py [-n RECORDS] [-r ROUNDS] [--backend asyncio|trio|both] [--json]

Needs root.  Records come from an in-kernel producer: a hand-assembled SEC("syscall")
program (tests/live/ringbuf_producer.py) that writes RECORDS 48-byte records with
bpf_loop + bpf_ringbuf_output when run with BPF_PROG_TEST_RUN.  Each round fills the ring,
then times one consumer draining exactly RECORDS records:

* ``per_event_raw``: ``async for rec in reader`` (bytes);
* ``per_event_decoded``: the same with a BTF-compiled EventType (``struct seq_event``);
* ``batch_raw`` / ``batch_decoded``: ``async for batch in reader.batches()``;
* ``sync_raw``: ``reader.read_available(8192)`` in a loop (no event loop work).

Figures are records/s, median over ROUNDS.  The libbpf baseline
(``bench/c/build/ringbuf_baseline``, built by ``sh bench/c/build.sh``) is run in the same
invocation when present, and ``ratio_*`` = tracekit / libbpf (higher is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BASELINE = HERE / "c" / "build" / "ringbuf_baseline"
BASELINE_OBJ = HERE / "c" / "build" / "ringbuf_producer.bpf.o"

sys.path.insert(0, str(REPO))  # run from a checkout without installing

import anyio  # noqa: E402

from tests.live.ringbuf_producer import Producer  # noqa: E402
from tracekit.btf.reader import BTF  # noqa: E402
from tracekit.events import EventType  # noqa: E402
from tracekit.ringbuf import RingBuffer  # noqa: E402

REC_LEN = 48


def event_type() -> EventType:
    from tests.support import build_bpf_object

    return EventType.for_map(BTF.from_file(str(build_bpf_object("events_types.bpf.c"))), "seq")


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
        i += len(rb.read_available(8192))
    return n / (time.perf_counter() - t0)


def run_backend(backend: str, n: int, rounds: int, et: EventType) -> dict[str, float]:
    modes = {
        "per_event_raw": (per_event, None),
        "per_event_decoded": (per_event, et),
        "batch_raw": (batches, None),
        "batch_decoded": (batches, et),
        "sync_raw": (sync_drain, None),
    }
    out: dict[str, float] = {}
    with Producer(ring_size_for(n), name="tk_bench") as p:
        produce_rps = []
        for mode, (fn, dec) in modes.items():
            figs = []
            for r in range(rounds):
                t0 = time.perf_counter()
                made = p.run(n, REC_LEN, base=r * n)
                produce_rps.append(n / (time.perf_counter() - t0))
                assert made == n, f"producer wrote {made} of {n} records"
                rb = RingBuffer(p.map.fd, p.ring_size, decoder=dec, batch_size=8192)
                try:
                    figs.append(anyio.run(fn, rb, n, backend=backend))
                    assert rb.pending_bytes() == 0
                finally:
                    rb.close()
            out[mode] = statistics.median(figs)
        out["produce"] = statistics.median(produce_rps)
    return out


def baseline(n: int, rounds: int) -> dict[str, float] | None:
    """The libbpf C baseline's figures, or None when it is not built."""
    if not (BASELINE.exists() and BASELINE_OBJ.exists()):
        return None
    res = subprocess.run([str(BASELINE), str(BASELINE_OBJ), "-n", str(n), "-r", str(rounds)],
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1_000_000, help="records per round (<= 8388608)")
    ap.add_argument("-r", type=int, default=5, help="rounds per mode")
    ap.add_argument("--backend", choices=("asyncio", "trio", "both"), default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    et = event_type()
    results: dict[str, float] = {}
    for backend in (("asyncio", "trio") if args.backend == "both" else (args.backend,)):
        for k, v in run_backend(backend, args.n, args.r, et).items():
            results[f"tracekit_{backend}_{k}_rps"] = v
    base = baseline(args.n, args.r)
    if base:
        results.update(base)
        c = base.get("libbpf_ringbuf_consume_rps")
        if c:
            for k in list(results):
                if k.startswith("tracekit_") and not k.endswith("_produce_rps"):
                    results["ratio_" + k.removeprefix("tracekit_").removesuffix("_rps")] = results[k] / c
    else:
        print(f"# libbpf baseline not built ({BASELINE}): run 'sh bench/c/build.sh' for ratios")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for k, v in results.items():
            print(f"{k}={v:.4g}" if k.startswith("ratio_") else f"{k}={v:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

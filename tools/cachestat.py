"""tracekit-cachestat: page cache hits, misses and hit ratio per interval, like BCC's cachestat."""

from __future__ import annotations

import argparse
import time
from typing import Any

from tracekit.probes.cachestat import CacheStat, Counts

from .common import HelpFormatter, add_common, add_interval, run_summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="tracekit-cachestat",
        description="Count cache kernel function calls",
        epilog="Options and columns follow BCC's cachestat; --json prints one object per interval.\n"
        "Hooks: BCC's kernel functions where kprobes or fentry work (filemap_add_folio or\n"
        "add_to_page_cache_lru, folio_mark_accessed or mark_page_accessed, mark_buffer_dirty,\n"
        "folio_account_dirtied/account_page_dirtied or the writeback dirty tracepoint), counted per\n"
        "call; else (no kprobes/fentry, Linux 6.11+) the filemap tracepoints mm_filemap_get_pages,\n"
        "mm_filemap_fault and mm_filemap_add_to_page_cache, counted in pages, with DIRTIES the\n"
        "pages dirtied (writeback_dirty_folio) since mark_buffer_dirty has no tracepoint.\n\n"
        "examples:\n"
        "  tracekit-cachestat            # run with default option of 1 second delay\n"
        "  tracekit-cachestat -T         # include timestamps\n"
        "  tracekit-cachestat 5 3        # 5 second summaries, 3 times",
        formatter_class=HelpFormatter,
    )
    p.add_argument("-T", "--timestamp", action="store_true", help="include timestamp on output")
    add_interval(p, default=1.0)
    add_common(p)
    return p.parse_args(argv)


def meminfo_mb() -> tuple[float, float]:
    """Buffers and Cached from /proc/meminfo, in MiB."""
    vals: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Buffers", "Cached"):
                    vals[key] = int(rest.split()[0])
    except OSError:
        pass
    return vals.get("Buffers", 0) / 1024, vals.get("Cached", 0) / 1024


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    probe = CacheStat()

    def collect(pr: Any) -> tuple[Counts, str, float, float]:
        return (pr.read(), pr.mode, *meminfo_mb())

    def fields(data: tuple[Counts, str, float, float]) -> tuple[int, int, int, float, float, float]:
        c, mode, buffers, cached = data
        hits, misses = c.hits_misses()
        total = hits + misses
        ratio = hits / total if total > 0 else 0.0
        # mark_buffer_dirty has no tracepoint: in that mode DIRTIES are pages dirtied
        dirties = c.mbd if mode == "functions" else c.apd
        return hits, misses, dirties, 100 * ratio, buffers, cached

    def text(data: tuple[Counts, str, float, float]) -> str:
        hits, misses, dirties, ratio, buffers, cached = fields(data)
        t = f"{time.strftime('%H:%M:%S'):<8} " if args.timestamp else ""
        return f"{t}{hits:8d} {misses:8d} {dirties:8d} {ratio:7.2f}% {buffers:12.0f} {cached:10.0f}"

    def to_json(data: tuple[Counts, str, float, float]) -> dict[str, Any]:
        hits, misses, dirties, ratio, buffers, cached = fields(data)
        c = data[0]
        return {"hits": hits, "misses": misses, "dirties": dirties, "hitratio": round(ratio, 2),
                "buffers_mb": round(buffers), "cached_mb": round(cached), "mode": data[1],
                "counters": c._asdict()}

    header = (f"{'TIME':<8} " if args.timestamp else "") + (
        f"{'HITS':>8} {'MISSES':>8} {'DIRTIES':>8} {'HITRATIO':>8} {'BUFFERS_MB':>12} {'CACHED_MB':>10}")
    return run_summary(args, probe, collect, text, to_json, header=header, blank_line=False,
                       timestamp_line=False, detaching=True)


if __name__ == "__main__":
    raise SystemExit(main())

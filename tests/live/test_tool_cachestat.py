"""tracekit-cachestat: a cold read of a known file is misses, the same read again is hits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, require_live, skip_or_fail

pytestmark = pytest.mark.live

PAGES = 8192            # a 32 MiB file, in 4 KiB pages
SIZE = PAGES * 4096


def _tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.cachestat", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _read(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 17):
            pass


def _evict(path: Path) -> None:
    # only this file's pages leave the cache (drop_caches would disturb the whole machine)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _interval_of(path: Path) -> dict[str, float]:
    """One report covering exactly one read of ``path`` (plus whatever else the machine did)."""
    proc = _tool("99999")
    try:
        header = proc.stdout.readline()   # printed once the programs are attached
        assert header.split()[:2] == ["HITS", "MISSES"], header + proc.stderr.read()
        _read(path)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1] == "Detaching...", out
    hits, misses, dirties, ratio, _, _ = lines[0].split()
    return {"hits": int(hits), "misses": int(misses), "dirties": int(dirties), "hitratio": float(ratio.rstrip("%"))}


def test_cold_read_misses_then_warm_read_hits(tmp_path: Path) -> None:
    require_live()
    if re.search(r"\btmpfs\b", subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                                                text=True).stdout):
        skip_or_fail(f"{tmp_path} is on tmpfs: the page cache test needs a disk filesystem")
    path = tmp_path / "data"
    with open(path, "wb") as f:
        f.write(os.urandom(SIZE))
    _evict(path)

    cold = _interval_of(path)
    warm = _interval_of(path)
    # The counters are machine-wide: other processes' reads add hits and misses, and their
    # writes subtract from misses (BCC's misses = insertions - dirtied pages), so the
    # bounds leave room for a busy machine; the file's 8192 pages dominate both intervals.
    assert cold["misses"] + cold["dirties"] >= PAGES * 0.9, cold
    assert cold["hitratio"] < 50.0, cold
    assert warm["hits"] >= PAGES * 0.9, warm
    assert warm["misses"] < PAGES * 0.1, warm
    assert warm["hitratio"] > 90.0, warm


def test_columns_count_and_json() -> None:
    require_live()
    proc = _tool("--json", "0.3", "2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    reports = [json.loads(line) for line in out.splitlines()]
    assert len(reports) == 2
    assert {"hits", "misses", "dirties", "hitratio", "buffers_mb", "cached_mb", "mode"} <= set(reports[0])
    proc = _tool("-T", "0.3", "2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "HITS", "MISSES", "DIRTIES", "HITRATIO", "BUFFERS_MB", "CACHED_MB"]
    assert len(lines) == 4 and lines[-1] == "Detaching..."
    for line in lines[1:3]:
        assert re.fullmatch(r"\d\d:\d\d:\d\d +\d+ +\d+ +\d+ +\d+\.\d\d% +\d+ +\d+", line), line

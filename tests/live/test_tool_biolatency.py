"""tracekit-biolatency's histograms count exactly dd's direct I/O on a loop device."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.live.test_tool_biosnoop import make_loop_device
from tests.support import ROOT

pytestmark = pytest.mark.live

N = 200


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    yield from make_loop_device(tmp_path)


def _tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.biolatency", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _sections(out: str) -> dict[str, dict[tuple[int, int], int]]:
    """'disk = x' / 'flags = y' (or '' for a single histogram) -> {(low, high): count}."""
    hists: dict[str, dict[tuple[int, int], int]] = {}
    name = ""
    for line in out.splitlines():
        m = re.match(r"^(disk|flags) = (.*)$", line)
        if m:
            name = m[2]
            continue
        m = re.match(r"^\s+(\d+) -> (\d+)\s+: (\d+)\s+\|[* ]*\|$", line)
        if m:
            hists.setdefault(name, {})[(int(m[1]), int(m[2]))] = int(m[3])
    return hists


def _run(dev: str, *opts: str, dd: list[str] | None = None) -> tuple[str, str]:
    proc = _tool(*opts)
    try:
        banner = (proc.stderr if "--json" in opts else proc.stdout).readline()
        assert banner == "Tracing block device I/O... Hit Ctrl-C to end.\n", banner + proc.stderr.read()
        subprocess.run(["dd", *(dd or ["if=/dev/zero", f"of={dev}", "oflag=direct"]), "bs=4k", f"count={N}"],
                       check=True, capture_output=True)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out, err


def test_per_disk_histogram_counts_every_write(loop_device: str) -> None:
    name = os.path.basename(loop_device)
    out, _ = _run(loop_device, "-D", "-e", "-d", name)
    hists = _sections(out)
    assert list(hists) == [name], out
    assert sum(hists[name].values()) == N
    rows = list(hists[name])
    assert rows[0] == (0, 1) and all(b[0] == a[1] + 1 for a, b in pairwise(rows))   # no gaps
    assert re.search(rf"avg = \d+ usecs, total: \d+ usecs, count: {N}$", out, re.M), out
    assert "     usecs               : count     distribution" in out


def test_flags_histogram_and_milliseconds(loop_device: str) -> None:
    out, _ = _run(loop_device, "-F", "-m", "-d", os.path.basename(loop_device))
    hists = _sections(out)
    assert len(hists) == 1, out
    (flags, counts), = hists.items()
    assert flags.endswith("Write") and "Sync" in flags, flags   # O_DIRECT writes are REQ_SYNC
    assert sum(counts.values()) == N
    assert "     msecs               : count     distribution" in out


def test_json_one_object_per_interval(loop_device: str) -> None:
    name = os.path.basename(loop_device)
    out, _ = _run(loop_device, "--json", "-D", "-d", name,
                  dd=[f"if={loop_device}", "of=/dev/null", "iflag=direct"])
    reports = [json.loads(line) for line in out.splitlines()]
    assert len(reports) == 1
    (h,) = reports[0]["histograms"]
    assert h["disk"] == name and h["count"] == N and h["val_type"] == "usecs"
    assert sum(b["count"] for b in h["buckets"]) == N


def test_interval_and_count(loop_device: str) -> None:
    proc = _tool("-T", "-d", os.path.basename(loop_device), "0.5", "3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # three reports: a blank line and an HH:MM:SS line each; no I/O, so no histogram
    assert re.fullmatch(r"Tracing block device I/O\.\.\. Hit Ctrl-C to end\.\n(\n\d\d:\d\d:\d\d\n){3}", out), out

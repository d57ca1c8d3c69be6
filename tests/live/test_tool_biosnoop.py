"""tracekit-biosnoop sees each 4 KiB direct write and read of dd on a loop device."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, require_live, skip_or_fail

pytestmark = pytest.mark.live

N = 100


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    yield from make_loop_device(tmp_path)


def make_loop_device(tmp_path: Path) -> Iterator[str]:
    """A fresh 16 MiB loop device over a file in tmp_path (detached afterwards)."""
    require_live()
    if not os.path.exists("/dev/loop-control") or shutil.which("losetup") is None:
        skip_or_fail("no loop devices here (/dev/loop-control or losetup missing)")
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def _tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.biosnoop", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _snoop(dev: str, dd: list[str], *opts: str) -> tuple[list[str], str, str]:
    proc = _tool("-d", os.path.basename(dev), *opts)
    try:
        first = proc.stdout.readline() if "--json" not in opts else ""
        if "--json" in opts:
            import time

            time.sleep(3)   # no header line under --json: give the probe time to attach
        else:
            assert first.startswith("TIME(s)"), first + proc.stderr.read()
        subprocess.run(["dd", *dd, "bs=4k", f"count={N}"], check=True, capture_output=True)
        rows = []
        while len(rows) < N:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if (" dd " in line) or ('"comm": "dd"' in line):
                rows.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return rows, first, err


def test_direct_writes_each_give_a_row(loop_device: str) -> None:
    rows, header, err = _snoop(loop_device, ["if=/dev/zero", f"of={loop_device}", "oflag=direct"], "-Q", "-P")
    assert header.split() == ["TIME(s)", "COMM", "PID", "DISK", "T", "SECTOR", "BYTES", "P", "QUE(ms)", "LAT(ms)"]
    name = os.path.basename(loop_device)
    sectors = []
    for i, line in enumerate(rows):
        f = line.split()
        assert f[1] == "dd" and f[3] == name and f[4] == "W" and f[6] == "4096", line
        assert f[7] == ("?" if i == 0 else "S"), line   # one sequential stream
        assert float(f[8]) >= 0 and float(f[9]) > 0
        sectors.append(int(f[5]))
    assert sectors == [8 * i for i in range(N)]
    assert "Traceback" not in err


def test_direct_reads_json(loop_device: str) -> None:
    rows, _, _ = _snoop(loop_device, [f"if={loop_device}", "of=/dev/null", "iflag=direct"], "--json")
    evs = [json.loads(r) for r in rows]
    assert [e["sector"] for e in evs] == [8 * i for i in range(N)]
    assert {(e["disk"], e["bytes"], e["rwbs"][0]) for e in evs} == {(os.path.basename(loop_device), 4096, "R")}
    assert all(e["pid"] > 0 and e["lat_ns"] > 0 and e["queue_ns"] is not None for e in evs)

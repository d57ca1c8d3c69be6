"""Issue 10 item 6: every lost event is counted and shown.

A storm against small buffers (tests/objects/lost_storm.bpf.c, run with
BPF_PROG_TEST_RUN): a one-page ring buffer whose probe counts failed reservations in
``tk_dropped_events`` (tracekit.h's TK_DROP_COUNTER convention), and a perf event array
whose losses the kernel reports in PERF_RECORD_LOST records.  In both, events received +
events lost == events produced, exactly; the tools say so on stderr.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support import ROOT, prebuilt
from tracekit.events.lost import LostReporter
from tracekit.object import Object, open_object
from tracekit.probe import Probe

pytestmark = pytest.mark.live


@pytest.fixture
def storm(live: None) -> Iterator[Object]:
    obj = open_object(prebuilt("lost_storm.bpf.c"))
    obj.load()
    try:
        yield obj
    finally:
        obj.close()


def _ring(obj: Object, n: int) -> None:
    obj.programs["storm_ring"].test_run(ctx=struct.pack("<Q", n))


def _perf(obj: Object, n: int) -> None:
    obj.programs["storm_perf"].test_run(ctx=struct.pack("<Q", n))


def test_ring_buffer_storm_received_plus_lost_is_produced(storm: Object) -> None:
    r = storm.reader("events")
    got: list[int] = []
    for burst in (1000, 50, 4000, 7, 2500):  # ~100 records fit in the one-page ring
        _ring(storm, burst)
        got += [ev.seq for ev in r.read_available()]
    produced = storm.bss.produced
    assert produced == 7557
    assert r.lost > 0 and got, (len(got), r.lost)
    assert len(got) + r.lost == produced
    assert len(set(got)) == len(got)  # nothing twice
    assert storm.lost == r.lost == storm.bss.tk_dropped_events
    r.close()
    assert r.lost == storm.bss.tk_dropped_events  # the count survives the reader's close


def test_ring_reader_counts_only_its_own_time(storm: Object) -> None:
    _ring(storm, 500)  # before the reader: lost to nobody's loop
    before = storm.bss.tk_dropped_events
    assert before > 0
    storm.reader("events").read_available()  # empty the ring
    r = storm.reader("events")
    _ring(storm, 300)
    got = len(r.read_available())
    assert r.lost == storm.bss.tk_dropped_events - before
    assert got + r.lost == 300
    assert storm.lost == storm.bss.tk_dropped_events  # the object's count is since load


def test_perf_buffer_storm_received_plus_lost_is_produced(storm: Object) -> None:
    # PERF_RECORD_LOST goes into the ring of the CPU that dropped, once it has room again:
    # keep every run on one CPU and run once more after draining to flush the notice.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        r = storm.reader("perf_events", page_count=2)  # 8 KB per CPU: ~170 records
        got = 0
        for burst in (3000, 10, 4096):
            _perf(storm, burst)
            got += len(r.read_available())
        _perf(storm, 1)
        got += len(r.read_available())
    finally:
        os.sched_setaffinity(0, cpus)
    produced = storm.bss.perf_produced
    assert produced == 7107
    assert r.lost > 0 and got > 0
    assert got + r.lost == produced
    assert storm.lost == r.lost  # the ring buffer had no drop
    r.close()
    assert storm.lost == produced - got  # closed perf readers still count in Object.lost


@pytest.mark.anyio
async def test_async_loop_storm_exact(storm: Object) -> None:
    """The same over ``async for``: a consumer task and a producer storming meanwhile."""
    got: list[int] = []
    it: Any = storm.events("events")

    async def consume() -> None:
        async for ev in it:
            got.append(ev.seq)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        for _ in range(20):
            _ring(storm, 400)
            await anyio.sleep(0.001)
        with anyio.fail_after(5):
            while len(got) + it.lost < storm.bss.produced:
                await anyio.sleep(0.005)
        lost = it.lost
        tg.cancel_scope.cancel()
    assert storm.bss.produced == 8000
    assert len(got) + lost == 8000 and lost > 0
    assert it.reader.closed  # the cancelled loop released its reader


def test_probe_lost(live: None) -> None:
    class Storm(Probe[Any]):
        object = prebuilt("lost_storm.bpf.c")

    with Storm() as probe:
        assert probe.obj is not None
        _ring(probe.obj, 1000)
        dropped = probe.obj.bss.tk_dropped_events
        assert dropped > 0
        assert probe.lost == dropped
    assert probe.lost == dropped  # still there after close: the tools' total at exit


def test_bundled_probes_declare_drop_counters(live: None) -> None:
    """execsnoop and opensnoop follow the convention, so their readers count drops."""
    for name in ("execsnoop", "opensnoop"):
        obj = open_object(name)
        assert "tk_dropped_events" in obj.bss, name
        obj.load()
        assert obj.reader("events")._drop_counter is not None
        obj.close()


def test_lost_reporter_lines() -> None:
    """The first loss at once, then at most one line per interval; the total at exit."""
    now = [0.0]
    count = [0]
    out = io.StringIO()
    rep = LostReporter(lambda: count[0], stream=out, clock=lambda: now[0])
    rep.tick()  # nothing lost: nothing said
    now[0] = 0.2
    count[0] = 5
    rep.tick()  # the first loss is told at once
    count[0] = 9
    for t in (0.25, 0.5, 1.1):  # within a second of the first line: nothing more
        now[0] = t
        rep.tick()
    now[0] = 1.3
    rep.tick()
    now[0] = 3.5
    rep.tick()  # no new loss: no line
    rep.finish()
    rep.finish()
    assert out.getvalue().splitlines() == [
        "Possibly lost 5 samples",
        "Possibly lost 4 samples",
        "Lost 9 samples in total (the probe's buffer was full: give it more room or trace less)",
    ]
    quiet = io.StringIO()
    LostReporter(lambda: 0, stream=quiet).finish()
    assert quiet.getvalue() == ""


STORM = """
import os, sys, time
print("ready", flush=True)      # started: no more opens of its own from here on
sys.stdin.readline()            # wait until the tool is attached
n, end = 0, time.monotonic() + {seconds}
while time.monotonic() < end:
    for _ in range(1000):
        os.close(os.open("/dev/null", os.O_RDONLY))
    n += 1000
print(n, flush=True)
"""


def test_opensnoop_tool_reports_lost_events(live: None, tmp_path: Path) -> None:
    """A one-page ring (-b 1, ~13 opensnoop records) under an open() storm: the tool says
    it lost events while it runs (the storm lasts over a second: two lines at least) and
    how many at exit; rows + lost == opens."""
    child = subprocess.Popen([sys.executable, "-c", STORM.format(seconds=2.5)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    tool = subprocess.Popen([sys.executable, "-m", "tracekit_tools.opensnoop", "-b", "1", "-p", str(child.pid),
                             "-d", "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert tool.stdout is not None and child.stdin is not None
        header = tool.stdout.readline()
        assert header.split()[:2] == ["PID", "COMM"], header
        child.stdin.write("go\n")
        child.stdin.flush()
        n = int(child.stdout.readline())
        child.wait(timeout=60)
        out, err = tool.communicate(timeout=60)
    finally:
        for p in (tool, child):
            if p.poll() is None:
                p.kill()
                p.wait()
    rows = [line for line in out.splitlines() if line.strip()]
    lines = err.splitlines()
    possibly = [line for line in lines if line.startswith("Possibly lost ") and line.endswith(" samples")]
    assert len(possibly) >= 2, err
    totals = [line for line in lines if line.startswith("Lost ")]
    assert len(totals) == 1, err
    total = int(totals[0].split()[1])
    # the last second's losses may only be in the total
    assert sum(int(line.split()[2]) for line in possibly) <= total
    assert len(rows) + total == n, (len(rows), total, err[-500:])
    assert tool.returncode == 0, err

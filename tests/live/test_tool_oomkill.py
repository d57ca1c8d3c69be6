"""tracekit-oomkill sees an OOM kill in a memory-limited cgroup: a child confined to 50 MiB
allocates 200 MiB; the row names it as trigger and victim (and, with the kprobe hook, the
12800 pages of its limit)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support import ROOT, require_live, skip_or_fail

pytestmark = pytest.mark.live

LIMIT = 50 << 20
HOG = "import ctypes; ctypes.CDLL(None).prctl(15, b'tk-oom-hog', 0, 0, 0); x = b'a' * (200 << 20)"


@contextlib.contextmanager
def memory_cgroup() -> Iterator[str]:
    """A fresh memory cgroup limited to LIMIT without swap (v2, else v1); yields the file a
    process writes its pid to to enter it.  Removed afterwards."""
    name = f"tk-oom-{os.getpid()}"
    v2 = "/sys/fs/cgroup"
    mounted = False
    if os.path.isdir(v2) and not os.listdir(v2):
        # nothing mounted (the qemu guests' minimal init): a cgroup2 hierarchy of our own
        mounted = subprocess.run(["mount", "-t", "cgroup2", "none", v2], capture_output=True).returncode == 0
    try:
        with open(f"{v2}/cgroup.controllers") as f:
            has_v2 = "memory" in f.read().split()
        if has_v2:
            with open(f"{v2}/cgroup.subtree_control", "w") as f:
                f.write("+memory")
    except OSError:
        has_v2 = False
    if has_v2:
        path, files = f"{v2}/{name}", [("memory.max", LIMIT), ("memory.swap.max", 0)]
        procs = "cgroup.procs"
    elif os.path.isdir("/sys/fs/cgroup/memory"):
        path = f"/sys/fs/cgroup/memory/{name}"
        files = [("memory.limit_in_bytes", LIMIT), ("memory.memsw.limit_in_bytes", LIMIT)]
        procs = "cgroup.procs"
    else:
        skip_or_fail("no memory cgroup controller (v2 or v1) to confine the OOM test")
        raise AssertionError
    os.mkdir(path)
    try:
        for fname, value in files:
            if os.path.exists(f"{path}/{fname}"):
                with open(f"{path}/{fname}", "w") as f:
                    f.write(str(value))
        yield f"{path}/{procs}"
    finally:
        for _ in range(50):  # the killed task leaves the cgroup a moment after it died
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)
        if mounted:
            subprocess.run(["umount", v2], capture_output=True)


def oom_child(procs: str) -> subprocess.Popen[bytes]:
    def enter() -> None:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))

    return subprocess.Popen([sys.executable, "-c", HOG], preexec_fn=enter, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.oomkill", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def kprobe_hook() -> bool:
    from tracekit.probes.oomkill import OOMKill

    p = OOMKill()
    try:
        p.open()
        return p.knows_pages
    finally:
        p.close()


def test_oom_kill_row() -> None:
    require_live()
    pages_known = kprobe_hook()
    proc = tool()
    assert proc.stdout is not None
    try:
        banner = proc.stdout.readline()
        assert banner == "Tracing OOM kills... Ctrl-C to stop.\n", (banner, proc.stderr.read() if proc.stderr else "")
        with memory_cgroup() as procs:
            child = oom_child(procs)
            assert child.wait(timeout=60) == -signal.SIGKILL
            row = proc.stdout.readline().rstrip("\n")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    expected = (f'Triggered by PID {child.pid} ("tk-oom-hog"), OOM kill of PID {child.pid} ("tk-oom-hog")'
                + (f", {LIMIT // 4096} pages" if pages_known else "") + ", loadavg: ")
    stamp, _, rest = row.partition(" ")
    assert len(stamp) == 8 and stamp.count(":") == 2, row
    assert rest.startswith(expected), (row, expected)
    assert len(rest[len(expected):].split()) == 5  # /proc/loadavg verbatim


def test_oom_kill_json() -> None:
    require_live()
    proc = tool("--json")
    assert proc.stdout is not None
    try:
        time.sleep(0.1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _has_bpf_link(proc.pid):
            time.sleep(0.05)
        with memory_cgroup() as procs:
            child = oom_child(procs)
            child.wait(timeout=60)
            ev = json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert ev["victim_pid"] == ev["trigger_pid"] == child.pid
    assert ev["victim_comm"] == ev["trigger_comm"] == "tk-oom-hog"
    assert ev["pages"] in (None, LIMIT // 4096)


def _has_bpf_link(pid: int) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in ("anon_inode:bpf_link", "anon_inode:[perf_event]"):
                return True
    return False


def test_kprobe_program_passes_the_verifier_here() -> None:
    """The kprobe hook loads on every kernel (this host cannot attach it, the guests do)."""
    require_live()
    import tracekit
    from tracekit.probes import path

    obj = tracekit.open(str(path("oomkill")))
    try:
        obj.programs["tp_mark_victim"].autoload = False
        obj.load()
        assert obj.programs["kprobe_oom_kill_process"].loaded
    finally:
        obj.close()

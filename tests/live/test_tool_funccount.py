"""tracekit-funccount counts exactly the calls a child makes: a user function (uprobes),
a tracepoint, and kernel functions where the kernel has kprobes (the qemu guests)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.support import BUILD_DIR, OBJECTS_SRC, ROOT, need, require_live

pytestmark = pytest.mark.live


def tick_target() -> str:
    """tests/objects/tick_target.c built natively (cached by content: the qemu guests,
    which share the host's root, find the host's build)."""
    src = OBJECTS_SRC / "tick_target.c"
    flags = ["-O1", "-g"]
    key = hashlib.sha256(src.read_bytes() + repr(flags).encode()).hexdigest()[:16]
    out = BUILD_DIR / f"tick_target-{key}"
    if not out.exists():
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            pytest.fail("no gcc for tests/objects/tick_target.c")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([cc, *flags, "-o", f"{out}.{os.getpid()}", str(src)], check=True)
        os.rename(f"{out}.{os.getpid()}", out)
    return str(out)


def tool(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tracekit_tools.funccount", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def ready(proc: subprocess.Popen[str], expect: str = "Tracing ") -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(expect):
        proc.kill()
        raise AssertionError(f"no banner: {line!r}\n{proc.communicate()[1]}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def rows(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def test_user_function_counted_exactly() -> None:
    require_live()
    child = subprocess.Popen([tick_target(), "1000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        proc = tool("-p", str(child.pid), f"{tick_target()}:tick")
        ready(proc, 'Tracing 1 functions for "')
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        out = stop(proc)
    finally:
        child.kill()
        child.wait()
    lines = out.splitlines()
    assert lines[-1] == "Detaching...", out
    assert f"{'FUNC':<36} {'COUNT':>8}" in lines, out
    assert rows(out) == {"tick": 1000}, out
    assert f"{'tick':<36} {1000:8d}" in lines


def test_other_process_not_counted_and_intervals_with_json() -> None:
    require_live()
    binary = tick_target()
    a = subprocess.Popen([binary, "300"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    b = subprocess.Popen([binary, "700"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for c in (a, b):
            assert c.stdout is not None and c.stdout.readline() == "ready\n"
        proc = tool("--json", "-p", str(a.pid), f"{binary}:tic*")
        # --json prints no banner: wait until the tool holds its BPF links
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _attached(proc.pid):
            time.sleep(0.05)
        assert _attached(proc.pid), proc.stderr.read() if proc.poll() is not None else "not attached in 30 s"
        for c in (a, b, a):
            assert c.stdin is not None and c.stdout is not None
            c.stdin.write("go\n")
            c.stdin.flush()
            assert c.stdout.readline() == "done\n"
        out = stop(proc)
    finally:
        for c in (a, b):
            c.kill()
            c.wait()
    reports = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(reports) == 1, out
    assert reports[0]["counts"] == {"tick": 600}, out
    assert {"ts", "time"} <= set(reports[0])


def _attached(pid: int) -> bool:
    """Whether process ``pid`` holds a BPF link (the tool has attached)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in ("anon_inode:bpf_link", "anon_inode:[perf_event]"):
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def test_tracepoint_counted_exactly() -> None:
    require_live()
    code = "import os, sys; sys.stdin.readline(); [os.getppid() for _ in range(1000)]; print('done', flush=True)"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc = tool("-p", str(child.pid), "-T", "t:syscalls:sys_enter_getppid")
        ready(proc, 'Tracing 1 functions for "t:syscalls:sys_enter_getppid"')
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        out = stop(proc)
    finally:
        child.kill()
        child.wait()
    assert rows(out) == {"syscalls:sys_enter_getppid": 1000}, out


def test_no_match_is_an_error() -> None:
    proc = tool("t:nosuchcategory:nosuchevent")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "No functions matched by pattern t:nosuchcategory:nosuchevent" in err and "Traceback" not in err


def test_kernel_functions_counted() -> None:
    require_live()
    from tracekit.hooks import kprobe

    need("kprobes", kprobe.kprobe_pmu_available() or kprobe._kprobe_events_available(),
         "no kprobe PMU or kprobe_events")
    code = "import os, sys; sys.stdin.readline(); [os.getppid() for _ in range(1000)]; print('done', flush=True)"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # __x64_sys_getppid on x86; the pattern also finds other architectures' names
        proc = tool("-p", str(child.pid), "*sys_getppid")
        ready(proc)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        out = stop(proc)
    finally:
        child.kill()
        child.wait()
    got = rows(out)
    assert sum(got.values()) == 1000 and all("getppid" in k for k in got), out

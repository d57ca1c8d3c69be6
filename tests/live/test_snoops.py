"""The bundled probes end to end: exact exec and open events, on asyncio and trio."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import anyio
import pytest
from tracekit_tools.execsnoop import ExecSnoop
from tracekit_tools.opensnoop import OpenSnoop

import tracekit
from tests.support import ROOT, require_live

pytestmark = [pytest.mark.live, pytest.mark.anyio]


async def first(it, pred, timeout: float = 15.0):
    with anyio.fail_after(timeout):
        async for ev in it:
            if pred(ev):
                return ev
    raise AssertionError("event stream ended")


async def test_execsnoop_reports_the_exact_exec() -> None:
    require_live()
    marker = f"tk-{uuid.uuid4().hex[:12]}"
    async with ExecSnoop() as probe:
        proc = subprocess.run(["/bin/echo", marker, "second arg"], capture_output=True)
        ev = await first(probe, lambda e: marker in e.args)
    assert proc.returncode == 0
    assert ev.args == ["/bin/echo", marker, "second arg"]
    assert ev.comm == "echo"
    assert ev.ppid == os.getpid()
    assert ev.retval == 0
    assert ev.uid == os.getuid()
    assert ev.pid > 0 and ev.pid != os.getpid()
    assert not ev.truncated


async def test_execsnoop_failed_exec_and_max_args() -> None:
    require_live()
    missing = f"/nonexistent/tk-{uuid.uuid4().hex[:12]}"
    many = [f"a{i}" for i in range(30)]
    async with ExecSnoop(ignore_failed=False, max_args=5) as probe:
        with pytest.raises(FileNotFoundError):
            subprocess.run([missing, "x"])
        ev = await first(probe, lambda e: e.args[:1] == [missing])
        assert ev.retval == -errno.ENOENT
        assert ev.ppid == os.getpid()
        subprocess.run(["/bin/true", *many])
        ev = await first(probe, lambda e: e.args[:1] == ["/bin/true"] and e.ppid == os.getpid())
        assert ev.args == ["/bin/true", *many[:4]]
        assert ev.truncated


async def test_one_line_attach_api() -> None:
    require_live()
    marker = f"tk-{uuid.uuid4().hex[:12]}"
    async with tracekit.attach("execsnoop") as stream:
        subprocess.run(["/bin/echo", marker])
        ev = await first(stream, lambda e: e.ppid == os.getpid() and e.comm == "echo")
    assert ev.pid > 0 and ev.ppid == os.getpid()
    assert ev.comm == "echo"
    assert ev.args == ["/bin/echo", marker]  # the declaration splits argv


async def test_opensnoop_reports_open_and_failed_open(tmp_path) -> None:
    require_live()
    path = tmp_path / f"tk-{uuid.uuid4().hex[:12]}"
    path.write_text("x")
    missing = str(tmp_path / "does-not-exist")
    async with OpenSnoop(targ_tgid=os.getpid()) as probe:
        fd = os.open(path, os.O_RDONLY)
        try:
            ev = await first(probe, lambda e: e.fname == str(path))
        finally:
            os.close(fd)
        assert ev.ret == fd
        assert ev.pid == os.getpid()
        assert ev.tid == threading.get_native_id()
        assert ev.comm == Path("/proc/self/comm").read_text().strip()[:15]
        assert ev.flags & os.O_ACCMODE == os.O_RDONLY
        with pytest.raises(FileNotFoundError):
            os.open(missing, os.O_RDONLY)
        ev = await first(probe, lambda e: e.fname == missing)
        assert ev.ret == -errno.ENOENT
        assert probe.obj.bss.events_emitted >= 2


def _tool(name: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", f"tracekit_tools.{name}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_opensnoop_tool_rows_and_ctrl_c(tmp_path) -> None:
    require_live()
    path = tmp_path / f"tk-{uuid.uuid4().hex[:12]}"
    path.write_text("x")
    proc = _tool("opensnoop", "-p", str(os.getpid()), "-U")
    try:
        header = proc.stdout.readline()
        assert header.split() == ["UID", "PID", "COMM", "FD", "ERR", "PATH"], proc.stderr.read() if not header else header
        fd = os.open(path, os.O_RDONLY)
        os.close(fd)
        try:
            os.open(str(path) + ".missing", os.O_RDONLY)
        except FileNotFoundError:
            pass
        rows = [proc.stdout.readline().split(), proc.stdout.readline().split()]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert rows[0] == [str(os.getuid()), str(os.getpid()), rows[0][2], str(fd), "0", str(path)]
    assert rows[1][-3:] == ["-1", str(errno.ENOENT), str(path) + ".missing"]
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_execsnoop_tool_duration_and_columns() -> None:
    require_live()
    marker = f"tk-{uuid.uuid4().hex[:12]}"
    proc = _tool("execsnoop", "-d", "4", "-U", "-q", "--backend", "trio")
    header = proc.stdout.readline()
    assert header.split() == ["UID", "PCOMM", "PID", "PPID", "RET", "ARGS"]
    child = subprocess.run(["/bin/echo", marker, "two words"], capture_output=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rows = [line for line in out.splitlines() if marker in line]
    assert len(rows) == 1, out
    cols = rows[0].split(None, 5)
    assert cols[0] == str(os.getuid())
    assert cols[1] == "echo"
    assert cols[3] == str(os.getpid())
    assert cols[4] == "0"
    assert cols[5] == f'"/bin/echo" "{marker}" "two words"'
    assert child.returncode == 0

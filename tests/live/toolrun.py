"""Run a bcc-style tool as a user would (``python -m tracekit_tools.NAME``) and read its
output while it runs: the tests for tcpconnect, tcplife, tcpretrans, bindsnoop and
sigsnoop/killsnoop start it, wait for its header (printed once the probes are attached),
make a known workload, wait for the rows they expect, then stop it with Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from tests.support import ROOT


def tool_env() -> dict[str, str]:
    """The environment a tool runs in: ``tracekit_tools`` is tools/ of this checkout (the
    install maps it), importable whatever editable install the interpreter has, as in
    the qemu guests (tests/vm/test_in_guest_tools.py does the same)."""
    shim = ROOT / "build" / "vm-tools-path"
    shim.mkdir(parents=True, exist_ok=True)
    link = shim / "tracekit_tools"
    if not link.is_symlink():
        try:
            link.symlink_to(ROOT / "tools")
        except FileExistsError:
            pass    # another test made it meanwhile
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(shim), str(ROOT)]), PYTHONUNBUFFERED="1")


class Tool:
    def __init__(self, name: str, *args: str) -> None:
        env = tool_env()
        self.proc = subprocess.Popen([sys.executable, "-m", f"tracekit_tools.{name}", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._q), daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    @staticmethod
    def _pump(stream: object, q: queue.Queue[str | None]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            q.put(line.rstrip("\n"))
        q.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_for(self, pred: Callable[[list[str]], bool], timeout: float = 15.0) -> list[str]:
        """Lines read so far, once ``pred(lines)`` holds (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not pred(self.lines):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; output so far: {self.lines!r}; stderr: {self.stderr!r}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"tool exited ({self.proc.wait()}); output: {self.lines!r}; "
                                     f"stderr: {self.stderr!r}")
            self.lines.append(line)
        return self.lines

    def header(self, timeout: float | None = None) -> str:
        """The first line, printed once the probes are attached.  Start-up takes well under
        a second here, but tens of seconds in an emulated guest (tests/vm)."""
        if timeout is None:
            timeout = 120.0 if os.environ.get("TRACEKIT_IN_VM") == "1" else 30.0
        return self.wait_for(lambda ls: len(ls) >= 1, timeout)[0]

    def stop(self, timeout: float = 30.0) -> list[str]:
        """Ctrl-C, then every line the tool printed; asserts a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
        assert self.proc.returncode == 0, self.stderr
        assert "Traceback" not in self.stderr, self.stderr
        return self.lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def free_port(kind: int = 1) -> int:
    """A TCP (kind=1) port free on 127.0.0.1 right now."""
    import socket

    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_loopback() -> None:
    """Loopback up: it always is on a host, but a minimal guest (tests/vm) may boot with
    lo down, and the network tools' workloads are all on 127.0.0.1."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("127.0.0.1", 9))
            return
        except OSError:
            pass
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

"""Run a command inside a real Debian kernel under qemu (TCG), with this checkout mounted.

    python -m tests.vm.runner --kernel 6.1|6.12|sid [--timeout S] [--mem 2G] -- CMD...
    python -m tests.vm.runner --kernel 6.12 --shell

The guest sees the host's / read-only (9p) under a tmpfs overlay, so it runs the host's
own python, pytest and tracekit; the checkout is shared read-write at the same path.
CMD's stdout/stderr come back live over two serial ports (ttyS1/ttyS2; ttyS0 is the
kernel console, kept in a log); its exit status comes back through a small shared
"control" directory. Why TCG and a PVH-booted vmlinux: see shared/notes/machines.md.

Stdlib only: it must work before (and regardless of whether) tracekit imports.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

if __package__ in (None, ""):  # `python tests/vm/runner.py` as well as `-m tests.vm.runner`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.vm.kernels import (
        CHECKOUT,
        SERIES,
        Kernel,
        VMSetupError,
        cache_dir,
        ensure_tools,
        log,
        prepare_kernel,
    )
else:
    from .kernels import (
        CHECKOUT,
        SERIES,
        Kernel,
        VMSetupError,
        cache_dir,
        ensure_tools,
        log,
        prepare_kernel,
    )

TIMEOUT_EXIT = 124
# Exit status when the guest died after CMD started (kernel panic/oops, qemu crash):
# not CMD's fault, not retried (CMD may have had side effects), but never success.
GUEST_DIED_EXIT = 125
# Host variables handed to CMD: the rest of the host environment stays out, so runs do
# not depend on who launched them.
PASSTHROUGH_ENV = ("TERM", "LANG", "LC_ALL", "TZ", "PYTEST_ADDOPTS", "NO_COLOR", "FORCE_COLOR",
                   "CLANG")
PASSTHROUGH_PREFIXES = ("TRACEKIT_",)


@dataclass
class VMResult:
    """What one run produced. ``returncode`` is CMD's exit status, or 124 on timeout."""

    returncode: int
    kernel: str                      # `uname -r` of the guest
    attempts: int                    # boots, including retried ones
    boot_seconds: float | None       # qemu start -> CMD start (last attempt)
    cmd_seconds: float | None        # CMD start -> CMD exit
    total_seconds: float
    timed_out: bool = False
    console: str = ""                # kernel console of the last attempt (tail)
    notes: list[str] = field(default_factory=list)
    qemu_pids: list[int] = field(default_factory=list)  # one per boot; all reaped on return


# --------------------------------------------------------------------------- process hygiene

_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill qemu's whole process group (qemu is its own session leader) and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def _child_setup() -> None:
    """In the qemu child: own process group, and die with the runner even on SIGKILL."""
    os.setsid()
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # atexit and the signal handlers still cover the ordinary exits


def _kill_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        _kill(p)


def _install_handlers() -> None:
    """Make sure no qemu outlives us: atexit plus SIGINT/SIGTERM/SIGHUP handlers."""
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_kill_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: object, previous: object = previous) -> None:
            _kill_all()
            if callable(previous):
                previous(signum, frame)  # e.g. KeyboardInterrupt for SIGINT
            else:
                raise SystemExit(128 + signum)

        signal.signal(sig, handler)


# --------------------------------------------------------------------------- guest command

def real_python() -> Path:
    """The interpreter behind any pyenv shim: the shim costs seconds per call under TCG."""
    exe = Path(sys.executable)
    if "shims" in exe.parts:
        out = subprocess.run(["pyenv", "which", "python3"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            exe = Path(out.stdout.strip())
    return exe


#: directories the guest's init replaces with an empty tmpfs
GUEST_TMPFS = ("/tmp", "/run", "/dev/shm")


def extra_shares() -> list[str]:
    """The host's venv and interpreter prefixes that would vanish in the guest (under a
    directory it mounts a fresh tmpfs on): shared at the same path instead."""
    out: list[str] = []
    for prefix in (sys.prefix, sys.base_prefix, str(real_python().resolve().parent.parent)):
        p = os.path.realpath(prefix)
        inside_checkout = p == str(CHECKOUT) or p.startswith(str(CHECKOUT) + "/")  # shared already
        if any(p == d or p.startswith(d + "/") for d in GUEST_TMPFS) and p not in out and not inside_checkout:
            out.append(p)
    return out


def guest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """CMD's environment: PATH with the real python first, PYTHONPATH, TRACEKIT_* and a few more."""
    py_dir = str(real_python().parent)
    env = {
        "PATH": f"{py_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "USER": "root",
        "PYTHONPATH": os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH")) if p),
        "PYTHONUNBUFFERED": "1",  # output goes to a serial port: show it as it comes
        "TRACEKIT_IN_VM": "1",
        # Bytecode written in the guest would land in the tmpfs overlay and be lost, so
        # every run would recompile, and pytest re-rewrite its plugins' asserts (hypothesis
        # alone: ~120 modules, ~30 s under TCG). Keep the guest's pyc on the checkout instead.
        "PYTHONPYCACHEPREFIX": str(cache_dir() / "pycache"),
    }
    for k, v in os.environ.items():
        if k in PASSTHROUGH_ENV or k.startswith(PASSTHROUGH_PREFIXES):
            env[k] = v
    env.update(extra or {})
    return env


def _write_job(ctl: Path, kernel: Kernel, cmd: Sequence[str], cwd: Path,
               env: Mapping[str, str], shell: bool) -> None:
    job = {
        "TK_CHECKOUT": str(CHECKOUT),
        "TK_KCONFIG": str(kernel.config),
        "TK_KMODULES": str(kernel.modules_dir.resolve()),
        "TK_SHELL": "1" if shell else "0",
        "TK_PYCACHE": str(cache_dir() / "pycache"),
        "TK_EXTRA": " ".join(extra_shares()),
    }
    (ctl / "job").write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in job.items()))
    envs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    if shell:
        argv = "/bin/bash -i" if Path("/bin/bash").exists() else "/bin/sh -i"
    else:
        argv = " ".join(shlex.quote(a) for a in cmd)
    (ctl / "cmd.sh").write_text(
        f"cd {shlex.quote(str(cwd))} || exit 126\nexec /usr/bin/env -i {envs} {argv}\n")


# --------------------------------------------------------------------------- one boot

class _Pump(threading.Thread):
    """Copy one serial port (a unix socket qemu connects to) to a host stream, live."""

    def __init__(self, listener: socket.socket, sink: BinaryIO | None,
                 on_line: Callable[[bytes], None] | None = None) -> None:
        super().__init__(daemon=True)
        self.listener, self.sink, self.on_line = listener, sink, on_line
        self.buf = bytearray()

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        pending = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                if self.sink is not None:
                    self.sink.write(data)
                    self.sink.flush()
                else:
                    self.buf += data
                    if len(self.buf) > 1 << 20:  # keep the console tail only
                        del self.buf[: len(self.buf) - (1 << 19)]
                if self.on_line is not None:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self.on_line(line)


def _listen(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    return s


def qemu_argv(kernel: Kernel, ctl: Path, sockets: Sequence[Path], *, mem: str, smp: int,
              shell: bool, append: str = "") -> list[str]:
    # TRACEKIT_VM_CPU: for experiments only; "max" measured fastest for Python under TCG.
    cpu = os.environ.get("TRACEKIT_VM_CPU", "max")
    # oops=panic + panic=-1: a guest oops ends the run at once instead of hanging to the
    # timeout. mitigations=off: page-table isolation under TCG makes syscalls much slower.
    cmdline = f"console=ttyS0 panic=-1 oops=panic quiet mitigations=off {append}".strip()
    argv = [
        "qemu-system-x86_64",
        "-accel", "tcg,thread=multi", "-cpu", cpu, "-smp", str(smp), "-m", mem,
        "-nographic", "-no-reboot", "-nodefaults", "-vga", "none", "-display", "none",
        "-kernel", str(kernel.vmlinux), "-initrd", str(kernel.initramfs),
        "-append", cmdline,
        "-device", "virtio-rng-pci",
    ]
    pycache = cache_dir() / "pycache"
    pycache.mkdir(parents=True, exist_ok=True)
    shares = [("hostroot", "/", True), ("checkout", str(CHECKOUT), False),
              ("ctl", str(ctl), False), ("pycache", str(pycache), False)]
    shares += [(f"extra{i}", p, True) for i, p in enumerate(extra_shares())]
    for tag, path, ro in shares:
        argv += ["-fsdev", f"local,id={tag},path={path},security_model=none,multidevs=remap"
                 + (",readonly=on" if ro else ""),
                 "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]
    names = ("console", "out", "err")
    for name, sock in zip(names, sockets):
        if name == "console" and shell:
            argv += ["-chardev", "stdio,id=console,signal=off"]
        else:
            argv += ["-chardev", f"socket,id={name},path={sock}"]
        argv += ["-serial", f"chardev:{name}"]
    return argv


def _boot_once(kernel: Kernel, cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str],
               deadline: float, mem: str, smp: int, shell: bool,
               stdout: BinaryIO | None, stderr: BinaryIO | None, verbose: bool,
               append: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tracekit-vm-") as tmp:
        tmpd = Path(tmp)
        ctl = tmpd / "ctl"
        ctl.mkdir()
        _write_job(ctl, kernel, cmd, cwd, env, shell)
        socks = [tmpd / f"{n}.sock" for n in ("console", "out", "err")]
        listeners = [_listen(s) for s in socks]
        t0 = time.monotonic()
        marks: dict[str, float] = {}

        def on_console(line: bytes) -> None:
            if b"TRACEKIT-VM: cmd-start" in line:
                marks.setdefault("start", time.monotonic())
            elif b"TRACEKIT-VM: cmd-exit" in line:
                marks.setdefault("exit", time.monotonic())
            if verbose:
                sys.stderr.buffer.write(b"[console] " + line + b"\n")
                sys.stderr.flush()

        pumps = [
            _Pump(listeners[0], None, on_console),
            _Pump(listeners[1], stdout if stdout is not None else sys.stdout.buffer),
            _Pump(listeners[2], stderr if stderr is not None else sys.stderr.buffer),
        ]
        if shell:
            pumps = pumps[1:]
        for p in pumps:
            p.start()
        argv = qemu_argv(kernel, ctl, socks, mem=mem, smp=smp, shell=shell, append=append)
        proc = subprocess.Popen(
            argv, preexec_fn=_child_setup,
            stdin=None if shell else subprocess.DEVNULL,
            stdout=None if shell else subprocess.PIPE, stderr=subprocess.STDOUT)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        timed_out = False
        try:
            while True:
                try:
                    proc.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        timed_out = True
                        break
        finally:
            _kill(proc)
            for sock in listeners:
                sock.close()
        qemu_out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        for p in pumps:
            p.join(timeout=5)
        end = time.monotonic()
        rc_file = ctl / "rc"
        rc = int(rc_file.read_text()) if rc_file.exists() else None
        started = (ctl / "started").exists() or "start" in marks
        console = pumps[0].buf.decode(errors="replace") if not shell else ""
        return {
            "rc": rc, "started": started, "timed_out": timed_out,
            "boot": (marks["start"] - t0) if "start" in marks else None,
            "cmd": (marks.get("exit", end) - marks["start"]) if "start" in marks else None,
            "console": console[-8000:], "qemu": qemu_out[-4000:], "qemu_rc": proc.returncode,
            "pid": proc.pid,
        }


# --------------------------------------------------------------------------- public API

def run(
    cmd: Sequence[str],
    kernel: str | Kernel = "6.1",
    *,
    timeout: float = 900.0,
    mem: str = "2G",
    smp: int = 2,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
    retries: int = 2,
    shell: bool = False,
    verbose: bool = False,
    append: str = "",
) -> VMResult:
    """Boot ``kernel`` ("6.1", "6.12", "sid" or a prepared Kernel) and run ``cmd`` in the checkout.

    ``stdout``/``stderr`` are binary streams receiving CMD's output as it comes (default:
    this process's). ``timeout`` covers everything after the kernel is prepared, retries
    included; on expiry qemu is killed and ``returncode`` is 124. A boot that dies before
    CMD starts is retried up to ``retries`` times (TCG occasionally oopses while booting).
    """
    _install_handlers()
    t_start = time.monotonic()
    k = kernel if isinstance(kernel, Kernel) else prepare_kernel(kernel)
    ensure_tools()
    deadline = time.monotonic() + timeout
    work = Path(cwd) if cwd is not None else Path.cwd()
    if not work.resolve().is_relative_to(CHECKOUT) and not shell:
        # Only the checkout is writable and guaranteed identical inside; say so early.
        log(f"note: cwd {work} is outside the checkout; it is visible read-only in the guest")
    full_env = guest_env(env)
    notes: list[str] = []
    pids: list[int] = []
    attempt = 0
    while True:
        attempt += 1
        r = _boot_once(k, cmd, cwd=work.resolve(), env=full_env, deadline=deadline, mem=mem,
                       smp=smp, shell=shell, stdout=stdout, stderr=stderr, verbose=verbose,
                       append=append)
        pids.append(r["pid"])
        total = time.monotonic() - t_start
        if r["timed_out"]:
            msg = (f"timeout: {k.release} run exceeded {timeout:.0f}s "
                   f"({'while CMD ran' if r['started'] else 'before CMD started'}); qemu killed")
            log(msg)
            notes.append(msg)
            return VMResult(TIMEOUT_EXIT, k.release, attempt, r["boot"], r["cmd"], total, True,
                            r["console"], notes, pids)
        if r["rc"] is not None:
            return VMResult(r["rc"], k.release, attempt, r["boot"], r["cmd"], total, False,
                            r["console"], notes, pids)
        if r["started"]:
            msg = (f"guest {k.release} died while CMD ran (qemu exit {r['qemu_rc']}); "
                   f"console tail:\n{_tail(r['console'])}{r['qemu']}")
            log(msg)
            notes.append(msg)
            return VMResult(GUEST_DIED_EXIT, k.release, attempt, r["boot"], r["cmd"], total,
                            False, r["console"], notes, pids)
        msg = (f"boot {attempt} of {k.release} died before CMD started (qemu exit {r['qemu_rc']})")
        if attempt > retries:
            log(f"{msg}; giving up. console tail:\n{_tail(r['console'])}{r['qemu']}")
            notes.append(msg)
            return VMResult(GUEST_DIED_EXIT, k.release, attempt, None, None, total, False,
                            r["console"], notes, pids)
        log(f"{msg}; retrying. console tail:\n{_tail(r['console'], 15)}")
        notes.append(msg)


def _tail(text: str, n: int = 40) -> str:
    """The console's last lines, starting at the first oops/panic line if there is one."""
    lines = text.rstrip().splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in ("Oops", "BUG:", "Kernel panic", "general protection", "TRACEKIT-VM: init failed")):
            lines = lines[max(0, i - 3):]
            break
    lines = lines[:n] if len(lines) > n else lines
    return "".join(f"    {line}\n" for line in lines)


def parse_timeout(text: str) -> float:
    """Seconds, or with an s/m/h suffix."""
    mult = {"s": 1, "m": 60, "h": 3600}.get(text[-1:].lower())
    return float(text[:-1]) * mult if mult else float(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.vm.runner",
        description="Run CMD inside a Debian kernel under qemu with this checkout mounted.")
    ap.add_argument("--kernel", choices=sorted(SERIES), default="6.1")
    ap.add_argument("--timeout", type=parse_timeout, default=900.0, help="seconds (or 10m); default 900")
    ap.add_argument("--mem", default="2G")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--retries", type=int, default=2, help="re-boots after a boot that died early")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra guest environment")
    ap.add_argument("--shell", action="store_true", help="interactive shell on the console instead of CMD")
    ap.add_argument("--prepare-only", action="store_true", help="fetch and prepare the kernel, then exit")
    ap.add_argument("--append", default="", help="extra guest kernel command line")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the guest kernel console")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD...")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    try:
        if args.prepare_only:
            k = prepare_kernel(args.kernel)
            print(f"{k.series}: {k.package} ({k.release}) in {k.root.parent}")
            return 0
        if not cmd and not args.shell:
            ap.error("give a command after --, or --shell")
        env = dict(e.split("=", 1) for e in args.env)
        res = run(cmd, args.kernel, timeout=args.timeout, mem=args.mem, smp=args.smp, env=env,
                  retries=args.retries, shell=args.shell, verbose=args.verbose,
                  append=args.append)
    except VMSetupError as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; qemu killed")
        return 130
    boot = f"{res.boot_seconds:.1f}s" if res.boot_seconds is not None else "-"
    cmd_t = f"{res.cmd_seconds:.1f}s" if res.cmd_seconds is not None else "-"
    log(f"{res.kernel}: exit {res.returncode} (boot {boot}, cmd {cmd_t}, total {res.total_seconds:.1f}s"
        f"{f', {res.attempts} boots' if res.attempts > 1 else ''})")
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Faults leave nothing behind, and errors say the truth (issue 10, items 5 and 7), live.

Every scenario runs in a forked child, so that limits, lost privileges and SIGKILL hit a
real process while the test process stays intact:

* fd exhaustion at every syscall point: RLIMIT_NOFILE is lowered so that exactly k more
  fds can be opened, for k = 0, 1, 2, ... until a whole open/load/attach/read cycle fits.
  Each k makes the next fd-creating step fail (BTF load, map create, global-data mmap,
  program load, tracefs read, perf_event_open, link create, ring/perf buffer mmap, epoll):
  every failure must be a FileDescriptorLimitError naming RLIMIT_NOFILE and its value, and
  after close() the child's open fds must be exactly those it had before.
* ENOMEM from a memory cgroup too small for a map: a MemoryLimitError naming the cgroup.
* without privileges (setresuid to nobody, or root with CAP_PERFMON/CAP_SYS_ADMIN dropped
  by capset): the message names the missing privilege once; ``tracekit features`` fails.
* kill -9 during load and during attach: after the next start, no program, map or link of
  the dead process exists and no tracefs uprobe event of its pid remains.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import random
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import tracekit
from tests.support import need, open_fds, prebuilt, require_live
from tracekit.errors import (
    FileDescriptorLimitError,
    MemoryLimitError,
    PermissionDeniedError,
    ResourceLimitError,
    TracekitError,
)
from tracekit.hooks import kprobe, uprobe
from tracekit.kernel.syscalls import bpf as _bpf
from tracekit.kernel.syscalls import fs

pytestmark = pytest.mark.live

NOBODY = 65534
OUR_PROGS = {"tk_fault_tp", "tk_fault_up"}
OUR_MAPS = {"tk_fault_ring", "tk_fault_perf", "tk_fault_hits"}


@pytest.fixture(scope="module")
def faults_obj() -> bytes:
    require_live()
    with open(prebuilt("faults.bpf.c"), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def target() -> tuple[str, int]:
    """A native test binary and the file offset of its tk_uprobe_target function."""
    from tests.live.test_attach_probes import target_binary

    require_live()
    path = target_binary()
    return path, uprobe.symbol_offset(path, "tk_uprobe_target")


# --- running code in a child ------------------------------------------------------------------


def in_child(fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Run ``fn`` in a forked child; return what it returned (JSON), re-raise what it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 0
        try:
            os.close(r)
            try:
                out = {"ok": fn()}
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out = {"raised": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()}
            data = json.dumps(out).encode()
            while data:
                data = data[os.write(w, data):]
        except BaseException:  # noqa: BLE001
            status = 3
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"child did not finish within {timeout}s")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    res = json.loads(b"".join(chunks) or b'{"raised": "child died without a word"}')
    if "raised" in res:
        pytest.fail(f"child raised {res['raised']}\n{res.get('tb', '')}")
    return res["ok"]


def drop_to_nobody() -> None:
    """setresuid/gid to nobody: the kernel clears every capability with the uids."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_caps(*caps: int) -> None:
    """Remove ``caps`` from this (root) process's effective set with capset(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words
    data = (_CapData * 2)()
    assert libc.capget(ctypes.byref(hdr), data) == 0, os.strerror(ctypes.get_errno())
    for c in caps:
        data[c // 32].effective &= ~(1 << (c % 32))
    assert libc.capset(ctypes.byref(hdr), data) == 0, os.strerror(ctypes.get_errno())


def preimport() -> None:
    """Import, while the interpreter's files are still readable, what a child may import
    lazily after it gave up root (this Python lives under /root)."""
    import argparse  # noqa: F401
    import gettext  # noqa: F401
    import hashlib  # noqa: F401
    import locale  # noqa: F401
    import shutil  # noqa: F401
    import subprocess  # noqa: F401
    import tempfile  # noqa: F401

    import tracekit.cli
    import tracekit.events.perfbuf
    import tracekit.events.ringbuf
    import tracekit.kernel.features
    import tracekit.kernel.syscalls.diagnose  # noqa: F401


# --- kernel objects by name -----------------------------------------------------------------


def _ids(next_id: Callable[[int], int | None]) -> list[int]:
    out, cur = [], 0
    while (nxt := next_id(cur)) is not None:
        out.append(nxt)
        cur = nxt
    return out


def our_kernel_objects(since_prog: int = 0, since_map: int = 0) -> dict[str, list[str]]:
    """Programs, maps and links of the fault-test object alive in the kernel (any process)."""
    found: dict[str, list[str]] = {"progs": [], "maps": [], "links": []}
    prog_ids = set()
    for pid_ in _ids(_bpf.prog_get_next_id):
        if pid_ <= since_prog:
            continue
        try:
            with _bpf.prog_get_fd_by_id(pid_) as fd:
                name = _bpf.prog_info(fd.fd).name
        except TracekitError:
            continue  # freed meanwhile
        if name in OUR_PROGS:
            found["progs"].append(f"{name}#{pid_}")
            prog_ids.add(pid_)
    for mid in _ids(_bpf.map_get_next_id):
        if mid <= since_map:
            continue
        try:
            with _bpf.map_get_fd_by_id(mid) as fd:
                name = _bpf.map_info(fd.fd).name
        except TracekitError:
            continue
        if name in OUR_MAPS:
            found["maps"].append(f"{name}#{mid}")
    for lid in _ids(_bpf.link_get_next_id):
        try:
            with _bpf.link_get_fd_by_id(lid) as fd:
                info = _bpf.link_info(fd.fd)
        except TracekitError:
            continue
        if info.prog_id in prog_ids:
            found["links"].append(f"link#{lid}")
    return found


def wait_gone(since_prog: int, since_map: int, timeout: float = 5.0) -> dict[str, list[str]]:
    """The kernel frees a dead process's objects asynchronously (RCU, workqueues): poll."""
    deadline = time.monotonic() + timeout
    while True:
        left = our_kernel_objects(since_prog, since_map)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def last_id(next_id: Callable[[int], int | None]) -> int:
    ids = _ids(next_id)
    return ids[-1] if ids else 0


# --- fd exhaustion at every step ------------------------------------------------------------

#: op prefixes of the failing syscall -> the step it is
STEPS = {
    "load BTF": "btf load",
    "create map": "map create",
    "mmap map": "global data mmap",
    "load program": "prog load",
    "read tracepoint id": "tracefs open",
    "perf_event_open": "perf_event_open",
    "create BPF link": "link create",
    "ring buffer": "ringbuf mmap",
    "mmap perf buffer": "perfbuf mmap",
    "perf buffer": "epoll",
    "open /sys/kernel/tracing/": "tracefs open",
    "read /sys/kernel/tracing/": "tracefs open",
    "read /sys/": "sysfs open",
}


def _step(op: str) -> str:
    for prefix, step in STEPS.items():
        if op.startswith(prefix):
            return step
    return op


def _limit_for(k: int) -> int:
    """An RLIMIT_NOFILE that lets exactly ``k`` more fds be opened: EMFILE comes when the
    lowest free fd number reaches the limit, so it is the k-th free number."""
    used = open_fds()
    free = (n for n in range(1 << 20) if n not in used)
    for _ in range(k):
        next(free)
    return next(free)


def _fd_sweep(data: bytes, path: str, off: int, legacy: bool) -> list[dict[str, Any]]:
    """In the child: the cycle under ever larger fd limits, until it completes."""
    me = os.getpid()

    def cycle() -> None:
        obj = tracekit.open(data, name="faults")
        link = None
        try:
            obj.load()
            obj.attach()  # tracepoint: tracefs id read, perf_event_open, link create
            if legacy:  # tracefs uprobe_events write, tracepoint id read, perf event, link
                link = uprobe.attach_uprobe(obj.programs["tk_fault_up"].fd, path, offset=off, pid=me,
                                            legacy=True)
            else:  # the uprobe PMU: sysfs reads, perf_event_open, link create
                obj.programs["tk_fault_up"].attach(f"{path}:{off:#x}", pid=me)
            obj.reader("tk_fault_ring", raw=True)  # two mmaps (each dups the map fd)
            obj.reader("tk_fault_perf", raw=True)  # epoll, then per CPU perf_event_open + mmap
        finally:
            if link is not None:
                link.close()
            obj.close()

    cycle()  # warm: lazy imports, kernel BTF, feature probes, tracefs mount point
    base = open_fds()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    out: list[dict[str, Any]] = []
    for k in range(200):
        limit = _limit_for(k)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        err: BaseException | None = None
        try:
            cycle()
        except BaseException as e:  # noqa: BLE001 - every outcome is recorded
            err = e
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        now = open_fds()
        out.append({
            "k": k, "limit": limit,
            "cls": type(err).__name__ if err else None,
            "fd_limit": isinstance(err, FileDescriptorLimitError),
            "verifier": type(err).__name__ == "VerifierError",
            "op": getattr(err, "op", "") if err else "",
            "msg": str(err) if err else "",
            "leaked": sorted(now - base), "closed_too_many": sorted(base - now),
            "ours_in_tracefs": [n for n in kprobe.list_legacy_events("uprobe") if n.startswith(f"tk_{me}_")],
        })
        if err is None:
            break
    return out


@pytest.mark.parametrize("legacy", [False, True], ids=["uprobe_pmu", "uprobe_events"])
def test_fd_exhaustion_at_every_step_is_a_resource_error_and_leaks_nothing(faults_obj: bytes, target: tuple[str, int],
                                                                           legacy: bool) -> None:
    path, off = target
    if legacy:
        need("uprobe_events", os.path.exists(os.path.join(fs.tracefs_path(), "uprobe_events")),
             "no tracefs uprobe_events")
    t0 = time.monotonic()
    rows = in_child(lambda: _fd_sweep(faults_obj, path, off, legacy), timeout=120)
    took = time.monotonic() - t0
    failures = rows[:-1]
    assert rows[-1]["cls"] is None, f"the cycle never fitted: {rows[-1]}"
    assert len(failures) >= 10, rows
    for row in failures:
        assert row["fd_limit"], f"k={row['k']}: {row['cls']}: {row['msg']}"
        assert not row["verifier"]
        # the message names the limit with its value and how many fds are open
        assert f"RLIMIT_NOFILE soft limit {row['limit']}" in row["msg"], row["msg"]
        assert " open" in row["msg"] and "ulimit -n" in row["msg"], row["msg"]
        assert row["msg"].count("RLIMIT_NOFILE") == 1, row["msg"]
    for row in rows:
        assert row["leaked"] == [] and row["closed_too_many"] == [], row
        # and nothing of ours stays in uprobe_events after close()
        assert row["ours_in_tracefs"] == [], row
    steps = [_step(r["op"]) for r in failures]
    want = {"btf load", "map create", "global data mmap", "prog load", "tracefs open", "sysfs open",
            "perf_event_open", "link create", "ringbuf mmap", "perfbuf mmap", "epoll"}
    assert want <= set(steps), f"steps hit: {steps}"
    # the pipeline order: each step fails in turn as the limit grows
    assert steps[0] == "btf load"
    first = {s: steps.index(s) for s in want}
    assert first["map create"] < first["prog load"] < first["link create"] < first["ringbuf mmap"] \
        < first["epoll"] < first["perfbuf mmap"], steps
    assert took < 60


def test_emfile_at_program_load_is_not_a_verifier_error(faults_obj: bytes) -> None:
    """The reported bug: EMFILE in BPF_PROG_LOAD became 'verifier rejected program'."""

    def child() -> dict[str, Any]:
        obj = tracekit.open(faults_obj, name="faults")
        obj.programs["tk_fault_up"].autoload = False
        obj.load()  # warm
        obj.close()
        obj = tracekit.open(faults_obj, name="faults")
        obj.programs["tk_fault_up"].autoload = False
        # BTF + 4 maps + the .bss mmap (a dup'd fd) fit; the program's fd does not
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (_limit_for(6), hard))
        try:
            obj.load()
            return {"cls": None}
        except Exception as e:  # noqa: BLE001
            return {"cls": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "msg": str(e),
                    "errno": getattr(e, "errno", None), "op": getattr(e, "op", ""),
                    "resource": getattr(e, "resource", ""), "limit": getattr(e, "limit", "")}
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            obj.close()

    got = in_child(child)
    assert got["cls"] == "FileDescriptorLimitError", got
    assert "ResourceLimitError" in got["mro"] and "SyscallError" in got["mro"]
    assert "VerifierError" not in got["mro"] and "verifier" not in got["msg"].lower(), got["msg"]
    assert got["errno"] == errno.EMFILE and got["op"] == "load program 'tk_fault_tp'"
    assert got["resource"] == "file descriptors"
    assert got["limit"].startswith("RLIMIT_NOFILE soft limit ")
    assert "out of file descriptors: " in got["msg"] and "raise it with ulimit -n" in got["msg"]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def test_feature_probes_out_of_fds_raise_and_do_not_cache_a_no() -> None:
    require_live()

    def child() -> dict[str, Any]:
        from tracekit.kernel import features

        truth = {n: getattr(features, n)() for n in ("btf_float", "bpf_cookie")}
        truth["ringbuf"] = features.map_type("ringbuf")
        features.reset()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (_limit_for(0), hard))
        raised = {}
        try:
            for n, fn in (("btf_float", features.btf_float), ("bpf_cookie", features.bpf_cookie),
                          ("ringbuf", lambda: features.map_type("ringbuf"))):
                try:
                    raised[n] = f"answered {fn()}"
                except FileDescriptorLimitError as e:
                    raised[n] = str(e)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        again = {n: getattr(features, n)() for n in ("btf_float", "bpf_cookie")}
        again["ringbuf"] = features.map_type("ringbuf")
        return {"truth": truth, "raised": raised, "again": again}

    got = in_child(child)
    for n, msg in got["raised"].items():
        assert "(kernel feature probe)" in msg and "RLIMIT_NOFILE soft limit" in msg, (n, msg)
    assert got["again"] == got["truth"] and all(got["truth"].values()), got


def test_emfile_opening_an_object_file_is_not_a_parse_error() -> None:
    path = prebuilt("faults.bpf.c")

    def child() -> dict[str, Any]:
        tracekit.open(path).close()  # warm: modules imported on first use need fds too
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (_limit_for(0), hard))
        try:
            tracekit.open(path)
            return {"cls": None}
        except Exception as e:  # noqa: BLE001
            return {"cls": type(e).__name__, "msg": str(e), "mro": [c.__name__ for c in type(e).__mro__]}
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    got = in_child(child)
    assert got["cls"] == "FileDescriptorLimitError" and "ParseError" not in got["mro"], got
    assert "RLIMIT_NOFILE" in got["msg"] and "ulimit -n" in got["msg"]


def _memcg_v1_dir() -> str | None:
    """Our memory cgroup (v1) directory, if this host has one we may create children in."""
    try:
        lines = _read("/proc/self/cgroup").splitlines()
        mounts = _read("/proc/self/mounts").splitlines()
    except OSError:
        return None
    path = next((ln.split(":", 2)[2] for ln in lines if "memory" in ln.split(":")[1].split(",")), None)
    point = next((m.split()[1] for m in mounts if m.split()[2] == "cgroup" and "memory" in m.split()[3].split(",")),
                 None)
    if path is None or point is None:
        return None
    d = point + path.rstrip("/")
    return d if os.access(d, os.W_OK) else None


def _memcg_v2_dir() -> str | None:
    try:
        lines = _read("/proc/self/cgroup").splitlines()
        mounts = _read("/proc/self/mounts").splitlines()
    except OSError:
        return None
    path = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
    point = next((m.split()[1] for m in mounts if m.split()[2] == "cgroup2"), None)
    if path is None or point is None:
        return None
    d = point + path.rstrip("/")
    ctrl = os.path.join(d, "cgroup.subtree_control")
    try:
        if "memory" not in _read(ctrl).split():
            return None
    except OSError:
        return None
    return d if os.access(d, os.W_OK) else None


def test_enomem_from_a_small_memory_cgroup_names_the_cgroup() -> None:
    """A 256 MiB array map in a 64 MiB memory cgroup: ENOMEM (charged to the memcg since
    5.11) is a MemoryLimitError naming the cgroup and its limit, not a map definition error."""
    require_live()
    v1, v2 = _memcg_v1_dir(), _memcg_v2_dir()
    if v1 is None and v2 is None:
        pytest.skip("no writable memory cgroup to create a small one in")
    parent = v1 or v2
    assert parent is not None
    sub = os.path.join(parent, f"tk-faults-{os.getpid()}")
    os.mkdir(sub)
    try:
        limit = 64 << 20
        if v1:
            _write(os.path.join(sub, "memory.limit_in_bytes"), str(limit))
        else:
            _write(os.path.join(sub, "memory.max"), str(limit))

        def child() -> dict[str, Any]:
            _write(os.path.join(sub, "cgroup.procs"), str(os.getpid()))
            from tracekit.kernel.maps import Map
            from tracekit.uapi import MapType

            try:
                Map.create(MapType.ARRAY, 4, 4096, 65536, name="tk_fault_big").close()  # 256 MiB
                return {"cls": None}
            except Exception as e:  # noqa: BLE001
                return {"cls": type(e).__name__, "msg": str(e), "errno": getattr(e, "errno", None),
                        "limit": getattr(e, "limit", ""), "mro": [c.__name__ for c in type(e).__mro__]}

        got = in_child(child)
    finally:
        for _ in range(50):  # the child's charges go away with it, asynchronously
            try:
                os.rmdir(sub)
                break
            except OSError:
                time.sleep(0.1)
    assert got["cls"] == "MemoryLimitError", got
    assert got["errno"] == errno.ENOMEM and "ResourceLimitError" in got["mro"]
    assert os.path.basename(sub) in got["msg"] and str(limit) in got["msg"], got["msg"]
    assert "memory cgroup" in got["msg"] and "max_entries" in got["msg"], got["msg"]
    assert MemoryLimitError.__mro__[1] is ResourceLimitError


def test_e2big_names_the_size_limit() -> None:
    """Too large for the kernel: a SizeLimitError naming the limit, not a verifier/BTF error."""
    require_live()
    from tracekit.errors import SizeLimitError
    from tracekit.obj.insn import encode, exit_insn, mov64_imm
    from tracekit.uapi import ProgType

    # 1,000,001 instructions: refused before the verifier runs (BPF_COMPLEXITY_LIMIT_INSNS)
    insns = encode([mov64_imm(0, 0)] * 1_000_000 + [exit_insn()])
    with pytest.raises(SizeLimitError) as ei:
        _bpf.load_program(ProgType.SOCKET_FILTER, insns, name="tk_fault_big")
    assert ei.value.errno == errno.E2BIG and "1,000,000 processed instructions" in str(ei.value)
    assert "verifier rejected" not in str(ei.value)
    # a BTF blob above BTF_MAX_SIZE (16 MiB)
    with pytest.raises(SizeLimitError) as ei:
        _bpf.load_btf(b"\x9f\xeb\x01\x00" + bytes((16 << 20) + 16))
    assert ei.value.errno == errno.E2BIG and "BTF_MAX_SIZE" in str(ei.value), str(ei.value)


# --- without privileges ---------------------------------------------------------------------


def _once(msg: str, needle: str) -> bool:
    return msg.count(needle) == 1


def test_nobody_gets_the_missing_privilege_named_once(faults_obj: bytes, target: tuple[str, int]) -> None:
    require_live()
    tracefs = fs.tracefs_path()  # mounted (as root) before the child drops privileges
    path, off = target

    def child() -> dict[str, Any]:
        preimport()
        loaded = tracekit.open(faults_obj, name="faults").load()  # as root: the fds are inherited
        opened = tracekit.open(faults_obj, name="faults")
        drop_to_nobody()
        fs._tracefs_cache = None  # forget what root found: look again, as nobody
        out: dict[str, Any] = {}
        calls: dict[str, Callable[[], object]] = {
            "load": opened.load,
            "tracefs": fs.tracefs_path,
            "tracepoint_attach": lambda: loaded.programs["tk_fault_tp"].attach(),
            "uprobe_attach": lambda: loaded.programs["tk_fault_up"].attach(f"{path}:{off:#x}"),
            "features": lambda: tracekit.features.probe_all(),
        }
        for key, fn in calls.items():
            try:
                fn()
                out[key] = {"cls": None}
            except Exception as e:  # noqa: BLE001
                out[key] = {"cls": type(e).__name__, "msg": str(e),
                            "perm": isinstance(e, PermissionDeniedError)}
        err = io.StringIO()
        import contextlib

        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as so:
            rc = tracekit.cli.main(["features"])
        out["cli"] = {"rc": rc, "stderr": err.getvalue(), "stdout": so.getvalue()}
        return out

    got = in_child(child)
    for key in ("load", "tracefs", "tracepoint_attach", "uprobe_attach", "features"):
        assert got[key]["perm"], f"{key}: {got[key]}"
        assert _once(got[key]["msg"], f"uid {NOBODY}"), got[key]["msg"]
        assert got[key]["msg"].count("run as root") == 1, got[key]["msg"]
    # which privilege: CAP_BPF for BPF objects, CAP_PERFMON for perf events, and for tracefs
    # that it is mounted but not readable (the old message said "not mounted")
    assert _once(got["load"]["msg"], "needs CAP_BPF"), got["load"]["msg"]
    assert _once(got["features"]["msg"], "needs CAP_BPF"), got["features"]["msg"]
    for key in ("tracefs", "tracepoint_attach"):
        assert _once(got[key]["msg"], f"tracefs at {tracefs} is mounted but not readable by uid {NOBODY}"), \
            got[key]["msg"]
        assert "not mounted" not in got[key]["msg"].replace("is mounted but", "")
    assert _once(got["uprobe_attach"]["msg"], "needs CAP_PERFMON"), got["uprobe_attach"]["msg"]
    # tracekit features: says so on stderr, prints no table of "no", exits non-zero
    cli = got["cli"]
    assert cli["rc"] != 0, cli
    assert cli["stdout"] == "", cli
    assert cli["stderr"].startswith("tracekit features: ") and _once(cli["stderr"], "needs CAP_BPF"), cli


def test_a_tool_run_by_nobody_names_the_privilege_once() -> None:
    require_live()

    def child() -> dict[str, Any]:
        import contextlib

        import anyio._backends._asyncio  # noqa: F401 - imported on first use

        import tracekit_tools.opensnoop as tool  # type: ignore[import-not-found,unused-ignore]

        preimport()
        drop_to_nobody()
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = tool.main(["-d", "0.2"])
        return {"rc": rc, "stderr": err.getvalue()}

    got = in_child(child)
    assert got["rc"] == 1, got
    assert _once(got["stderr"], "needs CAP_BPF") and _once(got["stderr"], "run as root"), got["stderr"]
    assert "Traceback" not in got["stderr"]


def test_root_without_cap_perfmon_is_told_cap_perfmon(faults_obj: bytes) -> None:
    """Root with CAP_BPF but neither CAP_PERFMON nor CAP_SYS_ADMIN: BTF and maps load,
    the tracepoint program does not, and the message names CAP_PERFMON, not root."""
    require_live()

    def child() -> dict[str, Any]:
        preimport()
        from tracekit.kernel import features

        features.reset()
        drop_caps(38, 21)  # CAP_PERFMON, CAP_SYS_ADMIN
        obj = tracekit.open(faults_obj, name="faults")
        try:
            obj.load()
            return {"cls": None}
        except Exception as e:  # noqa: BLE001
            return {"cls": type(e).__name__, "msg": str(e), "perm": isinstance(e, PermissionDeniedError)}
        finally:
            obj.close()

    got = in_child(child)
    assert got["perm"], got
    assert _once(got["msg"], "needs CAP_PERFMON (or CAP_SYS_ADMIN)"), got["msg"]
    assert "CAP_BPF" not in got["msg"] and "runs as uid 0" in got["msg"], got["msg"]
    assert "run as root" not in got["msg"], got["msg"]  # it does: the capability is what is missing


# --- kill -9 --------------------------------------------------------------------------------


def _kill_loop(body: Callable[[int], None], kills: int, seed: int) -> list[int]:
    """Start a child running ``body(i)`` for i = 0, 1, ... (one byte to the pipe per pass),
    SIGKILL it at a random moment after a random number of passes; ``kills`` times.
    Returns the dead pids."""
    rng = random.Random(seed)
    dead = []
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                i = 0
                while True:
                    body(i)
                    os.write(w, b".")
                    i += 1
            finally:
                os._exit(1)
        os.close(w)
        want = rng.randint(1, 3)
        seen = 0
        deadline = time.monotonic() + 20
        while seen < want and time.monotonic() < deadline:
            if select.select([r], [], [], 1.0)[0]:
                got = os.read(r, 64)
                if not got:
                    break
                seen += len(got)
        time.sleep(rng.uniform(0, 0.03))  # somewhere inside the next pass
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(r)
        assert os.WIFSIGNALED(status), f"child {pid} ended by itself (status {status}) after {seen} passes"
        dead.append(pid)
    return dead


def test_kill_9_during_load_leaves_no_kernel_objects(faults_obj: bytes) -> None:
    require_live()
    since_prog, since_map = last_id(_bpf.prog_get_next_id), last_id(_bpf.map_get_next_id)

    def body(i: int) -> None:
        obj = tracekit.open(faults_obj, name="faults")
        obj.load()
        if i % 2:
            obj.close()  # and every other pass leaves it to the kill

    _kill_loop(body, kills=6, seed=10)
    left = wait_gone(since_prog, since_map)
    assert left == {"progs": [], "maps": [], "links": []}, left
    # and the next start works and cleans up after itself too
    with tracekit.open(faults_obj, name="faults") as obj:
        obj.load()
        assert our_kernel_objects(since_prog, since_map)["progs"]
    assert wait_gone(since_prog, since_map) == {"progs": [], "maps": [], "links": []}


def test_kill_9_during_attach_leaves_no_links_and_no_tracefs_events(faults_obj: bytes,
                                                                  target: tuple[str, int]) -> None:
    require_live()
    path, off = target
    need("uprobe_events", os.path.exists(os.path.join(fs.tracefs_path(), "uprobe_events")),
         "no tracefs uprobe_events")
    since_prog, since_map = last_id(_bpf.prog_get_next_id), last_id(_bpf.map_get_next_id)
    before = set(kprobe.list_legacy_events("uprobe"))
    left_behind: list[str] = []

    def body(i: int) -> None:
        obj = tracekit.open(faults_obj, name="faults")
        obj.load()
        links = obj.attach()
        me = os.getpid()
        # alternately through the uprobe PMU and through tracefs uprobe_events
        links.append(uprobe.attach_uprobe(obj.programs["tk_fault_up"].fd, path, offset=off, pid=me,
                                          legacy=bool(i % 2 == 0)))
        links.append(uprobe.attach_uprobe(obj.programs["tk_fault_up"].fd, path, offset=off, pid=me,
                                          legacy=True, retprobe=True))
        for link in links:
            link.close()
        obj.close()

    dead = _kill_loop(body, kills=6, seed=11)
    # and one kill that surely leaves an event behind: parked right after a legacy attach
    r, w = os.pipe()
    parked = os.fork()
    if parked == 0:
        try:
            os.close(r)
            obj = tracekit.open(faults_obj, name="faults")
            obj.load()
            uprobe.attach_uprobe(obj.programs["tk_fault_up"].fd, path, offset=off, pid=os.getpid(), legacy=True)
            os.write(w, b"!")
            time.sleep(60)
        finally:
            os._exit(1)
    os.close(w)
    assert select.select([r], [], [], 20)[0] and os.read(r, 1) == b"!"
    os.close(r)
    os.kill(parked, signal.SIGKILL)
    os.waitpid(parked, 0)
    dead.append(parked)
    stale = [n for n in kprobe.list_legacy_events("uprobe") if n not in before]
    assert any(n.startswith(f"tk_{parked}_") for n in stale), stale
    left_behind += [n for n in stale if any(n.startswith(f"tk_{p}_") for p in dead)]
    # BPF objects die with the fds of the dead process
    assert wait_gone(since_prog, since_map) == {"progs": [], "maps": [], "links": []}

    # the next start (a new process attaching a uprobe the default way: the PMU) sweeps
    # the tracefs events the dead ones left
    def next_start() -> list[str]:
        with tracekit.open(faults_obj, name="faults") as obj:
            obj.load()
            obj.programs["tk_fault_up"].attach(f"{path}:{off:#x}", pid=os.getpid())
        return kprobe.list_legacy_events("uprobe")

    after = in_child(next_start)
    for pid_ in dead:
        assert not [n for n in after if n.startswith(f"tk_{pid_}_")], (pid_, after)
    assert set(after) <= before | set(stale), after
    print(f"kill -9 during attach: {len(dead)} kills, {len(left_behind)} stale tracefs events swept "
          "by the next start")

"""The Object pipeline on the live kernel: globals, verifier errors, bad input, privileges, leaks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import tracekit
from tests.support import ROOT, open_fds, require_live

pytestmark = pytest.mark.live



def test_globals_round_trip(bpf_objects) -> None:
    require_live()
    path = bpf_objects("globals.bpf.c")
    with tracekit.open(path) as obj:
        assert obj.rodata.target_tgid == 0
        assert obj.rodata.greeting == "hello"
        assert obj.data.input == 7
        assert obj.bss.output == 0
        assert obj.section(".data.extra").extra_counter == 100
        obj.rodata.target_tgid = os.getpid()
        obj.rodata.greeting = "hi"
        obj.data.input = 41
        obj.load()
        # .rodata is frozen once loaded
        with pytest.raises(tracekit.TracekitError, match="frozen"):
            obj.rodata.target_tgid = 1
        assert obj.rodata.target_tgid == os.getpid()
        assert obj.rodata.greeting == "hi"
        obj.attach()
        os.getppid()  # any syscall from this process
        assert obj.bss.output == 41
        hits = obj.bss.hits
        assert hits >= 1
        # user space writes .data live; the program sees it on the next syscall
        obj.data.input = 12345
        os.getppid()
        assert obj.bss.output == 12345
        assert obj.bss.hits > hits
        assert obj.section(".data.extra").extra_counter > 100
        assert obj.bss.last_comm == Path("/proc/self/comm").read_text().strip()[:15]
    # after close, values stay readable (a snapshot) but writes are refused
    with pytest.raises(tracekit.ClosedError):
        obj.data.input = 1


def test_verifier_rejection_carries_the_log(bpf_objects) -> None:
    require_live()
    before = open_fds()
    obj = tracekit.open(bpf_objects("bad_verifier.bpf.c"))
    with pytest.raises(tracekit.VerifierError) as ei:
        obj.load()
    err = ei.value
    assert err.program == "unchecked_lookup"
    assert "invalid mem access 'map_value_or_null'" in err.log
    assert "invalid mem access" in str(err)
    assert open_fds() == before, "a failed load must not leave maps or BTF behind"
    obj.close()


def test_unknown_section_is_a_clear_error(bpf_objects) -> None:
    with pytest.raises(tracekit.SectionError, match="nosuchtype/foo"):
        tracekit.open(bpf_objects("unknown_sec.bpf.c"))


def test_malformed_elf(tmp_path) -> None:
    with pytest.raises(tracekit.ELFError):
        tracekit.open(b"\x7fELF" + b"\x02\x01\x01" + b"\0" * 20)
    with pytest.raises(tracekit.ELFError):
        tracekit.open(b"this is not an ELF file at all")
    good = (ROOT / "tracekit" / "probes" / "opensnoop.bpf.o").read_bytes()
    with pytest.raises(tracekit.ParseError):
        tracekit.open(good[: len(good) // 3])
    with pytest.raises(tracekit.ELFError, match="BPF"):
        tracekit.open("/bin/true")


def test_non_root_gets_permission_error() -> None:
    require_live()
    code = textwrap.dedent(
        """
        import os, sys
        # Import (and parse, which is pure) as root: after the drop, root's Python install
        # under /root may not be readable. Then everything that talks to the kernel runs
        # as nobody.
        import tracekit, tracekit.kernel.syscalls.bpf, tracekit.kernel.maps, tracekit.hooks.links, tracekit.kernel.btf
        import tracekit.obj.core, tracekit.events.ringbuf, tracekit.events.records
        obj = tracekit.open("opensnoop")
        os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
        try:
            obj.load()
        except tracekit.PermissionDeniedError as e:
            print("PERMISSION:", e)
            sys.exit(0)
        sys.exit(3)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PERMISSION:" in r.stdout
    assert "root" in r.stdout


def test_no_fd_leak_after_close() -> None:
    require_live()
    before = open_fds()
    for _ in range(3):
        with tracekit.open("opensnoop") as obj:
            obj.load()
            obj.attach()
            r = obj.reader()
            r.close()
    assert open_fds() == before


@pytest.mark.anyio
async def test_no_fd_leak_after_cancellation() -> None:
    require_live()
    before = open_fds()
    got = []
    with anyio.move_on_after(0.5) as scope:
        async for ev in tracekit.attach("execsnoop"):
            got.append(ev)
    assert scope.cancelled_caught
    assert open_fds() == before

    # the same with a task group cancelled from outside while the reader waits
    async def consume(task_status=anyio.TASK_STATUS_IGNORED) -> None:
        stream = tracekit.attach("opensnoop")
        task_status.started()
        async for _ in stream:
            pass

    async with anyio.create_task_group() as tg:
        await tg.start(consume)
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    assert open_fds() == before


def test_programs_autoload_and_map_sizes() -> None:
    require_live()
    with tracekit.open("opensnoop") as obj:
        names = list(obj.programs)
        for n in names[1:]:
            obj.programs[n].autoload = False
        obj.maps["events"].max_entries = 1 << 16
        obj.load()
        assert obj.programs[names[0]].loaded
        assert not any(obj.programs[n].loaded for n in names[1:])
        assert obj.maps["events"].map.max_entries == 1 << 16
        with pytest.raises(tracekit.TracekitError, match="before load"):
            obj.maps["events"].max_entries = 4096


def test_subprograms_callbacks_and_shared_code_run(bpf_objects) -> None:
    require_live()
    with tracekit.open(bpf_objects("plan_calls.bpf.c")) as obj:
        obj.rodata.scale = 5
        obj.attach()
        os.getppid()
        # bpf_loop(4, loop_cb): sum of leaf(i) = i*5 + 11 for i in 0..3 per sys_enter
        assert obj.bss.total >= 4 * 11 + 5 * (0 + 1 + 2 + 3)
        counts = obj.maps["counts"]
        keys = {int.from_bytes(k, "little") for k in counts.keys()}
        assert {1, 7} <= keys
        assert int.from_bytes(counts.lookup(1), "little") >= 1


def test_attach_kinds_auto_and_explicit(bpf_objects) -> None:
    require_live()
    with tracekit.open(bpf_objects("attach_kinds.bpf.c")) as obj:
        obj.rodata.target_tgid = os.getpid()
        links = obj.attach()  # loads, then attaches every program whose SEC() says where
        assert len(links) == 3
        assert not obj.programs["on_manual"].links
        with obj.programs["on_manual"].attach("sys_enter") as manual:
            os.getppid()
            os.getppid()
        os.getppid()  # after the explicit link is closed, on_manual no longer runs
        assert obj.bss.tp_hits == 3
        assert obj.bss.btf_hits == 3
        assert obj.data.last_syscall_id == 110
        assert obj.bss.raw_hits >= 3
        manual_hits = obj.bss.manual_hits
        assert manual_hits >= 2
        os.getppid()
        assert obj.bss.manual_hits == manual_hits
        assert manual.closed
        assert obj.bss.tp_hits == 4
    # closing the object detached everything; its globals stay readable as a snapshot
    os.getppid()
    assert obj.bss.tp_hits == 4

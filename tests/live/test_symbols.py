"""Live: profile a helper process with a perf_event program (tests/objects/profile_stacks.bpf.c)
and symbolize what the kernel recorded.

The helper (tests/objects/spin_target.c, frame pointers on) spins in ``tracekit_spin_here``
and reads /dev/zero in a second thread: its user stacks must name that function, its
kernel stacks must resolve to symbols that /proc/kallsyms really has, build-id stacks must
lead to the same function through the binary's build id, and a process that exited is
reported as such.
"""

from __future__ import annotations

import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import tracekit
from tests.support import prebuilt, require_live
from tests.unit.test_symbols import SPIN_FUNC, spawn, spin_target
from tracekit.kernel.syscalls.bpf import prog_info
from tracekit.symbols import ElfSymbols, KernelSymbols, StackTraces, Symbolizer, fold, format_block

pytestmark = pytest.mark.live


@dataclass
class Sample:
    pid: int
    user_stack_id: int
    kernel_stack_id: int
    build_id_stack_id: int
    comm: str
    count: int


@dataclass
class Profile:
    obj: Any
    pid: int
    binary: str
    samples: list[Sample]
    symbolizer: Symbolizer
    stacks: StackTraces
    build_id_stacks: StackTraces


@pytest.fixture(scope="module")
def profile() -> Iterator[Profile]:
    require_live()
    binary = spin_target()
    p, _, _ = spawn(binary, "read")
    obj = tracekit.open(prebuilt("profile_stacks.bpf.c"))
    try:
        obj.rodata.target_tgid = p.pid
        obj.load()
        sym = Symbolizer()
        sym.watch(p.pid)  # its mappings, read while it runs
        link = obj.programs["do_sample"].attach_perf_event(sample_freq=499)
        time.sleep(1.5)
        link.close()
        out = []
        for k, v in obj.maps["counts"].items():
            pid, us, ks, bs = struct.unpack_from("<Iiii", k)
            out.append(Sample(pid, us, ks, bs, bytes(k)[16:32].split(b"\0")[0].decode(), int.from_bytes(v, "little")))
        p.kill()
        p.wait()
        yield Profile(obj, p.pid, binary, out, sym, StackTraces(obj.maps["stacks"], sym),
                      StackTraces(obj.maps["build_id_stacks"], sym))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        obj.close()


def kallsyms_names() -> set[str]:
    with open("/proc/kallsyms") as f:
        return {line.split()[2] for line in f if len(line.split()) >= 3}


def test_user_stacks_name_the_spinning_function(profile: Profile) -> None:
    total = sum(s.count for s in profile.samples)
    assert total > 100 and {s.pid for s in profile.samples} == {profile.pid}
    hits = 0
    for s in profile.samples:
        frames = profile.stacks.user(s.user_stack_id, s.pid)
        if frames and frames[0].name == SPIN_FUNC:
            hits += s.count
            # frame pointers: the caller is main, in the same file, at a plausible offset
            assert frames[0].module == profile.binary and frames[1].name == "main"
            assert frames[0].format().startswith(f"{SPIN_FUNC}+0x")
            assert frames[0].format().endswith(f" [{os.path.basename(profile.binary)}]")
    assert hits > 0.25 * total, (hits, total)


def test_kernel_stacks_resolve_to_real_kernel_symbols(profile: Profile) -> None:
    names = kallsyms_names()
    seen: set[str] = set()
    missed = 0
    for s in profile.samples:
        if s.kernel_stack_id < 0:
            # -EFAULT: the sample was taken in user mode; -EEXIST: the stack hashed onto a
            # slot another stack holds (the map has no BPF_F_REUSE_STACKID), so it is missed
            assert s.kernel_stack_id in (-14, -17)
            missed += s.count if s.kernel_stack_id == -17 else 0
            continue
        frames = profile.stacks.kernel(s.kernel_stack_id)
        assert frames
        for f in frames:
            assert f.name in names and f.module == "kernel", f
            seen.add(f.name)
    # the reader thread's read(2) on /dev/zero shows up as the syscall entry and a read
    assert any("read" in n for n in seen) and any("syscall" in n.lower() for n in seen), seen
    assert missed < 0.1 * sum(s.count for s in profile.samples)


def test_build_id_stacks_lead_to_the_same_function(profile: Profile) -> None:
    build_id = ElfSymbols.from_path(profile.binary).build_id
    assert build_id is not None
    hits = 0
    for s in profile.samples:
        entries = profile.build_id_stacks.build_id_frames(s.build_id_stack_id) or []
        if entries and entries[0].valid and entries[0].build_id == build_id:
            f = profile.build_id_stacks.user(s.build_id_stack_id, s.pid)[0]
            # resolved from the build id and file offset alone, in the helper's own file
            assert f.module == profile.binary, f
            if f.name == "_init" and f.offset:
                # a sample in a PLT stub (tracekit_read_here's call into libc): .plt has no
                # symbols, the nearest one before it is _init (seen once in CI)
                continue
            assert f.name in (SPIN_FUNC, "tracekit_read_here", "main"), f
            hits += s.count if f.name == SPIN_FUNC else 0
    assert hits > 0


def test_folded_and_block_output(profile: Profile) -> None:
    comm = os.path.basename(profile.binary)[:15]
    lines = []
    for s in sorted(profile.samples, key=lambda s: s.count):
        assert s.comm == comm
        user = profile.stacks.user(s.user_stack_id, s.pid)
        kernel = profile.stacks.kernel(s.kernel_stack_id)
        lines.append(fold(s.comm, s.count, user=user, kernel=kernel, user_stack_id=s.user_stack_id,
                          kernel_stack_id=s.kernel_stack_id, delimiter=True))
        block = format_block(s.comm, s.pid, s.count, kernel=kernel, user=user, delimiter=True,
                             kernel_stack_id=s.kernel_stack_id, user_stack_id=s.user_stack_id)
        assert block.endswith(f"    -                {s.comm} ({s.pid})\n        {s.count}\n\n")
    pattern = re.compile(rf"^{re.escape(comm)};(?:[^;]+;)*main;{SPIN_FUNC} \d+$")
    assert any(pattern.match(line) for line in lines), lines[-5:]
    assert any(";-;" in line for line in lines)  # a sample in the kernel (the reader thread)


def test_stacks_of_an_exited_process_are_reported_not_raised(profile: Profile) -> None:
    s = max(profile.samples, key=lambda s: s.count)
    fresh = StackTraces(profile.obj.maps["stacks"], Symbolizer())
    frames = fresh.user(s.user_stack_id, s.pid)
    assert frames and all(f.exited and f.format() == "[unknown] [process exited]" for f in frames)
    # the fixture's symbolizer read the mappings while the process ran: it still resolves
    assert profile.stacks.user(s.user_stack_id, s.pid)[0].name is not None


def test_bpf_programs_appear_after_a_refresh_on_a_miss(profile: Profile) -> None:
    ks = KernelSymbols(recheck_interval=0)
    assert len(ks) > 1000 and ks.loads == 1  # index built before the new program exists
    obj = tracekit.open(prebuilt("profile_stacks.bpf.c"))
    try:
        obj.load()
        info = prog_info(obj.programs["section_sample"].fd)
        name = f"bpf_prog_{info.tag}_section_sample"
        with open("/proc/kallsyms") as f:
            addrs = [int(line.split()[0], 16) for line in f if line.split()[2] == name]
        assert addrs
        hits = [ks.lookup(a + 4) for a in addrs]
        # the miss re-read kallsyms (more than once only if other processes' programs came
        # and went meanwhile: BPF-region hits recheck, here with no rate limit)
        assert ks.loads >= 2
        assert all(h is not None and h[0].name == name and h[0].module == "bpf" and h[1] == 4 for h in hits)
        assert hits[0][0].bpf_prog == (info.tag, "section_sample")  # type: ignore[index]
        loads = ks.loads
        schedule = ks.symbol("schedule")
        assert schedule is not None
        for i in range(1000):
            assert ks.lookup(schedule.addr + i % 16) is not None
        assert ks.loads == loads  # core kernel hits never re-read
    finally:
        obj.close()


def test_a_process_in_another_mount_namespace_resolves_through_its_root(tmp_path: Any) -> None:
    """The helper runs from a path that exists only in its own mount namespace (as in a
    container): the host path is empty, /proc/PID/root/<path> has the file."""
    require_live()
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    src = tmp_path / "src"
    inside = tmp_path / "inside"
    src.mkdir()
    inside.mkdir()
    shutil.copy(spin_target(), src / "spin")
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          f'mount --bind "{src}" "{inside}" && exec "{inside}/spin" idle'],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        spin = int(p.stdout.readline().split()[0], 16)
        assert not (inside / "spin").exists()  # not visible from here
        f = Symbolizer().process(p.pid).resolve(spin)
        assert (f.name, f.module) == (SPIN_FUNC, f"{inside}/spin")
    finally:
        p.kill()
        p.wait()

"""Process and container context, and the container filters (issue 12 item 8), for real:
cgroups made by the test in the cgroup-v2 hierarchy, a child in its own mount namespace,
pinned maps on a private bpffs, and a probe that reports what the kernel sees."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracekit
from tests.support import prebuilt, require_live
from tracekit import uapi
from tracekit.context import cgroup as cg
from tracekit.context import process
from tracekit.kernel.maps import Map

pytestmark = pytest.mark.live
GETPPIDS = "import os, sys\nfor _ in range(int(sys.argv[1])): os.getppid()\n"


class Seen(tracekit.Probe):
    object = prebuilt("context_filters.bpf.c") if os.geteuid() == 0 else ""
    event = "seen"


def _own_cgroup_path() -> str:
    return process.cgroups(os.getpid())[""]


@pytest.fixture
def child_cgroup() -> Iterator[Path]:
    require_live()
    root = Path(cg.cgroup2_mount())
    d = root / f"tk-test-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        yield d
    finally:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)  # the child's exit is still being accounted


def _run_in(cgroup_dir: Path | None, n: int, *, unshare_mnt: bool = False) -> int:
    """A child that (optionally) joins ``cgroup_dir`` and calls getppid() ``n`` times."""
    def enter() -> None:
        if cgroup_dir is not None:
            (cgroup_dir / "cgroup.procs").write_text(str(os.getpid()))
        if unshare_mnt:  # os.unshare is Python 3.12+
            import ctypes

            if ctypes.CDLL(None, use_errno=True).unshare(0x00020000) != 0:  # CLONE_NEWNS
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    p = subprocess.Popen([sys.executable, "-c", GETPPIDS, str(n)], preexec_fn=enter)
    assert p.wait(timeout=30) == 0
    return p.pid


def _drain(probe: tracekit.Probe) -> list:
    time.sleep(0.05)
    with probe.reader() as r:
        return list(r.read_available())


def test_process_info_of_a_live_and_an_exited_process(child_cgroup: Path) -> None:
    cid = "ab" * 32
    docker = Path(cg.cgroup2_mount()) / f"docker-{cid}.scope"
    docker.mkdir()
    try:
        p = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: (docker / "cgroup.procs").write_text(str(os.getpid())))
        try:
            time.sleep(0.1)
            info = process.info(p.pid)
            assert (info.comm, info.cmdline, info.exited) == ("sleep", ["sleep", "30"], False)
            assert info.cgroup == f"/docker-{cid}.scope" and info.container_id == cid
            assert process.container_id(os.getpid()) is None or process.container_id(os.getpid()) != cid
        finally:
            p.kill()
            p.wait()
        gone = process.info(p.pid)
        assert gone.exited and gone.comm == "" and process.comm(p.pid) is None and process.cmdline(p.pid) is None
    finally:
        for _ in range(50):
            try:
                docker.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_cgroup_ids_resolve_to_paths(child_cgroup: Path) -> None:
    res = cg.CgroupResolver(max_entries=64, min_rescan=0.5)
    with Seen() as probe:
        os.getppid()
        pid = _run_in(child_cgroup, 3)
        rows = _drain(probe)
    mine = [r for r in rows if r.pid == os.getpid()]
    theirs = [r for r in rows if r.pid == pid]
    assert mine and len(theirs) == 3
    assert res.path(mine[0].cgroup_id) == _own_cgroup_path()
    assert theirs[0].cgroup_id == cg.cgroup_id(str(child_cgroup))
    assert res.path(theirs[0].cgroup_id) == "/" + child_cgroup.name
    walks = res.walks  # one walk found both (the whole tree is cached by it)
    assert walks == 1 and res.path(theirs[0].cgroup_id) == "/" + child_cgroup.name and res.walks == 1
    # a dead cgroup's id: None; misses re-walk at most once per min_rescan
    assert res.path(0xDEAD_BEEF_0000) is None and res.walks == 1
    time.sleep(0.6)
    assert res.path(0xDEAD_BEEF_0001) is None and res.walks == 2
    assert res.path(0xDEAD_BEEF_0002) is None and res.walks == 2
    assert mine[0].mntns == os.stat("/proc/self/ns/mnt").st_ino


def test_cgroup_filter_keeps_only_that_cgroup(child_cgroup: Path) -> None:
    with Seen(cgroup=str(child_cgroup)) as probe:
        for _ in range(5):
            os.getppid()
        pid = _run_in(child_cgroup, 4)
        other = _run_in(None, 4)
        rows = _drain(probe)
    assert [r.pid for r in rows] == [pid] * 4 and other not in {r.pid for r in rows}


def test_bcc_cgroupmap_and_mntnsmap_filters(child_cgroup: Path, bpffs: str) -> None:
    cgmap = os.path.join(bpffs, "cgroupset")
    with Map.create(uapi.MapType.HASH, 8, 8, 16, name="cgroupset") as m:
        m.pin(cgmap)
    with Seen(cgroupmap=cgmap) as probe:
        with Map.from_pin(cgmap) as m:  # added after load: a live map, as with BCC
            m.update(cg.cgroup_id(str(child_cgroup)).to_bytes(8, "little"), (1).to_bytes(8, "little"))
        pid = _run_in(child_cgroup, 3)
        os.getppid()
        rows = _drain(probe)
    assert [r.pid for r in rows] == [pid] * 3

    nsmap = os.path.join(bpffs, "mount_ns_set")
    with Map.create(uapi.MapType.HASH, 8, 4, 16, name="mount_ns_set") as m:
        m.update(os.stat("/proc/self/ns/mnt").st_ino.to_bytes(8, "little"), (1).to_bytes(4, "little"))
        m.pin(nsmap)
    with Seen(mntnsmap=nsmap) as probe:
        same = _run_in(None, 2)
        elsewhere = _run_in(None, 2, unshare_mnt=True)
        rows = _drain(probe)
    pids = [r.pid for r in rows]
    assert pids.count(same) == 2 and elsewhere not in pids


def test_filters_a_probe_does_not_declare_are_refused(child_cgroup: Path, tmp_path: Path) -> None:
    class Plain(tracekit.Probe):
        object = prebuilt("fallback_chain.bpf.c")
        event = None

    with pytest.raises(tracekit.TracekitError, match=r"no cgroup filter: add TK_DECLARE_CGROUP_FILTER\(\)"):
        Plain(cgroup=str(child_cgroup)).start()
    with pytest.raises(tracekit.TracekitError, match="not a cgroup-v2 directory"):
        Seen(cgroup=str(tmp_path / "nope")).start()
    with pytest.raises(tracekit.TracekitError, match="bpftool map create"):
        Seen(mntnsmap=str(tmp_path / "no-such-pin")).start()

"""fentry, fexit and fmod_ret (vmlinux and module functions) with tracing cookies, live.

BPF trampolines do not work on this 6.18 host (program load answers EPERM), so these run
for real in the 6.1/6.12 qemu guests (tests/vm/test_in_guest_attach.py); there a failure
to load or attach is a failure, here a skip that says why.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

import tracekit
from tests.support import (
    kernel_function,
    need,
    prebuilt,
    require_live,
)
from tracekit.errors import LoadError, PermissionDeniedError, SyscallError
from tracekit.kernel.syscalls import bpf as _bpf

pytestmark = pytest.mark.live





def handles() -> dict[str, int]:
    out = {"bpf_link": 0, "bpf_prog": 0}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        key = target.removeprefix("anon_inode:")
        if key in out:
            out[key] += 1
    return out


def link_ids() -> set[int]:
    ids, cur = set(), 0
    while (cur := _bpf.link_get_next_id(cur)) is not None:
        ids.add(cur)
    return ids


def assert_gone(link_id: int) -> None:
    for _ in range(50):
        if link_id not in link_ids():
            return
        time.sleep(0.02)
    raise AssertionError(f"BPF link {link_id} still exists after detach")


DENY = "tk-fmodret-deny"


@pytest.fixture(scope="module")
def tracing():
    require_live()
    obj = tracekit.open(prebuilt("attach_tracing.bpf.c"))
    obj.rodata.target_tgid = os.getpid()
    obj.rodata.deny_name = DENY.encode()
    module_btf = Path("/sys/kernel/btf/overlay").exists()
    obj.programs["mod_ovl_getattr"].autoload = module_btf
    # SEC("fentry/do_unlinkat"): 7.x calls that function filename_unlinkat (same arguments)
    for name in ("fe_unlinkat", "fx_unlinkat"):
        if obj.programs[name].attach_target != (target := kernel_function("do_unlinkat")):
            obj.programs[name].set_attach_target(target)
    try:
        obj.load()
    except (LoadError, PermissionDeniedError, SyscallError) as e:
        obj.close()
        need("fentry", False, f"loading fentry/fexit/fmod_ret programs failed: {e}")
    yield obj
    obj.close()


@pytest.fixture
def bss(tracing):
    for name in tracing.bss.variables():
        tracing.bss[name] = b"" if name == "fe_name" else 0
    return tracing.bss


def test_fentry_fexit_see_arguments_return_and_cookies(tracing, bss) -> None:
    before = handles()
    fe = tracing.programs["fe_unlinkat"].attach(cookie=0x1111)
    fx = tracing.programs["fx_unlinkat"].attach(cookie=0x2222)
    ids = [fe.info().id, fx.info().id]
    try:
        assert (fe.kind, fx.kind) == ("trace_fentry", "trace_fexit")
        name = f"tk-missing-fentry-{os.getpid()}"
        with pytest.raises(FileNotFoundError):
            os.unlink(name)
        assert (bss.fe_hits, bss.fe_dfd, bss.fe_name, bss.fe_cookie) == (1, -100, name, 0x1111)
        assert (bss.fx_hits, bss.fx_ret, bss.fx_cookie) == (1, -errno.ENOENT, 0x2222)
    finally:
        fe.close()
        fx.close()
    with pytest.raises(FileNotFoundError):
        os.unlink(f"tk-missing-after-{os.getpid()}")
    assert bss.fe_hits == 1
    assert handles() == before
    for i in ids:
        assert_gone(i)


def test_fmod_ret_changes_the_return_value(tracing, bss, tmp_path: Path) -> None:
    denied = tmp_path / DENY
    denied.write_text("x")
    allowed = tmp_path / "tk-fmodret-allow"
    allowed.write_text("x")
    link = tracing.programs["fm_getattr"].attach()
    try:
        with pytest.raises(PermissionError):
            os.stat(denied)
        assert os.stat(allowed).st_size == 1
        assert bss.fm_hits == 1
    finally:
        link.close()
    assert os.stat(denied).st_size == 1  # detached: the kernel's own answer again


def test_fentry_on_a_module_function(tracing, bss) -> None:
    need("module BTF", Path("/sys/kernel/btf/overlay").exists(), "no BTF for the overlay module")
    prog = tracing.programs["mod_ovl_getattr"]
    assert prog.plan is not None and prog.plan.attach_btf_target > 0  # resolved in module BTF
    # the guests' root filesystem is an overlay: stat of a file there goes through ovl_getattr
    need("module BTF", any(line.split()[1:3] == ["/", "overlay"]
                           for line in Path("/proc/mounts").read_text().splitlines()),
         "the root filesystem is not an overlay (nothing would call ovl_getattr)")
    before = handles()
    link = prog.attach(cookie=5)
    try:
        os.stat("/etc")
        assert bss.mod_hits >= 1 and bss.mod_cookie == 5
    finally:
        link.close()
    assert handles() == before
    hits = bss.mod_hits
    os.stat("/etc")
    assert bss.mod_hits == hits

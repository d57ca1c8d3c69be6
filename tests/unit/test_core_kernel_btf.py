"""tracekit.kernel.btf: the on-disk index cache (offsets + name array) and load_target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import build_bpf_object
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.kernel import btf as kernel

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture
def data() -> bytes:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    return VMLINUX.read_bytes()


def test_cache_round_trip(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cold = kernel._with_cache(data, "vmlinux")
    files = list((tmp_path / "tracekit").glob("btf-*.idx"))
    assert len(files) == 1
    warm = kernel._with_cache(data, "vmlinux")
    assert warm.offsets == cold.offsets and warm.name_offsets() == cold.name_offsets()
    assert warm.find("task_struct", Kind.STRUCT) == cold.find("task_struct", Kind.STRUCT) == BTF(data).find("task_struct", Kind.STRUCT)
    assert warm.type(len(warm) - 1).kind == cold.type(len(cold) - 1).kind


def test_corrupt_cache_is_ignored_and_rewritten(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel._with_cache(data, "vmlinux")
    (f,) = (tmp_path / "tracekit").glob("btf-*.idx")
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])
    b = kernel._with_cache(data, "vmlinux")
    assert b.find("task_struct", Kind.STRUCT) == BTF(data).find("task_struct", Kind.STRUCT)
    assert f.read_bytes() == good


def test_unwritable_cache_dirs_fall_back_silently(data: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setattr(kernel, "cache_dirs", lambda: [blocker / "tracekit"])
    b = kernel._with_cache(data, "vmlinux")
    assert b.find("task_struct", Kind.STRUCT)


def test_vmlinux_is_shared_and_load_target_reads_elf(data: bytes) -> None:
    assert kernel.vmlinux() is kernel.vmlinux()
    obj = build_bpf_object("core_conformance.bpf.c", defines=["TARGET"], use_vmlinux_h=False)
    t = kernel.load_target(obj)
    assert t.find("cs_moved", Kind.STRUCT)
    from tracekit.errors import BTFError

    with pytest.raises(BTFError, match="cannot read target BTF"):
        kernel.load_target("/nonexistent/btf")

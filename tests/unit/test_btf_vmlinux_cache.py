"""tracekit.kernel.btf: the vmlinux cache (offsets + names + look-ups derived from the kernel's BTF, boot-keyed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind
from tracekit.kernel import btf as kernel

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel.reset()
    yield tmp_path / "tracekit"
    kernel.reset()


def _cache_file(d: Path) -> Path:
    (f,) = d.glob("vmlinux-*.btfcache")
    return f


def test_second_process_is_warm_and_identical(cache: Path) -> None:
    cold = kernel.vmlinux()
    want = cold.find("task_struct", Kind.STRUCT)
    ess = cold.find_by_essential_name("task_struct")
    kernel.save_cache()
    f = _cache_file(cache)
    # derived data only: the BTF itself always comes from the kernel
    assert 0 < f.stat().st_size < VMLINUX.stat().st_size
    kernel.reset()
    warm = kernel.vmlinux()
    assert warm is not cold
    # look-ups come back from the cache, offsets too, and the bytes are the kernel's
    assert "task_struct" in warm.lookup_memo()[0] and "task_struct" in warm.lookup_memo()[1]
    assert warm.find("task_struct", Kind.STRUCT) == want
    assert warm.find_by_essential_name("task_struct") == ess
    assert warm.offsets == cold.offsets and len(warm) == len(cold)
    assert bytes(warm.data) == VMLINUX.read_bytes()
    last = len(warm) - 1
    assert warm.type(last).name == cold.type(last).name
    # nothing new learned: no rewrite
    mtime = f.stat().st_mtime_ns
    kernel.save_cache()
    assert f.stat().st_mtime_ns == mtime
    # a new look-up is persisted
    warm.find("mm_struct")
    kernel.save_cache()
    kernel.reset()
    assert "mm_struct" in kernel.vmlinux().lookup_memo()[0]


def test_other_boot_reuses_identical_bytes_and_restamps(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.vmlinux().find("task_struct")
    kernel.save_cache()
    kernel.reset()
    monkeypatch.setattr(kernel, "_boot_id", lambda: b"\x01" * 16)
    b = kernel.vmlinux()
    assert "task_struct" in b.lookup_memo()[0]  # reused after a full compare
    kernel.save_cache()  # re-stamped for the "new" boot
    raw = _cache_file(cache).read_bytes()
    assert raw[8:24] == b"\x01" * 16


def test_corrupt_or_foreign_cache_is_ignored(cache: Path) -> None:
    kernel.vmlinux().find("task_struct")
    kernel.save_cache()
    f = _cache_file(cache)
    good = f.read_bytes()
    ref = BTF(VMLINUX.read_bytes()).find("task_struct", Kind.STRUCT)
    for bad in (good[: len(good) // 2], good[:100] + b"\xff" * 8 + good[108:], b"junk"):
        f.write_bytes(bad)
        kernel.reset()
        assert kernel.vmlinux().find("task_struct", Kind.STRUCT) == ref
    # a damaged byte in the memo (the look-up results) is caught by the checksum: the
    # kernel's own answer comes back, not the damaged one
    damaged = bytearray(good)
    at = good.rindex(b"task_struct") + len('task_struct":[')
    damaged[at] = ord("9") if damaged[at] != ord("9") else ord("8")
    f.write_bytes(bytes(damaged))
    kernel.reset()
    b = kernel.vmlinux()
    assert "task_struct" not in b.lookup_memo()[0]  # cold: nothing seeded from the file
    assert b.find("task_struct", Kind.STRUCT) == ref
    assert bytes(b.data) == VMLINUX.read_bytes()  # and the BTF is always the kernel's


def test_find_memo_returns_copies() -> None:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    b = BTF(VMLINUX.read_bytes())
    ids = b.find("task_struct")
    ids.append(-1)
    assert -1 not in b.find("task_struct")
    e = b.find_by_essential_name("task_struct")
    e.clear()
    assert b.find_by_essential_name("task_struct")

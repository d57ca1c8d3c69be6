"""tracekit.kernel.btf: the on-disk kernel BTF cache cannot lie (issue 10, items 3 and 7).

Every damaged, truncated, forged or hostile cache file is detected (a debug line on the
``tracekit.btf`` logger says why), the load falls back to a cold parse whose CO-RE
relocations are byte-identical to a cold run's, and the next save rebuilds the cache.
A cache directory that is read-only, full, unwritable or missing (no HOME) costs only
the warm start: nothing raises.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekit import bundled
from tracekit.kernel import btf as kernel
from tracekit.obj import insn
from tracekit.obj.elf import load_spec
from tracekit.obj.plan import plan_program

VMLINUX = Path("/sys/kernel/btf/vmlinux")
PROBES = ("opensnoop", "execsnoop")
MS_RDONLY, MS_REMOUNT = 1, 32
WARM = "type index from cache"
COLD = "parsed cold"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Path]:
    """An empty private cache directory (TRACEKIT_CACHE_DIR), debug logs captured."""
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    d = tmp_path / "cache"
    monkeypatch.setenv("TRACEKIT_CACHE_DIR", str(d))
    caplog.set_level(logging.DEBUG, logger="tracekit.btf")
    kernel.reset()
    yield d
    kernel.reset()


@pytest.fixture
def shm_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Like ``cache``, on a tmpfs when there is one: 200 rebuilds each fsync the file, and
    the test is about detection, not about this VM's disk latency."""
    if not os.path.isdir("/dev/shm"):
        yield cache
        return
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="tk-btfcache-", dir="/dev/shm"))
    monkeypatch.setenv("TRACEKIT_CACHE_DIR", str(d))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _relocations() -> dict[str, bytes]:
    """The final instructions (and attach ids) of every program of the bundled opensnoop
    and execsnoop objects, planned (pure layer: link + CO-RE) against the kernel's BTF.

    A fresh spec each time: the relocator cache is keyed by the object's BTF, so nothing
    learned from an earlier BTF can leak into this result.
    """
    targets = [kernel.vmlinux(), *kernel.modules().values()]
    out = {}
    for name in PROBES:
        spec = load_spec(bundled.path(name))
        for prog in spec.programs.values():
            plan = plan_program(spec, prog, targets)
            out[f"{name}/{prog.name}"] = insn.encode(plan.insns) + struct.pack("<q", plan.attach_btf_id or -1)
    return out


def _load(caplog: pytest.LogCaptureFixture) -> tuple[dict[str, bytes], str]:
    """A fresh process's view: forget the BTF, load, relocate; (relocations, log text)."""
    kernel.reset()
    caplog.clear()
    rel = _relocations()
    return rel, caplog.text


def _file(d: Path) -> Path:
    return d / kernel._vm_cache_name()


def _cold_and_good(cache: Path, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, bytes], bytes]:
    """Relocations of a cold run and the cache file it wrote."""
    rel, text = _load(caplog)
    assert COLD in text
    kernel.save_cache()
    return rel, _file(cache).read_bytes()


def _reforge(good: bytes, **fields: object) -> bytes:
    """``good`` with header fields replaced and a *valid* CRC: a cache that passes the
    checksum but lies, so only the bounds and identity checks can catch it."""
    names = ("magic", "boot", "size", "digest", "types", "names", "memo")
    vals = dict(zip(names, kernel._VM_HDR.unpack_from(good, 0)))
    vals.update(fields)
    body = kernel._VM_HDR.pack(*(vals[n] for n in names)) + good[kernel._VM_HDR.size : -4]
    return body + struct.pack("<I", zlib.crc32(body))


def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _with_memo(good: bytes, memo: bytes) -> bytes:
    """``good`` with its look-up memo replaced (length and CRC made to match)."""
    hdr = kernel._VM_HDR.size
    *_, ntypes, nnames, _ = kernel._VM_HDR.unpack_from(good, 0)
    start = _reforge(good, memo=len(memo))[: hdr + 4 * ntypes + nnames]
    return _recrc(start + memo)


def test_200_flips_and_truncations_are_detected_and_rebuilt(shm_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    cold, good = _cold_and_good(shm_cache, caplog)
    f = _file(shm_cache)
    warm, text = _load(caplog)
    assert WARM in text and warm == cold  # the good cache is used, and agrees
    assert kernel.vmlinux().find("task_struct")  # (memo hit; also checked below)
    rng = random.Random(0x7B7F)
    hdr = kernel._VM_HDR.size
    n = len(good)
    kinds = {"flip-header": 0, "flip-index": 0, "flip-tail": 0, "truncate": 0}
    for i in range(200):
        bad = bytearray(good)
        kind = ("flip-header", "flip-index", "flip-tail", "truncate")[i % 4]
        if kind == "truncate":
            bad = bad[: rng.randrange(n)]
        else:
            # the header (magic, boot id, sizes, BTF hash), the offsets and name array,
            # or the look-up memo and the CRC itself
            lo, hi = {"flip-header": (0, hdr), "flip-index": (hdr, n - 64), "flip-tail": (n - 64, n)}[kind]
            bad[rng.randrange(lo, hi)] ^= rng.randrange(1, 256)
        kinds[kind] += 1
        f.write_bytes(bytes(bad))
        rel, text = _load(caplog)
        assert "rejected" in text and COLD in text and WARM not in text, (i, kind, text)
        assert rel == cold, (i, kind)
        kernel.save_cache()
        assert f.read_bytes() == good, (i, kind)  # rebuilt, byte for byte
    assert kinds == {"flip-header": 50, "flip-index": 50, "flip-tail": 50, "truncate": 50}
    # and the rebuilt cache is trusted again
    rel, text = _load(caplog)
    assert WARM in text and rel == cold


def test_forged_checksum_is_still_bounded(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cache whose CRC is right but whose header or memo lies is refused before use."""
    cold, good = _cold_and_good(cache, caplog)
    f = _file(cache)
    other_boot = b"\x5a" * 16
    hdr = kernel._VM_HDR.size
    ntypes = kernel._VM_HDR.unpack_from(good, 0)[4]
    forged = {
        "huge type count": _reforge(good, types=0xFFFFFFFF),
        "type count != file": _reforge(good, types=ntypes - 1),
        "names not 4 per type": _reforge(good, names=5),
        "memo past the end": _reforge(good, memo=1 << 30),
        "other BTF size": _reforge(good, size=VMLINUX.stat().st_size + 4),
        "other boot, other BTF": _reforge(good, boot=other_boot, digest=b"\1" * 32),
        "memo id out of range": _with_memo(good, b'{"find":{"task_struct":[9999999]},"essential":{}}'),
        "memo id not an int": _with_memo(good, b'{"find":{"task_struct":[true]},"essential":{}}'),
        "memo not a document": _with_memo(good, b'[[[[[[[[[['),
        "offsets not from 0": _recrc(good[:hdr] + b"\4\0\0\0" + good[hdr + 4 : -4]),
    }
    for what, blob in forged.items():
        f.write_bytes(blob)
        rel, text = _load(caplog)
        assert "rejected" in text and WARM not in text, (what, text)
        assert rel == cold, what
    # the same BTF under another boot id is reused after its sha256 matched
    f.write_bytes(_reforge(good, boot=other_boot))
    rel, text = _load(caplog)
    assert WARM in text and rel == cold


def test_fifo_at_the_cache_path_does_not_hang(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache.mkdir()
    f = _file(cache)
    os.mkfifo(f)
    box: list[tuple[dict[str, bytes], str]] = []
    errs: list[BaseException] = []

    def load() -> None:
        try:
            box.append(_load(caplog))
        except BaseException as e:  # surfaced below
            errs.append(e)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "loading kernel BTF blocked on a FIFO at the cache path"
    assert not errs, errs
    ((rel, text),) = box
    assert "not a regular file" in text and COLD in text
    kernel.save_cache()  # the FIFO is replaced by a real cache
    assert f.is_file() and not f.is_fifo()
    rel2, text = _load(caplog)
    assert WARM in text and rel2 == rel


def test_symlink_is_refused_and_replaced_not_followed(cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cold, good = _cold_and_good(cache, caplog)
    f = _file(cache)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(good)  # even a good cache is not read through a link
    f.unlink()
    f.symlink_to(elsewhere)
    rel, text = _load(caplog)
    assert "symbolic link" in text and COLD in text and rel == cold
    kernel.save_cache()
    assert not f.is_symlink() and f.read_bytes() == good
    assert elsewhere.read_bytes() == good  # the link's target was not written through


def test_not_a_file_or_too_large_is_refused(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    cold, _ = _cold_and_good(cache, caplog)
    f = _file(cache)
    f.unlink()
    f.mkdir()
    rel, text = _load(caplog)
    assert "not a regular file" in text and rel == cold
    kernel.save_cache()  # cannot replace a directory: logged, not raised
    assert "not usable" in caplog.text
    f.rmdir()
    # a sparse 1 GiB file is refused from its fstat size, before anything is allocated
    with open(f, "wb") as fh:
        fh.truncate(1 << 30)
    rel, text = _load(caplog)
    assert "larger than any cache" in text and rel == cold


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_group_or_other_writable_is_refused(cache: Path, caplog: pytest.LogCaptureFixture, mode: int) -> None:
    cold, good = _cold_and_good(cache, caplog)
    f = _file(cache)
    f.chmod(mode)
    rel, text = _load(caplog)
    assert "writable by group or others" in text and COLD in text and rel == cold
    kernel.save_cache()
    assert f.stat().st_mode & 0o777 == 0o600 and f.read_bytes() == good


def test_other_owner_is_refused(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    cold, good = _cold_and_good(cache, caplog)
    f = _file(cache)
    os.chown(f, 65534, 65534)
    rel, text = _load(caplog)
    assert "owned by uid 65534" in text and COLD in text and rel == cold
    kernel.save_cache()
    assert f.stat().st_uid == 0 and f.read_bytes() == good


def _tmpfs(path: Path, data: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    from tracekit.kernel.syscalls import fs

    path.mkdir(parents=True, exist_ok=True)
    fs.mount("tmpfs", str(path), data=data)


def _umount(path: Path) -> None:
    from tracekit.kernel.syscalls import fs

    fs.umount(str(path))


def test_read_only_cache_dir(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tmpfs(cache, "size=4m,mode=0700")
    try:
        cold, good = _cold_and_good(cache, caplog)
        from tracekit.kernel.syscalls import fs

        fs.mount("tmpfs", str(cache), flags=MS_REMOUNT | MS_RDONLY, data="size=4m,mode=0700")
        # a good cache on a read-only filesystem is still used
        rel, text = _load(caplog)
        assert WARM in text and rel == cold
        # nothing learned: no write attempted; something learned: the write fails quietly
        kernel.vmlinux().find("mm_struct")
        kernel.save_cache()
        assert "not usable" in caplog.text and "Read-only file system" in caplog.text
        assert "no usable cache directory" in caplog.text
        assert _file(cache).read_bytes() == good and os.listdir(cache) == [_file(cache).name]
    finally:
        _umount(cache)


def test_full_cache_dir(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    _tmpfs(cache, "size=64k,mode=0700")  # the cache is ~1 MB: every write hits ENOSPC
    try:
        rel, text = _load(caplog)
        assert COLD in text
        kernel.save_cache()  # must not raise
        assert os.strerror(errno.ENOSPC) in caplog.text and "no usable cache directory" in caplog.text
        assert os.listdir(cache) == []  # the partial temporary file was removed
        rel2, text = _load(caplog)
        assert COLD in text and rel2 == rel
    finally:
        _umount(cache)


def test_no_home_and_unwritable_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    caplog.set_level(logging.DEBUG, logger="tracekit.btf")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    system = tmp_path / "system"
    monkeypatch.setattr(kernel, "SYSTEM_CACHE_DIR", system)
    monkeypatch.delenv("TRACEKIT_CACHE_DIR", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    try:
        # no HOME: the system directory is the only candidate, and it works
        assert kernel.cache_dirs() == [system]
        cold, text = _load(caplog)
        assert "neither XDG_CACHE_HOME nor HOME" in text and COLD in text
        kernel.save_cache()
        assert _file(system).is_file()
        # no HOME and the system directory unusable: loads cold, saves nothing, raises nothing
        monkeypatch.setattr(kernel, "SYSTEM_CACHE_DIR", blocker / "tracekit")
        rel, text = _load(caplog)
        assert COLD in text and rel == cold
        kernel.save_cache()
        assert "no usable cache directory" in caplog.text
        # an XDG cache dir that cannot be created: the next directory takes the cache
        monkeypatch.setattr(kernel, "SYSTEM_CACHE_DIR", system)
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
        assert kernel.cache_dirs() == [blocker / "tracekit", system]
        _file(system).unlink()
        rel, text = _load(caplog)
        assert rel == cold
        kernel.save_cache()
        assert "not usable" in caplog.text and _file(system).is_file()
        rel, text = _load(caplog)
        assert WARM in text and rel == cold
        # TRACEKIT_CACHE_DIR="" turns the cache off
        monkeypatch.setenv("TRACEKIT_CACHE_DIR", "")
        assert kernel.cache_dirs() == []
        rel, text = _load(caplog)
        assert COLD in text and rel == cold
        kernel.save_cache()
        assert "cache off" in caplog.text
    finally:
        kernel.reset()


def test_index_cache_of_a_target_btf_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """load_target's index cache: a flipped byte or a symlink is refused and rewritten."""
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    caplog.set_level(logging.DEBUG, logger="tracekit.btf")
    d = tmp_path / "c"
    monkeypatch.setenv("TRACEKIT_CACHE_DIR", str(d))
    target = tmp_path / "vmlinux.btf"
    target.write_bytes(VMLINUX.read_bytes())
    want = kernel.load_target(target).offsets
    (f,) = d.glob("btf-*.idx")
    good = f.read_bytes()
    rng = random.Random(7)
    for i in range(6):
        bad = bytearray(good)
        if i % 2:
            bad = bad[: rng.randrange(len(bad))]
        else:
            bad[rng.randrange(len(bad))] ^= 0x10
        f.write_bytes(bytes(bad))
        caplog.clear()
        assert kernel.load_target(target).offsets == want
        assert "rejected" in caplog.text, i
        assert f.read_bytes() == good
    f.unlink()
    f.symlink_to(tmp_path / "nowhere")
    caplog.clear()
    assert kernel.load_target(target).offsets == want
    assert "symbolic link" in caplog.text and not f.is_symlink() and f.read_bytes() == good


def test_kernel_btf_read_where_it_cannot_be_mapped(cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Before Linux 6.16 sysfs BTF cannot be mapped: it is read, and the cache works alike."""
    import mmap
    import platform

    kernel.reset()
    ver = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    if ver >= (6, 16):  # the kernel allows a private read-only mapping of vmlinux BTF
        assert isinstance(kernel.vmlinux().data, mmap.mmap)
    cold, good = _cold_and_good(cache, caplog)
    monkeypatch.setattr(kernel, "MAP_KERNEL_BTF", False)
    rel, text = _load(caplog)
    assert isinstance(kernel.vmlinux().data, bytes) and bytes(kernel.vmlinux().data) == VMLINUX.read_bytes()
    assert WARM in text and rel == cold
    f = _file(cache)
    f.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    rel, text = _load(caplog)
    assert "checksum mismatch" in text and COLD in text and rel == cold


def test_writer_leftovers_are_swept(cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A writer killed between mkstemp and rename leaves a ``.tmp-*.part``: the next
    successful write removes it once it is old (a young one may be a live writer's)."""
    import time

    cache.mkdir()
    old = cache / ".tmp-killed.part"
    young = cache / ".tmp-writing.part"
    for p in (old, young):
        p.write_bytes(b"partial")
    past = time.time() - 2 * kernel._STALE_TMP_S
    os.utime(old, (past, past))
    _cold_and_good(cache, caplog)
    assert not old.exists() and young.exists()
    assert sorted(os.listdir(cache)) == sorted([young.name, _file(cache).name])


def test_damaged_preferred_copy_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged cache in the preferred directory with a good one further down the list:
    the good one is used, and the damaged one is rewritten (not logged on every start)."""
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux on this machine")
    caplog.set_level(logging.DEBUG, logger="tracekit.btf")
    monkeypatch.delenv("TRACEKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    system = tmp_path / "system"
    monkeypatch.setattr(kernel, "SYSTEM_CACHE_DIR", system)
    try:
        cold, good = _cold_and_good(tmp_path / "xdg" / "tracekit", caplog)
        system.mkdir()
        _file(system).write_bytes(good)
        _file(system).chmod(0o600)
        pref = _file(tmp_path / "xdg" / "tracekit")
        pref.write_bytes(good[:100])
        rel, text = _load(caplog)
        assert "rejected" in text and str(system) in text and WARM in text and rel == cold
        kernel.save_cache()
        assert pref.read_bytes() == good
    finally:
        kernel.reset()

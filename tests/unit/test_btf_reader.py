"""tracekit.btf.reader: vmlinux, look-ups, flavors, split BTF, malformed blobs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tracekit.btf.reader import BTF
from tracekit.btf.types import INT_SIGNED, Kind, Member, Type, essential_name
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import BTFError

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def vmlinux() -> BTF:
    if not VMLINUX.exists():
        pytest.skip("no /sys/kernel/btf/vmlinux")
    return BTF.from_file(str(VMLINUX))


def test_vmlinux(vmlinux):
    assert len(vmlinux) > 10000
    ts = vmlinux.find("task_struct", Kind.STRUCT)
    assert len(ts) == 1
    t = vmlinux.type(ts[0])
    names = {m.name for m in t.members}
    assert {"pid", "tgid", "comm"} <= names
    pid = next(m for m in t.members if m.name == "pid")
    assert vmlinux.describe(pid.type) == "pid_t" and vmlinux.size_of(pid.type) == 4
    comm = next(m for m in t.members if m.name == "comm")
    assert vmlinux.size_of(comm.type) == 16
    assert vmlinux.find_one("no_such_type_xyz") is None
    assert vmlinux.kind_of(ts[0]) == Kind.STRUCT and vmlinux.name_of(ts[0]) == "task_struct"
    # a FUNC and its prototype
    fid = vmlinux.find_one("bpf_task_acquire", Kind.FUNC)
    assert fid and vmlinux.kind_of(vmlinux.type(fid).type) == Kind.FUNC_PROTO


def _flavored() -> bytes:
    b = BTFBuilder()
    i = b.add_type(Type(Kind.INT, "int", size=4, encoding=INT_SIGNED, bits=32))
    for n in ("foo", "foo___v1", "foo___v2", "foo____x", "foobar", "__u64", "foo___"):
        b.add_type(Type(Kind.STRUCT, n, size=4, members=[Member("a", i, 0)]))
    return b.encode()


def test_find_by_essential_name_with_flavors():
    btf = BTF(_flavored())
    ids = {btf.name_of(t) for t in btf.find_by_essential_name("foo")}
    # "foo____x" keeps its name (the separator needs a non-underscore after ___), and
    # "foo___" has nothing after the separator
    assert ids == {"foo", "foo___v1", "foo___v2"}
    assert essential_name("foo____x") == "foo____x" and essential_name("task_struct___old") == "task_struct"
    assert btf.find("foo") == [2] and btf.find("foobar", Kind.STRUCT) == [6] and btf.find("foobar", Kind.UNION) == []
    assert [btf.name_of(t) for t in btf.find_by_essential_name("__u64")] == ["__u64"]


def test_split_btf(vmlinux):
    b = BTFBuilder(base=vmlinux)
    ts = vmlinux.find_one("task_struct", Kind.STRUCT)
    p = b.add_type(Type(Kind.PTR, type=ts))
    s = b.add_type(Type(Kind.STRUCT, "task_struct___mine", size=8, members=[Member("t", p, 0)]))
    split = BTF(b.encode(), base=vmlinux)
    assert split.start_id == len(vmlinux) and len(split) == len(vmlinux) + 2
    assert split.type(ts) is vmlinux.type(ts)  # base ids answered by the base
    assert split.find("task_struct___mine") == [s]
    assert split.find_by_essential_name("task_struct") == [ts, s]
    assert split.describe(split.type(s).members[0].type) == "struct task_struct *"
    assert split.string(vmlinux.start_str + 1) == vmlinux.string(1)
    with pytest.raises(BTFError):
        split.type(len(split))


def _hdr(**kw) -> bytes:
    f = dict(magic=0xEB9F, version=1, flags=0, hdr_len=24, type_off=0, type_len=0, str_off=0, str_len=1)
    f.update(kw)
    return struct.pack("<HBBIIIII", *f.values())


@pytest.mark.parametrize(
    "blob,match",
    [
        (b"", "too short"),
        (b"\x00" * 23, "too short"),
        (_hdr(magic=0x1234) + b"\0", "bad magic"),
        (_hdr(version=2) + b"\0", "version"),
        (_hdr(hdr_len=8) + b"\0", "header length"),
        (_hdr(hdr_len=28) + b"\1\0\0\0" + b"\0", "unknown non-zero"),
        (_hdr(str_len=100) + b"\0", "past the end"),
        (_hdr(type_len=6, str_off=6) + bytes(6) + b"\0", "aligned"),
        (_hdr(str_len=1) + b"a", "NUL"),
    ],
)
def test_malformed_headers(blob, match):
    with pytest.raises(BTFError, match=match):
        BTF(blob)


def test_truncated_and_unknown_types():
    good = _flavored()
    hdr = struct.unpack_from("<HBBIIIII", good)
    type_len, str_len = hdr[5], hdr[7]
    types, strs = good[24:24 + type_len], good[24 + type_len:]
    # drop the last member record of the last struct: the type runs past the type section
    cut = types[:-12]
    blob = _hdr(type_len=len(cut), str_off=len(cut), str_len=str_len) + cut + strs
    with pytest.raises(BTFError, match="truncated"):
        BTF(blob)
    # kind 25 does not exist
    bad = bytearray(types)
    struct.pack_into("<I", bad, 4, 25 << 24)
    with pytest.raises(BTFError, match="unknown kind"):
        BTF(_hdr(type_len=len(bad), str_off=len(bad), str_len=str_len) + bytes(bad) + strs)
    # a name offset past the string table fails on use, with a BTFError
    bad = bytearray(types)
    struct.pack_into("<I", bad, 0, 10_000)
    btf = BTF(_hdr(type_len=len(bad), str_off=len(bad), str_len=str_len) + bytes(bad) + strs)
    with pytest.raises(BTFError, match="out of range"):
        btf.type(1)


def test_from_bytes_or_elf_errors():
    with pytest.raises(BTFError, match="malformed ELF|no .BTF"):
        BTF.from_bytes_or_elf(b"\x7fELF" + bytes(60))

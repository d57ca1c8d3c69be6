"""The ctypes structs handed to bpf(2) and perf_event_open(2) match the kernel's layout.

Every field of every attribute/info struct is compared (offset and size) with the kernel's
own definition in /sys/kernel/btf/vmlinux (``union bpf_attr``, ``struct bpf_prog_info``,
``struct perf_event_attr``, ...).  Reading the file makes no syscall into BPF, so this is a
unit test; it is skipped on a machine without kernel BTF.
"""

from __future__ import annotations

import ctypes
import os

import pytest

from tracekit.btf import BTF, Kind
from tracekit.kernel.syscalls import bpf as sb
from tracekit.kernel.syscalls import perf

VMLINUX = "/sys/kernel/btf/vmlinux"

pytestmark = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="no kernel BTF on this machine")


@pytest.fixture(scope="module")
def btf() -> BTF:
    return BTF.from_file(VMLINUX)


Layout = dict[str, tuple[int, int]]


def btf_fields(btf: BTF, tid: int, base_bits: int = 0, prefix: str = "") -> Layout:
    """Dotted path -> (byte offset, byte size); anonymous members flatten into their parent."""
    out: Layout = {}
    for m in btf.resolve(tid).members:
        bits = base_bits + m.bit_offset
        mt = btf.skip_mods(m.type)
        composite = btf.kind_of(mt) in (Kind.STRUCT, Kind.UNION)
        if m.name:
            out[prefix + m.name] = (bits // 8, btf.size_of(m.type))
        if composite:
            out.update(btf_fields(btf, mt, bits, prefix + m.name + "." if m.name else prefix))
    return out


def ctypes_fields(cls: type, base: int = 0, prefix: str = "") -> Layout:
    out: Layout = {}
    anonymous = getattr(cls, "_anonymous_", ())
    for name, typ in cls._fields_:
        off = base + getattr(cls, name).offset
        if issubclass(typ, (ctypes.Structure, ctypes.Union)):
            if name in anonymous:
                out.update(ctypes_fields(typ, off, prefix))
                continue
            out.update(ctypes_fields(typ, off, prefix + name + "."))
        if not name.startswith("_"):
            out[prefix + name] = (off, ctypes.sizeof(typ))
    return out


def bpf_attr_member(btf: BTF, anchor: str) -> tuple[int, int]:
    """(type id, size) of the union bpf_attr member named ``anchor`` or holding a field of that name."""
    union = btf.find_one("bpf_attr", Kind.UNION)
    assert union is not None
    found = []
    for m in btf.type(union).members:
        mt = btf.skip_mods(m.type)
        if m.name == anchor or (not m.name and anchor in btf_fields(btf, mt)):
            found.append(mt)
    assert len(found) == 1, f"anchor {anchor!r} matches {len(found)} members of union bpf_attr"
    return found[0], btf.size_of(found[0])


def check_layout(cls: type, kernel: Layout, kernel_size: int, skip: tuple[str, ...] = ()) -> None:
    ours = ctypes_fields(cls)
    missing = []
    for name, (off, size) in ours.items():
        if name in skip:
            continue
        if name not in kernel:
            missing.append((name, off))
            continue
        assert (off, size) == kernel[name], f"{cls.__name__}.{name}: ours (off, size)={(off, size)}, kernel {kernel[name]}"
    # A field the kernel lacks is only acceptable past the end of an older kernel's struct.
    for name, off in missing:
        assert off >= kernel_size, f"{cls.__name__}.{name} at {off} is unknown to the kernel's struct"
    if not missing:
        # Every field we know is the kernel's: a newer kernel may only have grown the struct.
        assert ctypes.sizeof(cls) <= kernel_size, f"{cls.__name__} is larger than the kernel's"


@pytest.mark.parametrize("cls", sb.ATTR_STRUCTS, ids=lambda c: c.__name__)
def test_bpf_attr_structs(btf: BTF, cls: type) -> None:
    tid, size = bpf_attr_member(btf, cls._btf_)
    check_layout(cls, btf_fields(btf, tid), size)


def test_sizes_equal_on_this_kernel_generation(btf: BTF) -> None:
    """On the kernel the structs were written against, each mirrors its member exactly."""
    _, prog_load_size = bpf_attr_member(btf, "prog_type")
    if prog_load_size != 168:
        pytest.skip(f"kernel of another generation (prog_load attr is {prog_load_size} bytes)")
    for cls in sb.ATTR_STRUCTS:
        assert ctypes.sizeof(cls) == bpf_attr_member(btf, cls._btf_)[1], cls.__name__
    for cls in (*sb.INFO_STRUCTS, perf.PerfEventAttr):
        tid = btf.find_one(cls._btf_, Kind.STRUCT)
        assert ctypes.sizeof(cls) == btf.size_of(tid), cls.__name__


@pytest.mark.parametrize("cls", sb.INFO_STRUCTS, ids=lambda c: c.__name__)
def test_info_structs(btf: BTF, cls: type) -> None:
    tid = btf.find_one(cls._btf_, Kind.STRUCT)
    assert tid is not None
    check_layout(cls, btf_fields(btf, tid), btf.size_of(tid))


def test_perf_event_attr(btf: BTF) -> None:
    tid = btf.find_one("perf_event_attr", Kind.STRUCT)
    assert tid is not None
    kernel = btf_fields(btf, tid)
    check_layout(perf.PerfEventAttr, kernel, btf.size_of(tid), skip=("flags",))
    # The flag bits: our bit numbers are the C bitfield's positions from ``disabled``.
    members = {m.name: m for m in btf.type(tid).members}
    base = members["disabled"].bit_offset
    assert base == perf.PerfEventAttr.flags.offset * 8
    for name, bit in perf.ATTR_FLAG_BITS.items():
        assert members[name].bit_offset - base == bit, name


def test_layout_checker_catches_a_wrong_offset(btf: BTF) -> None:
    # The checker itself must fail on a mismatch, or the tests above prove nothing.
    class Wrong(ctypes.Structure):
        _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32), ("data_in", ctypes.c_uint64)]

    tid, size = bpf_attr_member(btf, "test")
    with pytest.raises(AssertionError, match="data_in"):
        check_layout(Wrong, btf_fields(btf, tid), size)

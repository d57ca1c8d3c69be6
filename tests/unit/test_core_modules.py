"""CO-RE candidates from module BTF (tracekit.obj.core), against hand-built split BTFs.

libbpf's rule: a local type's candidates come from vmlinux; only when vmlinux has none are
*all* module BTFs searched, and every candidate must then give the same value.  The live
counterpart (real overlay/9p/9pnet BTF) is tests/live/test_module_btf.py in the guests.
"""

from __future__ import annotations

import pytest

from tracekit.btf.ext import CoreRelo
from tracekit.btf.reader import BTF
from tracekit.btf.types import Kind, Member, Type
from tracekit.btf.writer import BTFBuilder
from tracekit.errors import AmbiguousRelocationError
from tracekit.obj.core import CoreKind, CoreRelocator
from tracekit.obj.insn import BPF_ALU64, BPF_K, BPF_MOV, Insn


def _u32(b: BTFBuilder) -> int:
    return b.add_type(Type(Kind.INT, "unsigned int", size=4, bits=32))


def _client(b: BTFBuilder, name: str, msize_at: int, u32: int) -> int:
    """struct <name> { u32 pad...; u32 msize @msize_at; } of 16 bytes."""
    return b.add_type(Type(Kind.STRUCT, name, size=16, members=[Member("msize", u32, msize_at * 8)]))


def _vmlinux(with_client: bool = False) -> BTF:
    b = BTFBuilder()
    u32 = _u32(b)
    if with_client:
        _client(b, "p9_client", 12, u32)
    return b.to_btf(name="vmlinux")


def _module(base: BTF, name: str, msize_at: int | None) -> BTF:
    b = BTFBuilder(base=base)
    u32 = base.find_one("unsigned int", Kind.INT)
    if msize_at is not None:
        _client(b, "p9_client", msize_at, u32)
    else:
        _u32(b)  # a module without the type
    return b.to_btf(name=f"/sys/kernel/btf/{name}")


@pytest.fixture
def local() -> tuple[BTF, int]:
    b = BTFBuilder()
    u32 = _u32(b)
    tid = _client(b, "p9_client___tk", 4, u32)
    return b.to_btf(name="local"), tid


def _offset(r: CoreRelocator, tid: int) -> int:
    insns = [Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst=1, imm=4)]  # r1 = offsetof(msize), local
    r.relocate(insns, [CoreRelo(0, tid, "0:0", CoreKind.FIELD_BYTE_OFFSET)])
    return insns[0].imm


def test_every_module_is_searched_when_vmlinux_has_none(local) -> None:
    lb, tid = local
    vm = _vmlinux()
    mods = [_module(vm, "9p", 8), _module(vm, "other", None), _module(vm, "9pnet", 8)]
    r = CoreRelocator(lb, [vm, *mods])
    assert sorted(c.source for c in r.candidates(tid)) == ["9p", "9pnet"]
    assert _offset(r, tid) == 8  # both candidates agree


def test_modules_that_disagree_are_ambiguous(local) -> None:
    lb, tid = local
    vm = _vmlinux()
    r = CoreRelocator(lb, [vm, _module(vm, "9p", 8), _module(vm, "9pnet", 12)])
    with pytest.raises(AmbiguousRelocationError):
        _offset(r, tid)


def test_vmlinux_candidate_hides_module_ones(local) -> None:
    lb, tid = local
    vm = _vmlinux(with_client=True)
    r = CoreRelocator(lb, [vm, _module(vm, "9p", 8)])
    assert [c.source for c in r.candidates(tid)] == ["vmlinux"]
    assert _offset(r, tid) == 12

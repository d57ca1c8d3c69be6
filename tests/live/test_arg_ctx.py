"""__arg_ctx: native on kernels >= 6.8, the loader's BTF fallback before that.

Runs on this host (6.18: native support must be detected and the object load as is) and
in the qemu matrix (``python -m tests.vm.runner --kernel 6.1 -- python -m pytest
tests/live/test_arg_ctx.py``): on 6.1 the object loads only thanks to the fallback, and
fails with the fallback disabled (by pretending native support).
"""

from __future__ import annotations

import struct

import pytest

import tracekit
from tests.support import build_bpf_object, require_live
from tracekit.btf.types import Kind
from tracekit.errors import VerifierError
from tracekit.kernel import features
from tracekit.kernel.kconfig import kernel_version

RAW_TP = "argctx_raw_tp"


def _sub_proto_arg(obj: tracekit.Object, prog: str) -> tuple[Kind, str]:
    """What the loaded func_info says the tagged subprogram's argument points to."""
    plan = obj.programs[prog].plan
    from tracekit.kernel.syscalls import bpf

    btf = tracekit.BTF(bpf.btf_data(obj._btf_fd.fd))  # what the kernel holds
    proto = btf.type(btf.type(plan.func_info[1].type_id).type)  # [0] is the main program
    pointee = btf.type(btf.type(proto.params[0].type).type)
    return pointee.kind, pointee.name or "void"


def _run(obj: tracekit.Object) -> int:
    assert obj.programs[RAW_TP].test_run(ctx=struct.pack("<Q", 41)) == 0
    return obj.bss.seen if "seen" in obj.bss else obj.data.seen


def test_arg_ctx_native_or_fallback() -> None:
    require_live()
    path = build_bpf_object("argctx_fallback.bpf.c")
    native = features.arg_ctx_tag()
    assert native == (kernel_version() >= (6 << 16) + (8 << 8)), "arg:ctx probe disagrees with the kernel version"
    if native:
        with tracekit.open(path) as obj:
            obj.load()
            assert obj.programs["argctx_kprobe"].loaded
            # untouched: the subprogram's own FUNC, whose argument is void *
            assert _sub_proto_arg(obj, RAW_TP) == (Kind.UNKN, "void")
            assert _run(obj) == 42
        # the fallback is also accepted by a new kernel (it is how libbpf runs everywhere)
        with features.override(arg_ctx_tag=False), tracekit.open(path) as obj:
            obj.load()
            assert _sub_proto_arg(obj, RAW_TP) == (Kind.STRUCT, "bpf_raw_tracepoint_args")
            assert _sub_proto_arg(obj, "argctx_kprobe") == (Kind.STRUCT, "bpf_user_pt_regs_t")
            assert _run(obj) == 42
        return
    # an old kernel: loads (and runs) only thanks to the fallback
    with tracekit.open(path) as obj:
        obj.load()
        assert _sub_proto_arg(obj, RAW_TP) == (Kind.STRUCT, "bpf_raw_tracepoint_args")
        assert _sub_proto_arg(obj, "argctx_kprobe") == (Kind.STRUCT, "bpf_user_pt_regs_t")
        assert _run(obj) == 42
    with features.override(arg_ctx_tag=True), tracekit.open(path) as obj:
        with pytest.raises(VerifierError) as ei:
            obj.load()
    assert "arg#0" in ei.value.log or "ctx" in ei.value.log, ei.value.log

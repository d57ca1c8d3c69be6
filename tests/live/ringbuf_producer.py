"""A hand-assembled in-kernel ring-buffer producer (no clang, no loader): for tests and bench.

``SEC("syscall")`` program, run with BPF_PROG_TEST_RUN.  Its context is
``struct { u32 nr; u32 len; u64 base; }``: it calls ``bpf_loop(nr, cb, &args)`` and the
callback writes one record of ``len`` (<= 64) bytes per iteration with
``bpf_ringbuf_output``.  Record ``i`` holds u64 slots ``seq = base + i`` then
``(seq << 8) | k`` for k = 1..7, truncated to ``len``: :func:`expected` rebuilds it.
The program returns bpf_loop's result (iterations run).  A full ring drops records
(bpf_ringbuf_output returns -EAGAIN): callers size the ring or drain between runs.
"""

from __future__ import annotations

import struct

from tracekit.kernel.fd import FD
from tracekit.kernel.maps import Map
from tracekit.kernel.syscalls import bpf as sysbpf
from tracekit.obj import insn as I
from tracekit.obj.insn import Insn
from tracekit.uapi import Helper, MapType, ProgType

MAX_LEN = 64

_MOV_X = I.BPF_ALU64 | I.BPF_MOV | I.BPF_X  # 0xbf
_MOV_K = I.BPF_ALU64 | I.BPF_MOV | I.BPF_K  # 0xb7
_ADD_K = I.BPF_ALU64 | I.BPF_ADD | I.BPF_K  # 0x07
_LSH_K = I.BPF_ALU64 | 0x60 | I.BPF_K  # 0x67
_OR_K = I.BPF_ALU64 | 0x40 | I.BPF_K  # 0x47
_ADD_X = I.BPF_ALU64 | I.BPF_ADD | I.BPF_X  # 0x0f
_JGT_K = I.BPF_JMP | 0x20 | I.BPF_K  # 0x25
_LDX_W = I.BPF_LDX | I.BPF_MEM | I.BPF_W  # 0x61
_LDX_DW = I.BPF_LDX | I.BPF_MEM | I.BPF_DW  # 0x79
_STX_DW = I.BPF_STX | I.BPF_MEM | I.BPF_DW  # 0x7b


def _ldimm64(dst: int, src: int, imm: int) -> list[Insn]:
    return [Insn(I.LD_IMM64, dst, src, 0, imm), Insn(0, 0, 0, 0, 0)]


def program(map_fd: int) -> tuple[bytes, int]:
    main = [
        Insn(_MOV_X, 6, 1),                 # r6 = ctx
        Insn(_LDX_W, 2, 6, 4),              # r2 = ctx->len
        Insn(_STX_DW, 10, 2, -16),          # args.len
        Insn(_LDX_DW, 2, 6, 8),             # r2 = ctx->base
        Insn(_STX_DW, 10, 2, -8),           # args.base
        Insn(_LDX_W, 1, 6, 0),              # r1 = ctx->nr
        *_ldimm64(2, I.BPF_PSEUDO_FUNC, 0),  # r2 = &callback (imm patched below)
        Insn(_MOV_X, 3, 10),
        Insn(_ADD_K, 3, 0, 0, -16),         # r3 = &args
        Insn(_MOV_K, 4, 0, 0, 0),           # flags
        Insn(I.CALL, 0, 0, 0, Helper.loop),
        Insn(I.EXIT),
    ]
    cb = [
        Insn(_LDX_DW, 7, 2, 0),             # r7 = args.len
        Insn(_LDX_DW, 8, 2, 8),             # r8 = args.base
        Insn(_ADD_X, 8, 1),                 # r8 = seq = base + index
        Insn(_STX_DW, 10, 8, -64),          # slot 0 = seq
    ]
    for k in range(1, 8):
        cb += [
            Insn(_MOV_X, 3, 8),
            Insn(_LSH_K, 3, 0, 0, 8),
            Insn(_OR_K, 3, 0, 0, k),
            Insn(_STX_DW, 10, 3, -64 + 8 * k),
        ]
    cb += [
        Insn(_MOV_K, 0, 0, 0, 1),
        Insn(_JGT_K, 7, 0, 7, MAX_LEN),     # len > 64: stop the loop (7 insns below)
        *_ldimm64(1, I.BPF_PSEUDO_MAP_FD, map_fd),
        Insn(_MOV_X, 2, 10),
        Insn(_ADD_K, 2, 0, 0, -64),
        Insn(_MOV_X, 3, 7),
        Insn(_MOV_K, 4, 0, 0, 0),
        Insn(I.CALL, 0, 0, 0, Helper.ringbuf_output),
        Insn(_MOV_K, 0, 0, 0, 0),           # continue
        Insn(I.EXIT),
    ]
    # bpf_loop's callback: ldimm64 with src=BPF_PSEUDO_FUNC, imm = insn delta to the
    # callback from the instruction after the ldimm64's first half.
    ld = 6
    main[ld].imm = len(main) - ld - 1
    return I.encode(main + cb), len(main)


def btf_and_func_info(main_len: int) -> tuple[bytes, bytes]:
    """Minimal BTF (two static FUNCs) and func_info: bpf_loop callbacks need func_info."""
    strings = b"\0int\0ctx\0produce\0cb\0i\0"
    off = {n: strings.index(b"\0" + n.encode() + b"\0") + 1 for n in ("int", "ctx", "produce", "cb", "i")}

    def hdr(name: int, kind: int, vlen: int, size_or_type: int) -> bytes:
        return struct.pack("<III", name, (kind << 24) | vlen, size_or_type)

    types = b"".join([
        hdr(off["int"], 1, 0, 4) + struct.pack("<I", (1 << 24) | 32),       # [1] int
        hdr(0, 2, 0, 0),                                                     # [2] void *
        hdr(0, 13, 1, 1) + struct.pack("<II", off["ctx"], 2),                # [3] int (void *ctx)
        hdr(off["produce"], 12, 0, 3),                                       # [4] static produce
        hdr(0, 13, 2, 1) + struct.pack("<IIII", off["i"], 1, off["ctx"], 2),  # [5] int (int i, void *ctx)
        hdr(off["cb"], 12, 0, 5),                                            # [6] static cb
    ])
    btf = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings)) + types + strings
    return btf, struct.pack("<IIII", 0, 4, main_len, 6)


def expected(seq: int, length: int) -> bytes:
    data = struct.pack("<Q", seq) + b"".join(struct.pack("<Q", ((seq << 8) | k) & (2**64 - 1)) for k in range(1, 8))
    return data[:length]


class Producer:
    """A ringbuf map plus the loaded producer program; close() releases both."""

    def __init__(self, ring_size: int, name: str = "tk_rb") -> None:
        self.map = Map.create(MapType.RINGBUF, 0, 0, ring_size, name=name)
        self.btf: FD | None = None
        try:
            code, main_len = program(self.map.fd)
            btf, func_info = btf_and_func_info(main_len)
            self.btf = sysbpf.load_btf(btf, "tk_rb_produce")
            # SYSCALL programs must be sleepable (BPF_F_SLEEPABLE = 1 << 4).
            self.prog: FD = sysbpf.load_program(
                ProgType.SYSCALL, code, name="tk_rb_produce", prog_flags=1 << 4,
                prog_btf_fd=self.btf.fd, func_info=func_info, func_info_rec_size=8)
        except BaseException:
            if self.btf is not None:
                self.btf.close()
            self.map.close()
            raise
        self.ring_size = ring_size

    def run(self, nr: int, length: int = 48, base: int = 0) -> int:
        """Produce ``nr`` records (seq ``base..base+nr-1``); returns bpf_loop's count."""
        res = sysbpf.prog_test_run(self.prog.fd, ctx_in=struct.pack("<IIQ", nr, length, base))
        return res.retval

    def close(self) -> None:
        self.prog.close()
        if self.btf is not None:
            self.btf.close()
        self.map.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""BPF instructions: encoding, decoding and the opcode constants relocation code needs.

Programs are kept as lists of :class:`Insn` while they are relocated (CO-RE, calls, maps,
externs) and encoded to bytes once, just before BPF_PROG_LOAD.  A 16-byte ldimm64 is two
``Insn`` slots, as on the wire, so instruction indices equal those in relocations and
BTF.ext records.
"""

from __future__ import annotations

import struct

from tracekit._record import Record

INSN_SIZE = 8

# instruction classes
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# size modifiers
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_DW = 0x18

# mode modifiers
BPF_IMM = 0x00
BPF_MEM = 0x60
BPF_MEMSX = 0x80
BPF_ATOMIC = 0xC0

# alu/jmp ops
BPF_K = 0x00
BPF_X = 0x08
BPF_ADD = 0x00
BPF_MOV = 0xB0
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JA = 0x00

# src_reg values of special instructions
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW  # 0x18
CALL = BPF_JMP | BPF_CALL  # 0x85
EXIT = BPF_JMP | BPF_EXIT  # 0x95

#: libbpf's marker for an instruction poisoned by a failed CO-RE relocation
POISON_CORE = 0xBAD2310
#: marker for a call to an unresolved weak kfunc / extern
POISON_EXTERN = 0x0BAD0000 | 2002  # kept distinct from the CO-RE marker

SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}
BYTES_SIZE = {4: BPF_W, 2: BPF_H, 1: BPF_B, 8: BPF_DW}

_S = struct.Struct("<BBhi")


class Insn(Record):
    # a plain class, not a dataclass: see tracekit._record (start-up cost, issue 13)
    __slots__ = ("code", "dst", "src", "off", "imm")
    _fields = __slots__

    def __init__(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self.code = code
        self.dst = dst
        self.src = src
        self.off = off
        self.imm = imm

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def is_ldimm64(self) -> bool:
        return self.code == LD_IMM64

    @property
    def is_call(self) -> bool:
        return self.code == CALL

    @property
    def is_subprog_call(self) -> bool:
        return self.code == CALL and self.src == BPF_PSEUDO_CALL

    @property
    def is_helper_call(self) -> bool:
        return self.code == CALL and self.src == 0

    @property
    def is_exit(self) -> bool:
        return self.code == EXIT

    @property
    def mem_size(self) -> int:
        """Access size in bytes of an LDX/ST/STX instruction."""
        return SIZE_BYTES[self.code & 0x18]

    def copy(self) -> Insn:
        return Insn(self.code, self.dst, self.src, self.off, self.imm)

    def __repr__(self) -> str:
        return f"Insn(code={self.code:#04x}, dst=r{self.dst}, src=r{self.src}, off={self.off}, imm={self.imm})"


def decode(data: bytes | memoryview) -> list[Insn]:
    """Bytes (little-endian BPF) -> instructions."""
    if len(data) % INSN_SIZE:
        raise ValueError(f"program size {len(data)} is not a multiple of {INSN_SIZE}")
    out = []
    for code, regs, off, imm in _S.iter_unpack(data):
        out.append(Insn(code, regs & 0x0F, regs >> 4, off, imm))
    return out


def encode(insns: list[Insn]) -> bytes:
    """Instructions -> bytes (little-endian BPF)."""
    pack = _S.pack
    return b"".join(
        pack(i.code, (i.src << 4) | (i.dst & 0x0F), i.off, _to_s32(i.imm)) for i in insns
    )


def _to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def ldimm64_value(insns: list[Insn], i: int) -> int:
    """The 64-bit immediate of the ldimm64 starting at ``insns[i]``."""
    return (insns[i].imm & 0xFFFFFFFF) | ((insns[i + 1].imm & 0xFFFFFFFF) << 32)


def set_ldimm64(insns: list[Insn], i: int, value: int, src: int | None = None) -> None:
    """Set the 64-bit immediate (and optionally src_reg) of an ldimm64."""
    value &= 0xFFFFFFFFFFFFFFFF
    insns[i].imm = _to_s32(value & 0xFFFFFFFF)
    insns[i + 1].imm = _to_s32(value >> 32)
    if src is not None:
        insns[i].src = src


def poison(insns: list[Insn], i: int, marker: int = POISON_CORE) -> None:
    """Turn ``insns[i]`` (both halves of an ldimm64) into ``call marker``.

    An invalid helper id makes the verifier fail on this instruction only if it is
    reachable, so code guarded by a branch the verifier proves dead still loads, and live
    code fails with a marker the loader recognises in the log.
    """
    n = 2 if insns[i].is_ldimm64 else 1
    for j in range(i, i + n):
        insns[j] = Insn(CALL, 0, 0, 0, marker)


def mov64_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)


def exit_insn() -> Insn:
    return Insn(EXIT)

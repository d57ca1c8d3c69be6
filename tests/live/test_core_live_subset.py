"""CO-RE conformance, run by the kernel: the local build relocated against the TARGET
build's BTF (tracekit.open(..., btf=...)) loads, runs on sys_enter, and reads a
TARGET-layout record through the relocated offsets, shifts and sizes."""

from __future__ import annotations

import os
import struct

import tracekit
from tests.support import require_live
from tests.tools.core_objects import build_pair
from tracekit.btf.types import Kind


def test_core_subset_runs_against_a_foreign_target_btf() -> None:
    require_live()
    pair = build_pair("core_live_subset.bpf.c")
    target = pair.target
    rec_id = target.find("ls_rec", Kind.STRUCT)[0]
    members = {m.name: m for m in target.type(rec_id).members}
    assert members["a"].bit_offset == 24 * 8  # the TARGET layout differs from the local one
    # a TARGET-layout record: a=-7, b=123456, c=1<<40|5, x=45, y=-9, w=70000
    raw = bytearray(64)
    struct.pack_into("<i", raw, 24, -7)
    struct.pack_into("<i", raw, 20, 123456)
    struct.pack_into("<q", raw, 8, (1 << 40) | 5)
    bits = int.from_bytes(raw[16:20], "little")
    bits |= (45 & 0x3F) << 7 | ((-9) & 0x1F) << 13
    raw[16:20] = bits.to_bytes(4, "little")
    struct.pack_into("<I", raw, 28, 70000)

    with tracekit.open(pair.local_path, btf=pair.target_path) as obj:
        obj.rodata.target_tgid = os.getpid()
        obj.bss.blob = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 64, 8)]
        obj.attach()
        os.getppid()
        assert obj.bss.hits >= 1
        res = [v - (1 << 64) if v >> 63 else v for v in obj.bss.res]
    assert res == [
        -7, 123456, (1 << 40) | 5,  # a, b, c at their TARGET offsets
        45, -9,                     # bitfields, unsigned and signed, moved and resized
        70000,                      # w grew from u16 to u32: the load size followed
        8, target.size_of(rec_id),  # offset of c, sizeof(struct ls_rec) in the target
        10, 0, 1,                   # enum value LS_ONE in the target, a missing type, an existing field
        rec_id,                     # the target's type id
    ]

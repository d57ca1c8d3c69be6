"""BTF.ext: per-section func_info, line_info and CO-RE relocation records.

In the file, record offsets are *byte* offsets into their ELF section; here they become
*instruction indices* (``insn_off // 8``), the unit the kernel's ``bpf_func_info`` and
``bpf_line_info`` use, and the unit relocation code thinks in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tracekit.btf.reader import BTF
from tracekit.errors import BTFError

BTF_EXT_MAGIC = 0xEB9F

FUNC_INFO_SIZE = 8  # insn_off, type_id
LINE_INFO_SIZE = 16  # insn_off, file_name_off, line_off, line_col
CORE_RELO_SIZE = 16  # insn_off, type_id, access_str_off, kind


@dataclass(slots=True)
class FuncInfo:
    insn: int  # instruction index
    type_id: int  # a BTF FUNC in the object BTF


@dataclass(slots=True)
class LineInfo:
    insn: int
    file_name_off: int  # string offsets into the object BTF's string table
    line_off: int
    line_col: int  # line << 10 | column

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF


@dataclass(slots=True)
class CoreRelo:
    insn: int
    type_id: int  # local type id (object BTF)
    access: str  # access string, e.g. "0:1:2"
    kind: int  # bpf_core_relo_kind
    access_off: int = 0  # the access string's offset in the object BTF (kept for re-encoding)


@dataclass
class BTFExt:
    """Parsed BTF.ext, records grouped by ELF section name."""

    func_info: dict[str, list[FuncInfo]] = field(default_factory=dict)
    line_info: dict[str, list[LineInfo]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRelo]] = field(default_factory=dict)
    func_info_rec_size: int = FUNC_INFO_SIZE
    line_info_rec_size: int = LINE_INFO_SIZE
    core_relo_rec_size: int = CORE_RELO_SIZE

    @classmethod
    def parse(cls, data: bytes, btf: BTF) -> BTFExt:
        if len(data) < 24:
            raise BTFError(f".BTF.ext: {len(data)} bytes is too short for a header")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_EXT_MAGIC:
            raise BTFError(f".BTF.ext: bad magic {magic:#06x}")
        if version != 1:
            raise BTFError(f".BTF.ext: unsupported version {version}")
        if hdr_len < 24 or hdr_len > len(data):
            raise BTFError(f".BTF.ext: bad header length {hdr_len}")
        fi_off, fi_len, li_off, li_len = struct.unpack_from("<IIII", data, 8)
        cr_off = cr_len = 0
        if hdr_len >= 32:
            cr_off, cr_len = struct.unpack_from("<II", data, 24)
        ext = cls()

        def blocks(off: int, length: int, min_rec: int, what: str) -> tuple[int, list[tuple[str, list[bytes]]]]:
            if length == 0:
                return 0, []
            start = hdr_len + off
            end = start + length
            if end > len(data) or length < 4:
                raise BTFError(f".BTF.ext: {what} section runs past the end")
            rec_size = struct.unpack_from("<I", data, start)[0]
            if rec_size < min_rec or rec_size % 4:
                raise BTFError(f".BTF.ext: {what} record size {rec_size} is invalid")
            pos = start + 4
            out = []
            while pos < end:
                if pos + 8 > end:
                    raise BTFError(f".BTF.ext: truncated {what} block header")
                sec_off, n = struct.unpack_from("<II", data, pos)
                pos += 8
                if n == 0 or pos + n * rec_size > end:
                    raise BTFError(f".BTF.ext: {what} block with {n} records is invalid")
                recs = [data[pos + i * rec_size : pos + i * rec_size + min_rec] for i in range(n)]
                out.append((btf.string(sec_off), recs))
                pos += n * rec_size
            return rec_size, out

        ext.func_info_rec_size, fis = blocks(fi_off, fi_len, FUNC_INFO_SIZE, "func_info")
        for sec, recs in fis:
            ext.func_info[sec] = [FuncInfo(o // 8, t) for o, t in (struct.unpack("<II", r) for r in recs)]
        ext.line_info_rec_size, lis = blocks(li_off, li_len, LINE_INFO_SIZE, "line_info")
        for sec, recs in lis:
            ext.line_info[sec] = [LineInfo(o // 8, f, ln, c) for o, f, ln, c in (struct.unpack("<IIII", r) for r in recs)]
        ext.core_relo_rec_size, crs = blocks(cr_off, cr_len, CORE_RELO_SIZE, "core_relo")
        for sec, recs in crs:
            lst = []
            for r in recs:
                o, t, a, k = struct.unpack("<IIII", r)
                lst.append(CoreRelo(o // 8, t, btf.string(a), k, a))
            ext.core_relos[sec] = lst
        return ext


def encode_func_info(recs: list[FuncInfo]) -> bytes:
    """Kernel ``bpf_func_info`` array (insn_off in instructions)."""
    return b"".join(struct.pack("<II", r.insn, r.type_id) for r in recs)


def encode_line_info(recs: list[LineInfo]) -> bytes:
    """Kernel ``bpf_line_info`` array (insn_off in instructions)."""
    return b"".join(struct.pack("<IIII", r.insn, r.file_name_off, r.line_off, r.line_col) for r in recs)

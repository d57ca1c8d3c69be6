"""BTF.ext: per-section func_info, line_info and CO-RE relocation records.

In the file, record offsets are *byte* offsets into their ELF section; here they become
*instruction indices* (``insn_off // 8``), the unit the kernel's ``bpf_func_info`` and
``bpf_line_info`` use, and the unit relocation code thinks in.
"""

from __future__ import annotations

import struct

from tracekit._record import Record
from tracekit.btf.reader import BTF
from tracekit.errors import BTFError

BTF_EXT_MAGIC = 0xEB9F

FUNC_INFO_SIZE = 8  # insn_off, type_id
LINE_INFO_SIZE = 16  # insn_off, file_name_off, line_off, line_col
CORE_RELO_SIZE = 16  # insn_off, type_id, access_str_off, kind


# Plain classes rather than dataclasses: see tracekit._record (start-up cost, issue 13).


class FuncInfo(Record):
    __slots__ = ("insn", "type_id")
    _fields = __slots__

    def __init__(self, insn: int, type_id: int) -> None:
        self.insn = insn  # instruction index
        self.type_id = type_id  # a BTF FUNC in the object BTF


class LineInfo(Record):
    __slots__ = ("insn", "file_name_off", "line_off", "line_col")
    _fields = __slots__

    def __init__(self, insn: int, file_name_off: int, line_off: int, line_col: int) -> None:
        self.insn = insn
        self.file_name_off = file_name_off  # string offsets into the object BTF's string table
        self.line_off = line_off
        self.line_col = line_col  # line << 10 | column

    @property
    def line(self) -> int:
        return self.line_col >> 10

    @property
    def column(self) -> int:
        return self.line_col & 0x3FF


class CoreRelo(Record):
    __slots__ = ("insn", "type_id", "access", "kind", "access_off")
    _fields = __slots__

    def __init__(self, insn: int, type_id: int, access: str, kind: int, access_off: int = 0) -> None:
        self.insn = insn
        self.type_id = type_id  # local type id (object BTF)
        self.access = access  # access string, e.g. "0:1:2"
        self.kind = kind  # bpf_core_relo_kind
        self.access_off = access_off  # the access string's offset in the object BTF (kept for re-encoding)


class BTFExt(Record):
    """Parsed BTF.ext, records grouped by ELF section name."""

    _fields = ("func_info", "line_info", "core_relos", "func_info_rec_size", "line_info_rec_size",
               "core_relo_rec_size")

    def __init__(self, func_info: dict[str, list[FuncInfo]] | None = None,
                 line_info: dict[str, list[LineInfo]] | None = None,
                 core_relos: dict[str, list[CoreRelo]] | None = None,
                 func_info_rec_size: int = FUNC_INFO_SIZE, line_info_rec_size: int = LINE_INFO_SIZE,
                 core_relo_rec_size: int = CORE_RELO_SIZE) -> None:
        self.func_info: dict[str, list[FuncInfo]] = {} if func_info is None else func_info
        self.line_info: dict[str, list[LineInfo]] = {} if line_info is None else line_info
        self.core_relos: dict[str, list[CoreRelo]] = {} if core_relos is None else core_relos
        self.func_info_rec_size = func_info_rec_size
        self.line_info_rec_size = line_info_rec_size
        self.core_relo_rec_size = core_relo_rec_size

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

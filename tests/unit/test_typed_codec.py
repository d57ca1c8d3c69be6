"""Typed-map codecs (tracekit.data.typed.Codec) against the BTF clang emits for
tests/objects/typed_maps.bpf.c: exact bytes of the C layout, no kernel needed."""

from __future__ import annotations

import struct

import pytest

import tracekit
from tracekit.data.typed import Codec
from tracekit.errors import MapCodecError


@pytest.fixture(scope="module")
def spec(bpf_objects):
    obj = tracekit.open(bpf_objects("typed_maps.bpf.c"))
    yield obj.spec
    obj.close()


def codec(spec, name: str, which: str) -> Codec:
    m = spec.maps[name]
    tid = m.key_type_id if which == "key" else m.value_type_id
    return Codec(spec.btf, tid, m.key_size if which == "key" else m.value_size, f"{name} {which}")


# struct val: u64 count; u32 pid; char comm[16]; s32 delta; u8 tag[3]; (pad) u16 arr[4];
# struct inner {u16 a; s8 b; (pad)} in; enum color; u32 lo:3, mid:7, hi:22  -> 56 bytes
VAL_FMT = struct.Struct("<QI16si3sx4HHbxII")


def test_struct_value_exact_bytes(spec) -> None:
    c = codec(spec, "a_struct", "value")
    assert c.size == VAL_FMT.size == 56
    v = {"count": 2**63 + 5, "pid": 77, "comm": "ab", "delta": -2, "tag": b"\x09", "arr": [1, 2],
         "in": {"a": 0xBEEF, "b": -1}, "color": "GREEN", "lo": 5, "mid": 0x7F, "hi": (1 << 22) - 1}
    want = VAL_FMT.pack(2**63 + 5, 77, b"ab", -2, b"\x09\0\0", 1, 2, 0, 0, 0xBEEF, -1, 2,
                        5 | (0x7F << 3) | (((1 << 22) - 1) << 10))
    assert c.encode(v) == want
    rec = c.decode(want)
    assert (rec.count, rec.comm, rec.tag, rec.arr, rec.in_.b, rec.color, rec.hi) == (
        2**63 + 5, "ab", b"\x09\0\0", (1, 2, 0, 0), -1, 2, (1 << 22) - 1)
    assert c.encode(rec) == want  # records re-encode to their bytes
    assert c.encode(rec._asdict()) == want  # and so do their dicts (nested dicts, "in_" for "in")


def test_struct_key_and_scalars(spec) -> None:
    k = codec(spec, "h_struct", "key")
    assert k.encode((1, "kernel")) == struct.pack("<I12s", 1, b"kernel")
    assert k.encode({"comm": "x"}) == struct.pack("<I12s", 0, b"x")
    assert codec(spec, "lru", "value").encode(-1) == b"\xff" * 4
    assert codec(spec, "lru", "value").decode(b"\xfe\xff\xff\xff") == -2
    assert codec(spec, "lru", "key").encode(1 << 63) == (1 << 63).to_bytes(8, "little")
    assert codec(spec, "h_arr", "value").decode(struct.pack("<4I", 1, 2, 3, 4)) == [1, 2, 3, 4]
    assert codec(spec, "h_str", "value").decode(b"hi\0junk" + bytes(9)) == "hi"


def test_codec_errors(spec) -> None:
    c = codec(spec, "a_struct", "value")
    with pytest.raises(MapCodecError, match=r"a_struct value: 57 bytes given, struct val is 56 bytes"):
        c.encode(bytes(57))
    with pytest.raises(MapCodecError, match=r"a_struct value.arr: 5 items do not fit"):
        c.encode({"arr": [0] * 5})
    with pytest.raises(MapCodecError, match="give struct val as a dict"):
        c.encode(3.5)
    with pytest.raises(MapCodecError, match=r"a_struct value.lo: -5 does not fit in a 3-bit field"):
        c.encode({"lo": -5})

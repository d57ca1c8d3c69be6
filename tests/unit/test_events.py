"""EventType: compile C layouts from clang's BTF and decode bytes packed by hand."""

from __future__ import annotations

import struct

import pytest

from tests.support import build_bpf_object
from tracekit.btf.reader import BTF
from tracekit.errors import BTFError
from tracekit.events.records import DecodeError, EventType, find_event_type


@pytest.fixture(scope="module")
def btf() -> BTF:
    return BTF.from_file(str(build_bpf_object("events_types.bpf.c")))


def pack_event(**kw: object) -> bytes:
    """struct event, packed field by field from the C layout (offsets in the .bpf.c)."""
    b = bytearray(136)
    struct.pack_into("<IiQq", b, 0, kw["pid"], kw["err"], kw["ts"], kw["delta"])
    b[24:40] = kw["comm"]
    struct.pack_into("<B7xQ6s", b, 40, kw["tag"], kw["value"], kw["label"])  # struct inner
    struct.pack_into("<ih2x", b, 64, 7, -8)  # pts[0]
    struct.pack_into("<ih2x", b, 72, -9, 10)  # pts[1]
    struct.pack_into("<ih", b, 80, 0x11223344, 0x55)  # union payload via .pt
    # bitfields in one u16 at 88: flags:3 | level:5 (signed) | mode:8
    struct.pack_into("<H", b, 88, kw["flags"] | ((kw["level"] & 0x1F) << 3) | (kw["mode"] << 8))
    struct.pack_into("<i", b, 92, kw["color"])
    b[96:99] = b"\x01\x02\xff"
    struct.pack_into("<3I", b, 100, 1, 2, 0xFFFFFFFF)
    b[112:120] = b"ab\0zcdef"  # names[0] = "ab", names[1] = "cdef" (no NUL: full length)
    struct.pack_into("<I", b, 120, 0xAABBCCDD)  # anonymous union
    b[124], b[125], b[126] = 5, 6, 1
    struct.pack_into("<Q", b, 128, 0x1FFFFFFFF)
    return bytes(b)


SAMPLE = dict(pid=4242, err=-2, ts=0x0123456789ABCDEF, delta=-(1 << 40), comm=b"bash\0garbage\0\0\0\0",
              tag=0xFE, value=(1 << 64) - 1, label=b"lab\0el", flags=5, level=-3, mode=200, color=-3)


def test_layout_matches_c(btf: BTF) -> None:
    et = EventType.from_btf(btf, "event")
    assert et.size == 136
    assert et.struct.size == 136
    assert et.fields == ("pid", "err", "ts", "delta", "comm", "in_", "pts", "pl", "flags", "level", "mode",
                         "color", "raw", "nums", "names", "a32", "a16", "s1", "s2", "ok", "big")


def test_decode_every_construct(btf: BTF) -> None:
    et = EventType.from_btf(btf, "event")
    ev = et.decode(pack_event(**SAMPLE))
    assert type(ev).__name__ == "event"
    assert (ev.pid, ev.err, ev.ts, ev.delta) == (4242, -2, 0x0123456789ABCDEF, -(1 << 40))
    assert ev.comm == "bash"  # up to the first NUL
    assert (ev.in_.tag, ev.in_.value, ev.in_.label) == (0xFE, (1 << 64) - 1, "lab")
    assert [(p.x, p.y) for p in ev.pts] == [(7, -8), (-9, 10)]
    assert ev.pl.word == 0x11223344
    assert ev.pl.bytes == b"\x44\x33\x22\x11"
    assert (ev.pl.pt.x, ev.pl.pt.y) == (0x11223344, 0x55)
    assert (ev.flags, ev.level, ev.mode) == (5, -3, 200)
    assert ev.color == -3  # enum -> int (signed enum)
    assert ev.raw == b"\x01\x02\xff"  # unsigned byte array stays bytes
    assert ev.nums == (1, 2, 0xFFFFFFFF)
    assert ev.names == ("ab", "cdef")
    assert (ev.a32, ev.a16) == (0xAABBCCDD, 0xCCDD)
    assert (ev.s1, ev.s2) == (5, 6)
    assert ev.ok is True
    assert ev.big == 0x1FFFFFFFF  # enum64
    d = ev._asdict()
    assert d["in_"] == {"tag": 0xFE, "value": (1 << 64) - 1, "label": "lab"}
    assert d["pts"] == ({"x": 7, "y": -8}, {"x": -9, "y": 10})
    assert d["comm"] == "bash"
    r = repr(ev)
    assert r.startswith("event(pid=4242, err=-2, ") and "comm='bash'" in r and "in_=inner(tag=254" in r


def test_invalid_utf8_is_replaced(btf: BTF) -> None:
    et = EventType.from_btf(btf, "event")
    ev = et.decode(pack_event(**{**SAMPLE, "comm": b"a\xffb\0" + bytes(12)}))
    assert ev.comm == "a\ufffdb"


def test_decode_batch_fixed_and_mixed(btf: BTF) -> None:
    et = EventType.from_btf(btf, "small_event")
    assert et.size == 48
    recs = [struct.pack("<QII16sQQ", i, i + 1, i % 2, b"t%d" % i, i * 3, (1 << 64) - i - 1) for i in range(50)]
    out = et.decode_batch(recs)
    assert [(e.ts, e.pid, e.cpu, e.comm, e.a, e.b) for e in out] == [
        (i, i + 1, i % 2, f"t{i}", i * 3, (1 << 64) - i - 1) for i in range(50)]
    # records longer than the struct (trailing bytes ignored), of mixed lengths
    mixed = [recs[0] + b"xx", recs[1], recs[2] + bytes(8)]
    assert [e.ts for e in et.decode_batch(mixed)] == [0, 1, 2]
    # the strided form the ring reader uses: 8-byte header, 48 bytes, no padding
    blob = b"".join(struct.pack("<II", 48, 0) + r for r in recs)
    assert et.decode_strided(blob, 8, 56, 50) == out


def test_short_record_decodes_zero_padded(btf: BTF) -> None:
    # Programs emit only the used prefix of big events; the missing tail reads as zeros.
    et = EventType.from_btf(btf, "small_event")
    full = et.decode(bytes(range(40)) + bytes(8))
    short = et.decode(bytes(range(40)))
    assert short == full
    assert et.decode_batch([bytes(40), bytes(40)]) == [et.decode(bytes(48))] * 2


def test_union_type_and_padding(btf: BTF) -> None:
    pl = EventType.from_btf(btf, "payload")
    assert pl.size == 8
    v = pl.decode(struct.pack("<ih", -1, 3) + b"\0\0")
    assert (v.word, v.pt.x, v.pt.y) == (0xFFFFFFFF, -1, 3)
    pt = EventType.from_btf(btf, "point")
    assert pt.size == 8 and pt.format == "<ih"  # 2 bytes of tail padding are not decoded
    assert pt.decode_batch([struct.pack("<ih2x", 1, 2), struct.pack("<ih2x", 3, 4)]) == [(1, 2), (3, 4)]


def test_find_event_type_conventions(btf: BTF) -> None:
    assert btf.name_of(find_event_type(btf, "events")) == "event"  # variable __event_events
    assert btf.name_of(find_event_type(btf, "small")) == "small_event"  # variable __event_small
    assert btf.name_of(find_event_type(btf, "other")) == "event"  # falls back to struct event
    assert EventType.for_map(btf, "small").size == 48


def test_errors(btf: BTF) -> None:
    with pytest.raises(BTFError, match="no struct or union named 'nope'"):
        EventType.from_btf(btf, "nope")
    color = btf.find("color")[0]
    with pytest.raises(DecodeError, match="not a struct or union"):
        EventType.from_btf(btf, color)

"""EventType.eager(): char arrays decoded with the batch give exactly the lazy values."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from tests.support import build_bpf_object
from tracekit.btf.reader import BTF
from tracekit.events.records import DecodeError, EventType, _cstr

OPENSNOOP_O = Path(__file__).resolve().parents[2] / "tracekit" / "probes" / "opensnoop.bpf.o"


@pytest.fixture(scope="module")
def btf() -> BTF:
    return BTF.from_file(str(build_bpf_object("events_types.bpf.c")))


@pytest.fixture(scope="module")
def open_event() -> EventType:
    # opensnoop's struct event: two char arrays (comm[16] at 32, fname[255] at 48), 304 bytes
    return EventType.from_btf(BTF.from_file(str(OPENSNOOP_O)), "event")


# Strings that stress "cut at the first NUL, then UTF-8 with replacement": no NUL at all
# (full width), NUL first, multi-byte sequences whole, cut by the NUL, cut by the field
# end, invalid bytes, and bytes after the NUL that are not UTF-8 (left-overs of an
# earlier record in the ring).
def _fields(width: int, rng: random.Random) -> list[bytes]:
    fixed = [b"", b"\0" * width, b"x" * width, b"\xff" * width, "é".encode() * (width // 2),
             b"ab\xc3", b"ab\xc3\0\xa9zz", b"\xe2\x82\0\xac", "€".encode() * (width // 3) + b"\xe2\x82",
             b"bash\0garbage\xff\xfe", b"\0\xff\xff\xff", b"/dev/null"]
    out = [f[:width].ljust(width, b"\0") for f in fixed]
    for _ in range(60):
        out.append(bytes(rng.choice(b"a\0\xc3\xa9\xe2\x82\xac\xff\x80/") for _ in range(width)))
    return out


def _attrs(recs: list) -> list[dict]:
    return [r._asdict() for r in recs]


def test_strings_are_the_last_slots_and_values_match(btf: BTF) -> None:
    et = EventType.from_btf(btf, "small_event")
    eg = et.eager()
    assert eg.fields == et.fields and eg.size == et.size == 48 and eg.struct.size == et.struct.size
    raw = struct.pack("<QII16sQQ", 7, 8, 1, b"t\xc3\xa9st\0junk", 9, 10)
    lazy, eager = et.decode(raw), eg.decode(raw)
    assert eager._asdict() == lazy._asdict() == {"ts": 7, "pid": 8, "cpu": 1, "comm": "tést", "a": 9, "b": 10}
    assert tuple(eager) == (7, 8, 1, 9, 10, "tést")  # indexing: the eager string comes last, as str
    assert repr(eager) == repr(lazy)
    assert et.eager() is eg and et.eager("comm") is not None  # cached per field set


def test_eager_of_a_type_with_nested_and_lazy_members(btf: BTF) -> None:
    from tests.unit.test_events import SAMPLE, pack_event

    et = EventType.from_btf(btf, "event")
    eg = et.eager()  # comm is the only top-level char array; names[2][4] and in_.label stay lazy
    raw = pack_event(**SAMPLE)
    assert eg.decode(raw)._asdict() == et.decode(raw)._asdict()
    blob = b"".join(struct.pack("<II", 136, 0) + raw for _ in range(3))
    assert _attrs(eg.decode_strided(blob, 8, 144, 3)) == _attrs(et.decode_strided(blob, 8, 144, 3))


def test_strided_batches_equal_lazy_decoding(open_event: EventType) -> None:
    rng = random.Random(13)
    comms, fnames = _fields(16, rng), _fields(255, rng)
    rng.shuffle(fnames)
    n = min(len(comms), len(fnames))
    recs = [struct.pack("<QiiIiiI16s255sx", i, 100 + i, -i, i * 7, -2 if i % 3 else i, i, 0o644, comms[i], fnames[i])
            for i in range(n)]
    eg = open_event.eager()
    assert len(recs[0]) == open_event.size == 304
    for skip, stride in ((8, 312), (0, 304), (8, 320)):  # the ring's header and padding, none, more
        blob = b"".join(bytes(skip) + r + bytes(stride - skip - 304) for r in recs)
        lazy = open_event.decode_strided(blob, skip, stride, n)
        eager = eg.decode_strided(blob, skip, stride, n)
        assert _attrs(eager) == _attrs(lazy)
        assert [e.comm for e in eager] == [_cstr(c) for c in comms[:n]]
        assert [e.fname for e in eager] == [_cstr(f) for f in fnames[:n]]
        assert eg.decode_strided(blob + b"extra", skip, stride, n - 1) == eager[: n - 1]
        for i in range(n):  # a single record takes a path of its own
            one = eg.decode_strided(blob[i * stride : (i + 1) * stride], skip, stride, 1)
            assert one == [eager[i]] and type(one[0]) is type(eager[i])
    assert eg.decode_strided(b"", 8, 312, 0) == []
    # one record at a time, and short records (only a prefix sent): zero padded, like lazy
    assert _attrs(eg.decode_batch(recs[:5])) == _attrs(open_event.decode_batch(recs[:5]))
    short = [r[:40 + i] for i, r in enumerate(recs[:30])]
    assert _attrs(eg.decode_batch(short)) == _attrs(open_event.decode_batch(short))
    assert eg.decode(bytearray(10)).fname == "" and eg.decode(memoryview(recs[3])).comm == _cstr(comms[3])


def test_only_named_fields_are_eager(open_event: EventType) -> None:
    eg = open_event.eager("fname")
    raw = struct.pack("<QiiIiiI16s255sx", 1, 2, 3, 4, 5, 6, 7, b"comm\0x", b"/p\0q")
    ev = eg.decode(raw)
    assert (ev.comm, ev.fname) == ("comm", "/p")
    assert tuple(ev)[-1] == "/p" and tuple(ev)[-2] == b"comm\0x".ljust(16, b"\0")  # comm stays lazy bytes
    blob = (bytes(8) + raw + bytes(8)) * 4
    assert _attrs(eg.decode_strided(blob, 8, 320, 4)) == [open_event.decode(raw)._asdict()] * 4


def test_errors(btf: BTF, open_event: EventType) -> None:
    with pytest.raises(DecodeError, match=r"'pid' is not a char-array field .*comm, fname"):
        open_event.eager("pid")
    with pytest.raises(DecodeError, match="'nope' is not a char-array field"):
        open_event.eager("comm", "nope")
    with pytest.raises(DecodeError, match="already an eager variant"):
        open_event.eager().eager()
    point = EventType.from_btf(btf, "point")
    assert point.eager() is point  # nothing to decode eagerly: the type itself
    with pytest.raises(DecodeError, match="shorter than"):
        open_event.eager().decode_strided(bytes(600), 8, 300, 2)

"""Typed maps (tracekit.data.typed) against the running kernel: values encoded in user space
are read by a BPF program in the C layout, values written by a BPF program decode to the
right Python values, and every map type the loader creates round-trips typed values."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import tracekit
from tests.support import require_live
from tracekit.data.typed import PerCPU, TypedMap
from tracekit.errors import MapError
from tracekit.kernel.maps import Map, num_possible_cpus

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def obj_path(bpf_objects) -> str:
    require_live()
    return str(bpf_objects("typed_maps.bpf.c"))


@pytest.fixture
def obj(obj_path: str) -> Iterator[tracekit.Object]:
    with tracekit.open(obj_path) as o:
        o.load()
        yield o


def t(obj: tracekit.Object, name: str) -> TypedMap:
    return obj.maps[name].typed


VAL = {
    "count": 1000, "pid": 4242, "comm": "python3", "delta": -77, "tag": b"\x01\x02\x03",
    "arr": [100, 200, 300, 65535], "in": {"a": 9, "b": -3}, "color": "BLUE",
    "lo": 7, "mid": 99, "hi": 3_000_000,
}


def c_checksum(v: dict) -> int:
    """What the BPF program `check` folds a struct val into (s64 arithmetic, wrapping)."""
    s = v["count"] + v["pid"] + v["delta"]
    comm = v["comm"].encode().ljust(16, b"\0")
    s += sum(c * (i + 1) for i, c in enumerate(comm))
    s += sum(b * 1000 for b in v["tag"])
    s += sum(a * (i + 7) for i, a in enumerate(v["arr"]))
    s += v["in"]["a"] * 3 + v["in"]["b"] * 5 + 40 * 11  # BLUE = 40
    s += v["lo"] * 13 + v["mid"] * 17 + v["hi"] * 19
    s &= (1 << 64) - 1
    return s - (1 << 64) if s >> 63 else s


def test_struct_value_encoded_in_c_layout(obj) -> None:
    a = t(obj, "a_struct")
    a[1] = VAL
    obj.programs["check"].test_run()
    assert obj.bss.checksum == c_checksum(VAL)
    got = a[1]
    assert (got.count, got.pid, got.comm, got.delta, got.tag, got.arr) == (
        1000, 4242, "python3", -77, b"\x01\x02\x03", (100, 200, 300, 65535))
    assert (got.in_.a, got.in_.b, got.color, got.lo, got.mid, got.hi) == (9, -3, 40, 7, 99, 3_000_000)
    # raw bytes stay available, and a decoded record encodes back to the same bytes
    raw = obj.maps["a_struct"].raw.lookup(1)
    assert obj.maps["a_struct"].lookup(1) == raw  # ObjectMap's forwarded methods are bytes
    assert a.value_codec.encode(got) == raw
    a[2] = got
    assert obj.maps["a_struct"].raw.lookup(2) == raw
    # a tuple in field order; unnamed fields are zero
    a[3] = (5, 6, "x")
    assert (a[3].count, a[3].pid, a[3].comm, a[3].delta, a[3].arr) == (5, 6, "x", 0, (0, 0, 0, 0))
    # arrays always hold every index; an untouched element decodes to zeros
    assert a[0].comm == "" and a[0].count == 0 and len(a) == 4
    assert [k for k, _ in a.items()] == [0, 1, 2, 3]


def test_kernel_written_struct_key_and_value(obj) -> None:
    obj.programs["fill"].test_run()
    h = t(obj, "h_struct")
    [(k, v)] = h.items()
    assert (k.pid, k.comm) == (4242, "kernel")
    assert v.count == 0x1122334455667788 and v.comm == "from-bpf" and v.delta == -5
    assert (v.tag, v.arr, v.in_.a, v.in_.b, v.color) == (b"\x01\x02\x03", (10, 20, 30, 40), 65535, -128, 40)
    assert (v.lo, v.mid, v.hi) == (5, 100, 4000000)
    # the same key given as a dict, a tuple and the decoded record
    assert h[{"pid": 4242, "comm": "kernel"}] == v
    assert h[(4242, "kernel")].count == v.count
    assert h[k].pid == 7 and k in h
    assert (4242, "other") not in h and h.lookup((1, "x"), "absent") == "absent"
    h[(1, "user")] = {"count": 3}
    assert len(h) == 2 and sorted(x.pid for x in h) == [1, 4242]
    assert h.delete((1, "user")) and not h.delete((1, "user"))
    with pytest.raises(KeyError):
        del h[(1, "user")]
    assert [x.comm for x in h] == ["kernel"]


def test_hash_ints_and_read_and_reset(obj) -> None:
    h = t(obj, "h_u32")
    for i in range(40):
        h[i] = i * i
    assert len(h) == 40 and h[7] == 49 and 39 in h and 40 not in h
    assert dict(h.items()) == {i: i * i for i in range(40)}
    h[0] = -1  # two's complement for an unsigned value
    assert h[0] == (1 << 64) - 1
    popped = dict(h.pop_all())  # BPF_MAP_LOOKUP_AND_DELETE_BATCH
    assert len(popped) == 40 and popped[5] == 25 and len(h) == 0
    for i in range(10):
        h[i] = i
    assert dict(h.items(reset=True)) == {i: i for i in range(10)} and h.items() == []
    h[1] = 1
    h.clear()
    assert h.keys() == [] and h.values() == []


def test_percpu_hash_kernel_counts_and_per_cpu_updates(obj) -> None:
    n = num_possible_cpus()
    pc = t(obj, "pc_hash")
    fill = obj.programs["fill"]
    fill.test_run()
    fill.test_run()
    v = pc[3]
    assert isinstance(v, PerCPU) and len(v) == n
    # each run counts on the CPU it ran on (the two may differ if the task migrated)
    assert v.sum() == 2 and v.max() in (1, 2) and v.min() >= 0
    pc[5] = list(range(10, 10 + n))  # one value per CPU
    assert pc[5] == list(range(10, 10 + n)) and pc[5].sum() == sum(range(10, 10 + n))
    pc[6] = 4  # one value for every CPU
    assert pc[6] == [4] * n
    popped = dict(pc.pop_all())
    assert popped[3].sum() == 2 and popped[6].sum() == 4 * n and len(pc) == 0
    with pytest.raises(MapError, match="per-CPU"):
        t(obj, "h_u32").update(1, PerCPU([1] * n))


def test_percpu_array_of_structs(obj) -> None:
    n = num_possible_cpus()
    pa = t(obj, "pc_array")
    pa[0] = {"a": 1 << 40, "b": 7}  # 12-byte values at a 16-byte per-CPU stride
    pa[1] = PerCPU({"a": i, "b": 100 + i} for i in range(n))
    assert [(x.a, x.b) for x in pa[0]] == [(1 << 40, 7)] * n
    assert [(x.a, x.b) for x in pa[1]] == [(i, 100 + i) for i in range(n)]
    assert pa[1].sum() == {"a": sum(range(n)), "b": sum(100 + i for i in range(n))}
    assert pa[1].max() == {"a": n - 1, "b": 99 + n}
    got = dict(pa.pop_all())  # arrays: read, then zeroed
    assert got[0].sum()["a"] == n << 40
    assert [(x.a, x.b) for x in pa[0]] == [(0, 0)] * n and len(pa) == 2


def test_lru_hashes(obj) -> None:
    lru = t(obj, "lru")
    lru[1 << 60] = -12345
    lru[2] = 2**31 - 1
    assert lru[1 << 60] == -12345 and dict(lru.items()) == {1 << 60: -12345, 2: 2**31 - 1}
    n = num_possible_cpus()
    lp = t(obj, "lru_pc")
    lp[9] = list(range(n))
    assert lp[9].sum() == sum(range(n))
    assert dict(lp.pop_all())[9] == list(range(n)) and len(lp) == 0


def test_lpm_trie(obj) -> None:
    lpm = t(obj, "lpm")
    lpm[{"prefixlen": 8, "addr": bytes([10])}] = 1  # bytes shorter than the array are zero-padded
    lpm[(16, bytes([10, 1]))] = 2
    lpm[{"prefixlen": 24, "addr": [10, 2, 0, 0]}] = 3  # a list for a byte array
    a = t(obj, "a_struct")
    a[1] = VAL  # `check` needs its struct before it looks up 10.1.2.3
    obj.programs["check"].test_run()
    assert obj.bss.lpm_hit == 2  # longest matching prefix of 10.1.2.3 is 10.1/16
    keys = {(k.prefixlen, k.addr) for k in lpm}
    assert keys == {(8, b"\x0a\0\0\0"), (16, b"\x0a\x01\0\0"), (24, b"\x0a\x02\0\0")}
    assert lpm[(16, b"\x0a\x01\0\0")] == 2
    # no batch ops and no lookup-and-delete for tries: the element-wise fallback drains it
    assert sorted(v for _, v in lpm.pop_all()) == [1, 2, 3] and lpm.items() == []


def test_char_and_int_array_values(obj) -> None:
    s = t(obj, "h_str")
    s[1] = "hello"
    s[2] = b"bytes\0"
    assert s[1] == "hello" and s[2] == "bytes"
    assert obj.maps["h_str"].raw.lookup(1) == b"hello".ljust(16, b"\0")
    with pytest.raises(MapError, match="too long"):
        s[3] = "x" * 16  # no room for the NUL
    arr = t(obj, "h_arr")
    arr[1] = [1, 2, 3, 4]
    arr[2] = (9,)
    assert arr[1] == [1, 2, 3, 4] and arr[2] == [9, 0, 0, 0]
    with pytest.raises(MapError, match="5 items do not fit"):
        arr[3] = [1, 2, 3, 4, 5]


def test_encoding_errors_say_what_to_do(obj) -> None:
    a = t(obj, "a_struct")
    with pytest.raises(MapError, match=r"has no field 'nope' \(fields: count, pid, comm"):
        a[0] = {"nope": 1}
    with pytest.raises(MapError, match="does not fit in 4 bytes"):
        a[0] = {"pid": 1 << 32}
    with pytest.raises(MapError, match="does not fit in a 3-bit field"):
        a[0] = {"lo": 8}
    with pytest.raises(MapError, match="has no enumerator 'PINK'"):
        a[0] = {"color": "PINK"}
    with pytest.raises(MapError, match="expected an int"):
        t(obj, "h_u32")["one"] = 1


def test_pinned_map_typed_from_kernel_btf(obj, bpffs, no_leaks) -> None:
    obj.programs["fill"].test_run()
    path = os.path.join(bpffs, "h_struct")
    obj.maps["h_struct"].raw.pin(path)
    try:
        with Map.from_pin(path) as m:
            tm = TypedMap.for_map(m)  # types from the BTF the kernel keeps for the map
            assert repr(tm) == "<TypedMap 'h_struct' struct skey -> struct val>"
            [(k, v)] = tm.items()
            assert (k.pid, k.comm, v.comm, v.delta) == (4242, "kernel", "from-bpf", -5)
            tm[(5, "pinned")] = {"count": 9}
        assert obj.maps["h_struct"].typed[(5, "pinned")].count == 9
    finally:
        os.unlink(path)
    with Map.create(tracekit.uapi.MapType.HASH, 4, 8, 4) as plain:
        plain.update(1, 2)
        assert TypedMap.for_map(plain).items() == [(1, 2)]  # no BTF: ints by size


def test_typed_snapshot_cost_against_bytes(obj_path) -> None:
    """Ratios in one run: a typed snapshot of 5000 struct elements costs a few times the
    bytes batch it decodes, and less than walking the map key by key for bytes."""
    import time

    with tracekit.open(obj_path) as o:
        o.maps["h_struct"].max_entries = 5000
        o.load()
        tm = o.maps["h_struct"].typed
        raw = tm.raw
        raw.update_batch([tm.encode_key((i, f"k{i}")) for i in range(5000)],
                         [tm.value_codec.encode({"count": i, "comm": "c"}) for i in range(5000)])

        def best(f) -> float:
            b = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                assert len(f()) == 5000
                b = min(b, time.perf_counter() - t0)
            return b

        batch, typed_items, per_key = best(raw.lookup_batch), best(tm.items), best(lambda: list(raw.items()))
        assert typed_items < 6 * batch, (typed_items, batch)
        assert typed_items < per_key, (typed_items, per_key)
        assert {k.pid: v.count for k, v in tm.items()} == {i: i for i in range(5000)}

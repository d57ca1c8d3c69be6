"""Map `values` slots (map-in-map, prog arrays) and LIBBPF_PIN_BY_NAME pinning, live."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

import tracekit
from tests.support import require_live
from tracekit.kernel.maps import Map
from tracekit.kernel.syscalls import fs

pytestmark = pytest.mark.live


@pytest.fixture
def pin_dir() -> Iterator[str]:
    require_live()
    path = os.path.join(fs.bpffs_path(), f"tk-test-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def u64(b: bytes | None) -> int:
    assert b is not None
    return int.from_bytes(b, "little")


def test_values_slots_fill_map_in_map_and_prog_array(bpf_objects, pin_dir) -> None:
    with tracekit.open(bpf_objects("map_slots.bpf.c"), pin_root_path=pin_dir) as obj:
        obj.load()
        outer, jumps = obj.maps["outer"], obj.maps["jumps"]
        # the kernel reports the inner map's / program's id for a filled slot, ENOENT otherwise
        assert [outer.lookup(i) is not None for i in range(4)] == [True, False, True, False]
        assert [jumps.lookup(i) is not None for i in range(4)] == [False, True, False, True]
        assert u64(outer.lookup(0)) & 0xFFFFFFFF == obj.maps["inner_a"].info().id
        entry = obj.programs["entry"]
        assert entry.test_run() == 0  # tail call taken: slot 1 -> tail_a
        assert obj.bss.result == 100
        assert u64(obj.maps["inner_a"].lookup(0)) == 1
        assert entry.test_run() == 0  # slot 3 -> tail_b
        assert obj.bss.result == 200
        assert u64(obj.maps["inner_b"].lookup(0)) == 10


def test_pinned_map_is_shared_between_loads(bpf_objects, pin_dir) -> None:
    path = bpf_objects("map_slots.bpf.c")
    with tracekit.open(path, pin_root_path=pin_dir) as first:
        first.load()
        assert not first.maps["tk_shared_counts"].reused
        first.programs["entry"].test_run()
        assert os.path.exists(os.path.join(pin_dir, "tk_shared_counts"))
        with tracekit.open(path, pin_root_path=pin_dir) as second:
            second.load()
            assert second.maps["tk_shared_counts"].reused
            second.programs["entry"].test_run()
            key = (7).to_bytes(4, "little")
            assert u64(first.maps["tk_shared_counts"].lookup(key)) == 2
    # the pin outlives the objects, like libbpf's
    with Map.from_pin(os.path.join(pin_dir, "tk_shared_counts")) as m:
        assert u64(m.lookup((7).to_bytes(4, "little"))) == 2


def test_incompatible_pin_is_refused(bpf_objects, pin_dir) -> None:
    with Map.create(tracekit.uapi.MapType.ARRAY, 4, 8, 16, name="tk_shared_counts") as other:
        other.pin(os.path.join(pin_dir, "tk_shared_counts"))
    obj = tracekit.open(bpf_objects("map_slots.bpf.c"), pin_root_path=pin_dir)
    with pytest.raises(tracekit.LoadError, match="pinned at .* different definition: type 2 .object wants 1."):
        obj.load()
    obj.close()


def test_failed_load_leaves_no_pin(bpf_objects, pin_dir) -> None:
    obj = tracekit.open(bpf_objects("map_slots.bpf.c"), pin_root_path=pin_dir)
    obj.programs["tail_b"].autoload = False
    with pytest.raises(tracekit.LoadError, match="slot 3 names program 'tail_b', which is not loaded"):
        obj.load()
    obj.close()
    assert os.listdir(pin_dir) == []

"""LibraryView: one library's globals reached by name in two differently laid-out final objects."""

from __future__ import annotations

from pathlib import Path

import pytest

import tracekit
from tests.support import build_bpf_object, require_live
from tracekit.errors import LinkerError, TracekitError
from tracekit.kernel.syscalls import bpf

pytestmark = pytest.mark.live


def lib_user_code(lib: tracekit.LibraryView) -> None:
    """The library's user-space half: written once, works against any final object."""
    lib.lib_data = 1000  # .data, live


@pytest.fixture
def lib_o() -> Path:
    require_live()
    return build_bpf_object("link_lib.bpf.c")


@pytest.mark.parametrize(("main", "prog"), [("link_main.bpf.c", "main_prog"), ("link_other.bpf.c", "other_prog")])
def test_view_reads_and_writes_live(lib_o: Path, main: str, prog: str) -> None:
    with tracekit.open(build_bpf_object(main), link=[lib_o]) as obj:
        lib = tracekit.LibraryView(obj, lib_o)
        assert lib.name == "link_lib"
        assert set(lib.variables()) == {"lib_counter", "lib_data", "lib_factor", "lib_task_size", "lib_last"}
        assert "lib_private_hits" not in lib  # static: not part of the library's interface
        assert lib.lib_factor == 3 and lib.lib_data == 7
        lib.lib_factor = 5  # .rodata knob, before load
        obj.load()
        with pytest.raises(TracekitError, match="frozen"):
            lib.lib_factor = 6
        lib_user_code(lib)
        # the program sees what the view wrote, and the view sees what the program wrote
        assert obj.data.lib_data == 1000
        bpf.prog_test_run(obj.programs[prog].fd)
        if prog == "main_prog":
            assert obj.bss.res_add == 1005  # lib_add(lib_data, 5)
            assert lib.lib_counter == 1 and lib["lib_last"] == 9
        else:
            assert obj.bss.other_seen == 1009
            assert lib.lib_counter == 5 + 100  # lib_add(lib_factor=5, 100)
        lib.lib_counter = 0
        bpf.prog_test_run(obj.programs["lib_prog"].fd)
        assert lib.lib_counter == (10 if prog == "main_prog" else 2)  # strong vs weak lib_scale(1)
        assert obj.bss.lib_counter == lib.lib_counter
        assert lib.maps["shared_map"] is obj.maps["shared_map"]
        assert lib.programs["lib_prog"] is obj.programs["lib_prog"]


def test_layouts_differ_but_views_agree(lib_o: Path) -> None:
    objs = [tracekit.open(build_bpf_object(m), link=[lib_o]) for m in ("link_main.bpf.c", "link_other.bpf.c")]
    try:
        views = [tracekit.LibraryView(o, lib_o) for o in objs]
        offs = [{n: (v.variable(n).section, v.variable(n).offset) for n in v.variables()} for v in views]
        assert offs[0]["lib_data"] != offs[1]["lib_data"]
        assert offs[0]["lib_factor"] != offs[1]["lib_factor"]
        assert {n: s for n, (s, _) in offs[0].items()} == {n: s for n, (s, _) in offs[1].items()}
        for o in objs:
            o.load()
        views[0].lib_data, views[1].lib_data = 11, 22
        assert (objs[0].data.lib_data, objs[1].data.lib_data) == (11, 22)
    finally:
        for o in objs:
            o.close()


def test_view_of_object_without_the_library_fails_clearly(lib_o: Path) -> None:
    with tracekit.open(build_bpf_object("globals.bpf.c")) as obj:
        with pytest.raises(LinkerError) as ei:
            tracekit.LibraryView(obj, lib_o)
    msg = str(ei.value)
    assert "object 'globals' does not contain library 'link_lib'" in msg
    assert "missing variable 'lib_counter' (.bss)" in msg and "missing map 'shared_map'" in msg

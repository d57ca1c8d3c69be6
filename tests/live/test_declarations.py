"""Bundled probes as Python declarations, and a user's own Probe as capable as theirs.

Issue 9: ``tracekit.attach("execsnoop")`` goes through the declaration in
``tracekit.probes`` (argv as a list, on both backends); ``ExecSnoop``/``OpenSnoop`` are
importable; a user's Probe subclass over its own object reaches fields named ``count`` and
``index``; a ring buffer whose record type is not in BTF is an error that says how to fix
the probe, not a silent stream of bytes.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import anyio
import pytest

import tracekit
from tests.support import prebuilt, require_live
from tracekit import probes

pytestmark = [pytest.mark.live, pytest.mark.anyio]


async def _first(stream, pred, timeout: float = 10.0):
    with anyio.fail_after(timeout):
        async for ev in stream:
            if pred(ev):
                return ev
    raise AssertionError("stream ended")


def test_bundled_declarations_are_importable() -> None:
    assert probes.names() == sorted(probes.names()) and {"execsnoop", "opensnoop"} <= set(probes.names())
    assert issubclass(probes.ExecSnoop, tracekit.Probe) and issubclass(probes.OpenSnoop, tracekit.Probe)
    assert probes.declaration("execsnoop") is probes.ExecSnoop
    assert probes.declaration("opensnoop.bpf.o") is probes.OpenSnoop
    for name in probes.names():
        # every bundled probe has its source, object and declaration side by side
        assert probes.path(name).parent == probes.source(name).parent == probes.PROBES_DIR
        decl = probes.declaration(name)
        assert decl is not None and decl.object == name
        assert (probes.PROBES_DIR / f"{name}.py").is_file()
    assert set(probes.ExecSnoop._knobs) == {"ignore_failed", "targ_uid", "max_args"}


async def test_attach_bundled_name_gives_the_whole_argv() -> None:
    require_live()
    marker = f"tk-{uuid.uuid4().hex[:12]}"
    async with tracekit.attach("execsnoop") as stream:
        subprocess.run(["/bin/echo", "one", "two", "three", marker], stdout=subprocess.DEVNULL, check=True)
        ev = await _first(stream, lambda e: e.ppid == os.getpid() and marker in e.args)
    assert isinstance(ev, probes.Exec)
    assert ev.args == ["/bin/echo", "one", "two", "three", marker]
    assert ev.comm == "echo" and ev.retval == 0 and not ev.truncated


async def test_attach_bundled_name_takes_the_declarations_knobs() -> None:
    require_live()
    with pytest.raises(tracekit.KnobError, match="max_args"):
        tracekit.attach("execsnoop", max_args="many")
    with pytest.raises(tracekit.KnobError, match="unknown knob.*nope"):
        tracekit.attach("execsnoop", nope=1)
    async with tracekit.attach("execsnoop", max_args=2) as stream:
        subprocess.run(["/bin/true", "a", "b", "c"], check=True)
        ev = await _first(stream, lambda e: e.ppid == os.getpid() and e.args[:1] == ["/bin/true"])
    assert ev.args == ["/bin/true", "a"] and ev.truncated


class Tallies(tracekit.Probe):
    """A user's probe over its own object: knob, BTF-decoded record, filter."""

    object = prebuilt("probe_fields.bpf.c") if os.geteuid() == 0 else ""
    event = "tally"
    events_map = "tallies"
    scale: int = 1

    def filter(self, ev) -> bool:
        return ev.index % 2 == 1


async def test_user_probe_with_count_and_index_fields() -> None:
    require_live()
    async with Tallies(scale=7) as probe:
        prog = probe.obj.programs["emit"]
        for _ in range(4):
            prog.test_run()
        got = []
        with anyio.fail_after(10):
            async for ev in probe:
                got.append(ev)
                if len(got) == 2:
                    break
    assert [(ev.count, ev.index, ev.scale, ev.label) for ev in got] == [(10, 1, 7, "tally"), (30, 3, 7, "tally")]
    assert got[0]._asdict() == {"count": 10, "index": 1, "scale": 7, "label": "tally"}
    assert "count" in type(got[0])._fields


def test_missing_event_type_is_an_error_that_says_how_to_fix() -> None:
    require_live()
    obj = tracekit.open(prebuilt("probe_fields.bpf.c"))
    with obj:
        obj.load()
        with pytest.raises(tracekit.errors.EventTypeError, match=r"TK_EVENT_TYPE\(unmarked, struct event\)"):
            obj.reader("unmarked")
        with pytest.raises(tracekit.errors.EventTypeError, match="struct 'hidden'"):
            obj.reader("unmarked", event_type="hidden")
        # bytes on request, and the marked buffer decodes by its marker
        obj.programs["emit"].test_run()
        with obj.reader("unmarked", raw=True) as r:
            assert [bytes(x) for x in r.read_available()] == [(1).to_bytes(8, "little") + (2).to_bytes(8, "little")]
        with obj.reader("tallies") as r:
            assert [ev.count for ev in r.read_available()] == [10]

"""What libbpf's front ends set before load (issue 11 item 5), checked by the kernel."""

from __future__ import annotations

import os

import pytest

import tracekit
from tests.support import prebuilt, require_live
from tracekit import uapi
from tracekit.hooks import links
from tracekit.kernel.maps import Map
from tracekit.kernel.syscalls import bpf

pytestmark = pytest.mark.live
CUSTOM = "tkcustom/"


def _attach_custom(prog: tracekit.Program, target: str) -> object:
    cat, _, name = target.partition("/")
    return links.attach_tracepoint(prog.fd, cat, name)


@pytest.fixture
def registered():
    tracekit.register_section_handler(CUSTOM, "tracepoint", attach=_attach_custom)
    yield
    tracekit.unregister_section_handler(CUSTOM)


def test_custom_section_is_refused_until_registered() -> None:
    require_live()
    with pytest.raises(tracekit.SectionError, match="unknown program section 'tkcustom/syscalls"):
        tracekit.open(prebuilt("loader_settings.bpf.c"))


def test_map_settings_reach_the_kernel(registered) -> None:
    require_live()
    obj = tracekit.open(prebuilt("loader_settings.bpf.c"))
    with obj:
        st = obj.maps["stacks"]
        assert st.value_size == 127 * 8
        st.value_size = 20 * 8  # a front end's --max-depth 20
        st.max_entries = 128
        c = obj.maps["counts"]
        c.type = "lru_hash"
        c.map_flags = uapi.BPF_F_NO_COMMON_LRU
        c.key_size = 4  # unchanged size keeps the BTF key type
        assert c.spec.key_type_id != 0
        with pytest.raises(tracekit.TracekitError, match="between 1 and"):
            c.value_size = 0
        outer = obj.maps["outer"]
        inner = outer.inner_map
        assert inner is not None and inner.value_size == 8
        tmpl = inner.copy()
        tmpl.value_size = 16
        outer.inner_map = tmpl
        with pytest.raises(tracekit.TracekitError, match="not a map-in-map"):
            c.inner_map = tmpl
        with pytest.raises(tracekit.TracekitError, match="global data"):
            obj.maps[next(n for n in obj.maps if n.endswith(".bss"))].value_size = 64
        obj.load()
        si = bpf.map_info(st.fd)
        assert (si.type, si.value_size, si.max_entries) == (uapi.MapType.STACK_TRACE, 160, 128)
        ci = bpf.map_info(c.fd)
        assert ci.type == uapi.MapType.LRU_HASH and ci.map_flags & uapi.BPF_F_NO_COMMON_LRU
        assert ci.btf_key_type_id != 0  # the BTF types still fit and were kept
        # the kernel took the new inner template: a 16-byte-value map fits, an 8-byte one not
        with Map.create(uapi.MapType.ARRAY, 4, 16, 1) as ok, Map.create(uapi.MapType.ARRAY, 4, 8, 1) as bad:
            outer.update(1, ok.fd)
            with pytest.raises(tracekit.SyscallError):
                outer.update(2, bad.fd)
        with pytest.raises(tracekit.TracekitError, match="before load"):
            c.type = "hash"


def test_a_registered_section_loads_and_attaches(registered) -> None:
    require_live()
    obj = tracekit.open(prebuilt("loader_settings.bpf.c"))
    with obj:
        p = obj.programs["custom_getppid"]
        assert p.attach_kind == "custom:tkcustom/" and p.attach_target == "syscalls/sys_enter_getppid"
        assert p.spec.prog_type == uapi.ProgType.TRACEPOINT
        obj.programs["tpbtf_switch"].autoload = False
        obj.attach()
        for _ in range(3):
            os.getppid()
        assert obj.bss.custom_hits >= 3


def test_set_attach_target_checks_at_once_with_close_matches() -> None:
    require_live()
    tracekit.register_section_handler(CUSTOM, "tracepoint")  # no attach function: by hand
    try:
        obj = tracekit.open(prebuilt("loader_settings.bpf.c"))
    finally:
        tracekit.unregister_section_handler(CUSTOM)
    with obj:
        p = obj.programs["tpbtf_switch"]
        with pytest.raises(tracekit.AttachError, match=r"no tracepoint 'sched_swich'.*did you mean sched_switch"):
            p.set_attach_target("sched_swich")
        p.set_attach_target("sched_wakeup")
        assert p.attach_target == "sched_wakeup"
        p.set_attach_target("not_yet_there", check=False)
        assert p.attach_target == "not_yet_there"

"""Container filters of a probe: libbpf-tools' ``-c CGROUP`` and BCC's ``--cgroupmap`` /
``--mntnsmap``, for any probe that declares them with the tracekit.h macros.

A filter is a map plus a knob in the probe (``TK_DECLARE_*_FILTER()``).  Before load the
knob is switched on and, for BCC's two, the probe's map is replaced by the user's pinned
one (so entries the user adds or removes later take effect at once, as with BCC); after
load the cgroup array gets the cgroup directory's fd.  A probe without the declaration
is refused with a message saying what to add.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tracekit._record import FrozenRecord
from tracekit.errors import TracekitError

# filter name -> (map, knob, the declaration to add)
_DECL = {
    "cgroup": ("tk_cgroup_filter", "tk_filter_cgroup", "TK_DECLARE_CGROUP_FILTER()", "tk_cgroup_allowed()"),
    "cgroupmap": ("tk_cgroupmap_filter", "tk_filter_cgroupmap", "TK_DECLARE_CGROUPMAP_FILTER()",
                  "tk_cgroupmap_allowed()"),
    "mntnsmap": ("tk_mntns_filter", "tk_filter_mntns", "TK_DECLARE_MNTNS_FILTER()", "tk_mntns_allowed()"),
}


class ContainerFilters(FrozenRecord):
    """Which container filters to switch on (None: off).  Immutable; a plain class rather
    than a dataclass: see tracekit._record (start-up cost, issue 13)."""

    __slots__ = ("cgroup", "cgroupmap", "mntnsmap")
    _fields = __slots__
    cgroup: str | None     # cgroup-v2 directory: the task is in it or below
    cgroupmap: str | None  # pinned hash u64 cgroup id -> u64 (BCC)
    mntnsmap: str | None   # pinned hash u64 mount-namespace inode -> u32 (BCC)

    def __init__(self, cgroup: str | None = None, cgroupmap: str | None = None, mntnsmap: str | None = None) -> None:
        object.__setattr__(self, "cgroup", cgroup)
        object.__setattr__(self, "cgroupmap", cgroupmap)
        object.__setattr__(self, "mntnsmap", mntnsmap)

    def active(self) -> Mapping[str, str]:
        return {k: v for k, v in (("cgroup", self.cgroup), ("cgroupmap", self.cgroupmap),
                                  ("mntnsmap", self.mntnsmap)) if v}


def configure(obj: Any, filters: ContainerFilters, owner: str) -> None:
    """Before load: knobs on, BCC-style maps replaced by the user's pinned ones."""
    from tracekit.kernel.maps import Map

    for kind, value in filters.active().items():
        map_name, knob, decl, check = _DECL[kind]
        if map_name not in obj.maps:
            raise TracekitError(f"{owner}: the probe has no {kind} filter: add {decl} (tracekit.h) to its BPF "
                                f"source and test {check} in its programs")
        obj.set_global(knob, True)
        if kind == "cgroup":
            if not os.path.isdir(value):
                raise TracekitError(f"{owner}: --cgroup {value!r} is not a cgroup-v2 directory "
                                    "(e.g. /sys/fs/cgroup/system.slice/foo.service)")
            continue
        try:
            pinned = Map.from_pin(value)
        except TracekitError as e:
            raise TracekitError(f"{owner}: cannot open the pinned {kind} {value!r}: {e} (create it, e.g. "
                                f"bpftool map create {value} type hash key 8 value "
                                f"{8 if kind == 'cgroupmap' else 4} entries 128 name {map_name[:15]} flags 0)") from None
        obj.maps[map_name].reuse(pinned)


def after_load(obj: Any, filters: ContainerFilters) -> None:
    """After load, before attach: the cgroup array gets the cgroup directory's fd."""
    if not filters.cgroup:
        return
    fd = os.open(filters.cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        obj.maps[_DECL["cgroup"][0]].update(0, fd)  # the kernel keeps its own reference
    finally:
        os.close(fd)

"""``cgroup_id_map``: a map the probe filters on, filled with the cgroups whose path matches.

ebpf_exporter fills it from a fanotify cgroup monitor; tracekit rescans ``/sys/fs/cgroup``
(the cgroup2 mount; at load, then every ``cgroup_interval`` seconds): matching cgroups are added, vanished
ones deleted.  ``hash`` maps are keyed by the cgroup id (the directory's inode, a u64) with
value u64 1; ``cgrp_storage`` maps are updated through an open cgroup directory fd.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any

from tracekit.agent.config import CgroupIdMap
from tracekit.agent.decoders import cgroup2_root
from tracekit.errors import AgentConfigError

_ONE = struct.pack("=Q", 1)


def matching(regexps: list[re.Pattern[str]], root: str | None = None) -> dict[int, str]:
    """cgroup id -> path of every cgroup2 directory under ``root`` (the cgroup2 mount) a
    regexp matches."""
    out: dict[int, str] = {}
    for dirpath, _dirs, _files in os.walk(root or cgroup2_root()):
        if any(rx.search(dirpath) for rx in regexps):
            try:
                out[os.stat(dirpath).st_ino] = dirpath
            except OSError:
                continue
    return out


def sync(obj: Any, spec: CgroupIdMap) -> int:
    """Bring the object's cgroup map in line with the cgroups present now; returns how many
    cgroups match."""
    om = obj.maps.get(spec.name)
    if om is None:
        raise AgentConfigError(f"cgroup_id_map names {spec.name!r}, not a map of the object "
                               f"(maps: {', '.join(obj.maps)})")
    regexps = [re.compile(r) for r in spec.regexps]
    want = matching(regexps)
    from tracekit.agent.decoders import _cgroups

    _cgroups.learn(want)  # the cgroup decoder knows them at once
    m = om.raw
    if spec.type == "cgrp_storage":
        for path in want.values():
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                m.update(fd, _ONE)
            finally:
                os.close(fd)
        return len(want)
    have = {int.from_bytes(k, "little") for k in m.keys()}
    for cgid in want.keys() - have:
        m.update(struct.pack("=Q", cgid), _ONE)
    for cgid in have - want.keys():
        m.delete(struct.pack("=Q", cgid))
    return len(want)

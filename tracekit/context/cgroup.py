"""cgroup-v2 ids <-> cgroupfs paths.

On cgroup v2 a cgroup's id (``bpf_get_current_cgroup_id()``, the kernfs node id) is the
inode number of its directory, so id -> path needs a walk of the hierarchy.  Walks are
what costs, so results are cached (bounded LRU), a miss triggers one re-walk, and walks
are rate-limited so a stream of unknown ids (cgroups that died) cannot keep the process
walking.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

from tracekit.errors import TracekitError


def cgroup2_mount() -> str:
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return left.split()[4]
    except OSError:
        pass
    raise TracekitError("cgroup v2 is not mounted (mount -t cgroup2 none /sys/fs/cgroup): "
                        "cgroup ids cannot be turned into paths")


def cgroup_id(path: str) -> int:
    """The id of the cgroup at ``path`` (a cgroup-v2 directory), as BPF sees it."""
    try:
        return os.stat(path).st_ino
    except OSError as e:
        raise TracekitError(f"cannot stat cgroup {path!r}: {e.strerror}") from None


class CgroupResolver:
    """Bounded, refreshed-on-miss map of cgroup id -> path (relative to the v2 mount)."""

    def __init__(self, root: str | None = None, *, max_entries: int = 4096, min_rescan: float = 1.0,
                 max_walk: int = 100_000) -> None:
        self.root = root or cgroup2_mount()
        self.max_entries = max_entries
        self.min_rescan = min_rescan
        self.max_walk = max_walk
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._last_walk = -1e9
        self.walks = 0

    def path(self, cid: int) -> str | None:
        """"/a/b" for cgroup ``cid`` ("/" for the root), or None if no such cgroup exists."""
        hit = self._cache.get(cid)
        if hit is not None:
            self._cache.move_to_end(cid)
            return hit
        now = time.monotonic()
        if now - self._last_walk >= self.min_rescan:
            self._last_walk = now
            self._walk(cid)
            hit = self._cache.get(cid)
        return hit

    def _walk(self, want: int) -> None:
        self.walks += 1
        seen = 0
        stack = [self.root]
        while stack and seen < self.max_walk:
            d = stack.pop()
            try:
                st = os.stat(d)
                entries = list(os.scandir(d))
            except OSError:
                continue  # removed while walking
            seen += 1
            rel = "/" + os.path.relpath(d, self.root) if d != self.root else "/"
            self._put(st.st_ino, rel.replace("/.", "/") if rel == "/." else rel)
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))

    def _put(self, cid: int, rel: str) -> None:
        self._cache[cid] = rel
        self._cache.move_to_end(cid)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

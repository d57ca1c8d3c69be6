"""``/proc/PID/maps``: which file (and which offset of it) an address of a process is in.

Pure parsing plus one read of the procfs file; no BPF syscalls.  A user-stack address
``addr`` inside mapping ``m`` is at file offset ``addr - m.start + m.offset`` of
``m.path``; :mod:`tracekit.symbols.elfsyms` turns that offset into the ELF's virtual
address (the step that makes PIE executables and shared libraries resolve).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

DELETED = " (deleted)"


@dataclass(frozen=True, slots=True)
class Mapping:
    """One line of ``/proc/PID/maps``."""

    start: int
    end: int
    perms: str
    offset: int
    dev_major: int
    dev_minor: int
    inode: int
    #: the file, ``[heap]``/``[stack]``/``[vdso]``/``[anon:...]``, or "" for anonymous memory
    path: str
    #: the mapped file was unlinked (or replaced) after it was mapped
    deleted: bool = field(init=False)
    #: the mapped file's path without ``(deleted)``; None for anonymous/special mappings
    file_path: str | None = field(init=False)

    def __post_init__(self) -> None:
        # computed once: symbolizers ask for them on every address
        deleted = self.path.endswith(DELETED)
        object.__setattr__(self, "deleted", deleted)
        fp = (self.path[: -len(DELETED)] if deleted else self.path) if self.path.startswith("/") else None
        object.__setattr__(self, "file_path", fp)

    @property
    def executable(self) -> bool:
        return "x" in self.perms

    def file_offset(self, addr: int) -> int:
        """The file offset that ``addr`` (inside this mapping) was loaded from."""
        return addr - self.start + self.offset


def parse_maps(text: str) -> list[Mapping]:
    """The mappings of a ``/proc/PID/maps`` text, in address order; bad lines are skipped."""
    out: list[Mapping] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            lo, _, hi = parts[0].partition("-")
            major, _, minor = parts[3].partition(":")
            m = Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), int(major, 16), int(minor, 16),
                        int(parts[4]), parts[5].strip() if len(parts) > 5 else "")
        except ValueError:
            continue
        out.append(m)
    out.sort(key=lambda m: m.start)
    return out


def read_maps(pid: int) -> list[Mapping]:
    """Parse ``/proc/PID/maps``.  Raises ``ProcessLookupError`` when the process is gone."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            text = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except OSError as e:
        # ESRCH when the process exits between open() and read()
        if e.errno == 3:
            raise ProcessLookupError(pid) from None
        raise
    return parse_maps(text)


class MapIndex:
    """Mappings searchable by address (bisection over their start addresses)."""

    __slots__ = ("maps", "_starts")

    def __init__(self, maps: list[Mapping]) -> None:
        self.maps = maps
        self._starts = [m.start for m in maps]

    def find(self, addr: int) -> Mapping | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.maps[i].end:
            return self.maps[i]
        return None

    def __len__(self) -> int:
        return len(self.maps)


__all__ = ["Mapping", "MapIndex", "parse_maps", "read_maps"]

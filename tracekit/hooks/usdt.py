"""Attaching USDT probes the way libbpf does, for programs written against ``usdt.bpf.h``.

A USDT attachment is one uprobe per probe site (the same provider:name may be compiled
in at many places, each with its own argument locations).  Each site's argument
locations become a ``struct __bpf_usdt_spec`` stored in the object's ``__bpf_usdt_specs``
array under a *spec id*; the BPF side finds the spec id

* in the BPF cookie of the uprobe (kernels with ``bpf_get_attach_cookie``, 5.15), or
* by the probe's runtime address in ``__bpf_usdt_ip_to_spec_id`` (older kernels; for a
  shared library or PIE that address depends on where one process mapped it, so a pid
  is required there, as in libbpf).

Sites with the same argument string share a spec id within one attachment; ids return to
the object's pool when the attachment is closed.  The user's cookie travels in the spec
(``bpf_usdt_cookie()``), since the BPF cookie itself is taken.

Semaphores are maintained by the kernel: each uprobe is opened with the semaphore's file
offset as ``ref_ctr_offset``, and the kernel increments it in every process (present or
future) mapping the file while the uprobe exists, and decrements it when it goes.

Where the kernel has uprobe.multi links (6.6), USDT programs are loaded for them (as
libbpf does) and all sites of one attachment share a single link: detaching a perf-event
uprobe waits for an RCU tasks-trace grace period each (~0.1 s per site here), a
uprobe.multi link waits once.
"""

from __future__ import annotations

import errno as _errno
import os
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tracekit import _log
from tracekit.errors import AttachError, NotSupportedError, USDTError
from tracekit.hooks.links import Link
from tracekit.hooks.uprobe import attach_uprobe, attach_uprobe_multi, ref_ctr_shift, resolve_path
from tracekit.obj.usdt import (
    LIBBPF_LAYOUT,
    SpecLayout,
    USDTFile,
    USDTNote,
    encode_spec,
    read_usdt,
    spec_layout,
)

log = _log.getLogger("tracekit.hooks.usdt")

SPECS_MAP = "__bpf_usdt_specs"
IP_MAP = "__bpf_usdt_ip_to_spec_id"


@lru_cache(maxsize=32)
def _read(path: str, mtime_ns: int, size: int, ino: int) -> USDTFile:
    with open(path, "rb") as f:
        return read_usdt(f.read())


def usdt_file(path: str) -> USDTFile:
    """The parsed USDT notes of ELF ``path`` (cached by path, inode, size and mtime)."""
    try:
        st = os.stat(path)
        return _read(path, st.st_mtime_ns, st.st_size, st.st_ino)
    except USDTError as e:
        raise USDTError(f"{path}: {e}") from None
    except OSError as e:
        raise AttachError(f"cannot read USDT notes of {path}: {e.strerror or e}") from None


class SpecIds:
    """The spec-id pool and maps of one loaded object (libbpf's usdt_manager)."""

    def __init__(self, specs_map: Any, ip_map: Any | None, layout: SpecLayout, *, has_cookie: bool) -> None:
        self.specs_map = specs_map
        self.ip_map = ip_map
        self.layout = layout
        self.has_cookie = has_cookie
        self._free: list[int] = []
        self._next = 0

    def allocate(self) -> int:
        if self._free:
            return self._free.pop()
        if self._next >= self.specs_map.max_entries:
            raise AttachError(f"all {self.specs_map.max_entries} USDT spec slots of {SPECS_MAP} are in use; "
                              "close other USDT attachments, or #define BPF_USDT_MAX_SPEC_CNT larger before "
                              "including <bpf/usdt.bpf.h>")
        self._next += 1
        return self._next - 1

    def release(self, ids: list[int]) -> None:
        # The spec entries stay: a later attachment overwrites them before any uprobe
        # can reach them (libbpf does the same).
        self._free.extend(reversed(ids))


#: one pool per loaded specs map (the Object owns the map; a pool dies with it)
_pools: weakref.WeakKeyDictionary[Any, SpecIds] = weakref.WeakKeyDictionary()


def spec_ids_for(obj: Any) -> SpecIds:
    """The :class:`SpecIds` pool of a loaded :class:`tracekit.object.Object` (duck-typed:
    ``obj.maps`` of ObjectMaps with ``.map``/``.spec``, ``obj.btf``)."""
    from tracekit.kernel import features

    om = obj.maps.get(SPECS_MAP)
    if om is None:
        raise AttachError(f"object {obj.name!r} has no {SPECS_MAP} map: USDT programs must "
                          "#include <bpf/usdt.bpf.h> and read arguments with bpf_usdt_arg()")
    m = om.map
    if m is None:
        raise AttachError(f"object {obj.name!r} is not loaded: call load() before attaching USDT probes")
    pool = _pools.get(m)
    if pool is None:
        layout = LIBBPF_LAYOUT
        if obj.btf is not None and om.spec.value_type_id:
            layout = spec_layout(obj.btf, om.spec.value_type_id)
        if layout.size != m.value_size:
            raise AttachError(f"{SPECS_MAP}: BTF says {layout.size} bytes per spec, the map holds {m.value_size}")
        ip = obj.maps.get(IP_MAP)
        pool = SpecIds(m, ip.map if ip is not None else None, layout, has_cookie=features.bpf_cookie())
        _pools[m] = pool
    return pool


@dataclass(frozen=True)
class Site:
    """One attached probe site: where, which spec, and the runtime IP keyed in the ip map."""

    note: USDTNote
    spec_id: int
    ip: int  # key in __bpf_usdt_ip_to_spec_id (0: not used, the BPF cookie carries the id)


class USDTLink:
    """A USDT attachment: one uprobe :class:`Link` per probe site.  ``close()`` detaches all
    of them, removes their ip-map entries and returns the spec ids; idempotent."""

    def __init__(self, target: str, cookie: int, pool: SpecIds) -> None:
        self.kind = "usdt"
        self.target = target
        self.cookie = cookie
        self.links: list[Link] = []
        self.sites: list[Site] = []
        self._pool: SpecIds | None = pool
        self._spec_ids: list[int] = []

    @property
    def closed(self) -> bool:
        return self._pool is None

    @property
    def fd(self) -> int:
        """The first site's BPF link fd (every site has its own)."""
        return self.links[0].fd

    def __iter__(self) -> Iterator[Link]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for link in self.links:
            link.close()
        if pool.ip_map is not None and not pool.has_cookie:
            for site in self.sites:
                try:
                    pool.ip_map.delete(site.ip)
                except Exception as e:  # closing must not raise (the map may be gone already)
                    log.debug("usdt: cannot remove ip %#x from %s: %s", site.ip, IP_MAP, e)
        pool.release(self._spec_ids)
        self._spec_ids = []

    def detach(self) -> bool:
        forced = all([link.detach() for link in self.links])
        self.close()
        return forced

    def __enter__(self) -> USDTLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<USDTLink {self.target} sites={len(self.sites)}{' closed' if self.closed else ''}>"


def parse_usdt_target(target: str) -> tuple[str, str, str]:
    """``PATH:PROVIDER:NAME`` (libbpf's ``SEC("usdt/PATH:PROVIDER:NAME")``) -> its parts."""
    parts = target.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise AttachError(f"invalid USDT target {target!r}: expected 'PATH:PROVIDER:NAME', "
                          "e.g. '/usr/bin/python3:python:function__entry'")
    return parts[0], parts[1], parts[2]


def _runtime_ip(pid: int, path: str, file_offset: int) -> int:
    """Where file offset ``file_offset`` of ``path`` is mapped in process ``pid`` (the
    executable mapping covering it in ``/proc/PID/maps``): what ``%rip`` reads there."""
    real = os.path.realpath(path)
    ino = os.stat(real).st_ino
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise AttachError(f"cannot read /proc/{pid}/maps to place {path}: {e.strerror}") from None
    for line in lines:
        # "start-end perms offset dev inode path"
        parts = line.split(None, 5)
        if len(parts) < 6 or "x" not in parts[1]:
            continue
        if parts[5] != real and int(parts[4]) != ino:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        off = int(parts[2], 16)
        if off <= file_offset < off + (hi - lo):
            return lo + file_offset - off
    raise AttachError(f"file offset {file_offset:#x} of {path} is not mapped executable by process {pid}")


def uprobe_multi_for_usdt() -> bool:
    """Whether USDT programs should be loaded for uprobe.multi links (Linux 6.6 with BPF
    cookies): decided once at load time, since such a program cannot be attached through
    perf events, nor a perf-event program through a uprobe.multi link."""
    from tracekit.hooks.uprobe import uprobe_multi_supported
    from tracekit.kernel import features

    return features.bpf_cookie() and uprobe_multi_supported()


def attach_usdt(prog_fd: int, path: str, provider: str, name: str, *, pool: SpecIds, pid: int = -1,
                cookie: int = 0, legacy: bool | None = None, multi: bool = False) -> USDTLink:
    """Attach program ``prog_fd`` to every site of USDT ``provider:name`` in ``path``.

    ``multi``: the program was loaded as a uprobe.multi program (expected attach type
    BPF_TRACE_UPROBE_MULTI, see :func:`uprobe_multi_for_usdt`): one link holds every site,
    each with its spec id as cookie and its semaphore as ref_ctr_offset.  Otherwise one
    perf-event uprobe per site; ``legacy`` as for :func:`tracekit.hooks.uprobe.attach_uprobe`
    (True: tracefs ``uprobe_events``, which takes the semaphore as
    ``PATH:OFFSET(REF_CTR_OFFSET)``)."""
    real = resolve_path(path)
    label = f"{real}:{provider}:{name}"
    what = f"USDT {provider}:{name} in {real}" + (f" (pid {pid})" if pid >= 0 else "")
    f = usdt_file(real)
    notes = f.find(provider, name)
    if not notes:
        have = [f"{p}:{n}" for p, n in f.probes()]
        near = [h for h in have if name in h or provider in h][:8] or have[:8]
        raise AttachError(f"no USDT probe {provider}:{name} in {real}"
                          + (f"; it has {len(have)} probes, e.g. {', '.join(near)}" if have
                             else " (the file has no .note.stapsdt: built without <sys/sdt.h> probes?)"))
    bad = [n.error for n in notes if n.error]
    if bad:
        raise USDTError(f"cannot attach {what}: {bad[0]}")
    if any(n.semaphore_offset for n in notes) and ref_ctr_shift() is None:
        raise NotSupportedError("USDT semaphores (uprobe ref_ctr_offset)", "4.20",
                                f"{provider}:{name} has a semaphore the kernel cannot maintain")
    if not pool.has_cookie:
        if pool.ip_map is None:
            raise AttachError(f"{what}: this kernel has no BPF cookies and the object has no {IP_MAP} map")
        if f.is_shared and pid < 0:
            raise NotSupportedError(
                "USDT probes in shared libraries and PIEs without a pid", "5.15",
                "without BPF cookies the spec is found by runtime address, which depends on the "
                "process: pass pid=")

    link = USDTLink(label, cookie, pool)
    by_spec: dict[bytes, int] = {}
    try:
        for note in notes:
            spec = encode_spec(f.resolved_args(note), cookie, pool.layout, probe=f"{provider}:{name}")
            sid = by_spec.get(spec)
            if sid is None:
                sid = pool.allocate()
                link._spec_ids.append(sid)
                pool.specs_map.update(sid, spec)
                by_spec[spec] = sid
            ip = 0
            if pool.ip_map is not None and not pool.has_cookie:
                ip = _runtime_ip(pid, real, note.file_offset) if f.is_shared else note.address
                try:
                    pool.ip_map.update(ip, sid, 1)  # BPF_NOEXIST: a clash means another attach owns it
                except OSError as e:
                    if getattr(e, "errno", None) == _errno.EEXIST:
                        raise AttachError(f"{what}: address {ip:#x} is already attached by another USDT "
                                          "attachment of this object (without BPF cookies one IP maps "
                                          "to one spec)") from None
                    raise
            # record the site before attaching so close() undoes a half-made ip entry
            link.sites.append(Site(note, sid, ip))
            if not multi:
                link.links.append(attach_uprobe(prog_fd, real, "", note.file_offset, pid=pid,
                                                cookie=sid if pool.has_cookie else 0,
                                                ref_ctr_offset=note.semaphore_offset, legacy=legacy))
        if multi:
            if legacy:
                raise AttachError(f"{what}: the program was loaded for uprobe.multi links, which tracefs "
                                  "uprobe_events cannot carry")
            sites = link.sites
            refs = [s.note.semaphore_offset for s in sites]
            link.links.append(attach_uprobe_multi(
                prog_fd, real, offsets=[s.note.file_offset for s in sites], cookies=[s.spec_id for s in sites],
                ref_ctr_offsets=refs if any(refs) else None, pid=pid))
            link.links[0].kind = "usdt"
            link.links[0].target = label
    except BaseException:
        link.close()
        raise
    return link


def list_probes(path: str) -> list[USDTNote]:
    """Every USDT probe site of ELF ``path``, in note order."""
    return list(usdt_file(resolve_path(path)).notes)


def mapped_elf_files(pid: int) -> list[str]:
    """The ELF files process ``pid`` maps (executable first, then libraries), as paths this
    process can open: through ``/proc/PID/root`` when the process lives in another mount
    namespace (a container)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise AttachError(f"no process {pid}") from None
    except OSError as e:
        raise AttachError(f"cannot read /proc/{pid}/maps: {e.strerror}") from None
    seen: dict[str, None] = {}
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and not parts[5].endswith(" (deleted)"):
            seen.setdefault(parts[5])
    out = []
    for p in seen:
        cand = p
        root = f"/proc/{pid}/root{p}"
        try:
            if os.stat(root).st_ino != os.stat(p).st_ino:
                cand = root
        except OSError:
            cand = root if os.path.exists(root) else p
        try:
            with open(cand, "rb") as fh:
                if fh.read(4) != b"\x7fELF":
                    continue
        except OSError:
            continue
        out.append(cand)
    return out


__all__ = ["attach_usdt", "uprobe_multi_for_usdt", "USDTLink", "SpecIds", "spec_ids_for", "parse_usdt_target", "usdt_file",
           "list_probes", "mapped_elf_files", "SPECS_MAP", "IP_MAP"]
